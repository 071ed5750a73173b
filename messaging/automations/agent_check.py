"""Agent check: tell the owner when a lead's message has waited too long for a reply.

"Too long" is counted in business minutes only: Monday to Friday, between the client's
business_hours_start and business_hours_end in the client's own zone. A message at 16:55 on a
Friday with a 10-minute threshold stalls at 09:05 on Monday, not at 17:05 on Friday.

One escalation per stall: the key carries the message's time, and the conversation remembers
which message it escalated for. A reply or a newer inbound message moves `last_message_at`,
so the next stall is a new one.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F

from messaging.automations.notify import check_owner_reachable, notify_owner
from messaging.models import Client, Conversation, Direction

DEFAULT_STALL_MINUTES = 10
WORKDAYS = frozenset(range(5))  # Monday..Friday (date.weekday())
SOURCE = "agent-stall"


def stall_key(conversation_id: int, last_message_at: datetime) -> str:
    return f"agent-stall:{conversation_id}:{int(last_message_at.timestamp())}"


def _business_window(day: date, zone: ZoneInfo, opens: time, closes: time) -> tuple[datetime, datetime]:
    """The UTC span of one local business day; closing at or before opening means it ends the next day."""
    close_day = day if closes > opens else day + timedelta(days=1)
    start = datetime.combine(day, opens, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(close_day, closes, tzinfo=zone).astimezone(UTC)
    return start, end


def stall_deadline(
    since: datetime,
    tz: str,
    opens: time,
    closes: time,
    minutes: int,
    workdays: frozenset[int] = WORKDAYS,
) -> datetime:
    """The UTC moment `minutes` business minutes have passed since `since`.

    Local windows are built as wall-clock times and converted to UTC at once; durations are
    added only in UTC, so a DST change inside a window counts the minutes that really passed.
    """
    if not workdays:
        raise ValueError("no business days: the deadline would never come")
    zone = ZoneInfo(tz)
    remaining = timedelta(minutes=minutes)
    # From the day before: an overnight window that opened yesterday may still be open.
    day = since.astimezone(zone).date() - timedelta(days=1)
    while True:
        if day.weekday() in workdays:
            start, end = _business_window(day, zone, opens, closes)
            start = max(start, since)
            if end > start:
                if end - start >= remaining:
                    return start + remaining
                remaining -= end - start
        day += timedelta(days=1)


def conversation_deadline(conversation: Conversation) -> datetime:
    client = conversation.client
    return stall_deadline(
        conversation.last_message_at,
        client.timezone,
        client.business_hours_start,
        client.business_hours_end,
        client.agent_stall_minutes or DEFAULT_STALL_MINUTES,
    )


def in_business_hours(client: Client, now: datetime) -> bool:
    """Whether `now` is inside the client's business hours (zero business minutes from now
    is now itself only then)."""
    return stall_deadline(now, client.timezone, client.business_hours_start, client.business_hours_end, 0) == now


def awaiting_conversations(now: datetime) -> list[Conversation]:
    """Conversations whose last message is inbound and not yet escalated for (one query).

    Served by the partial index conversation_awaiting (last_message_direction='in'). A stall
    needs at least a minute, so younger messages are left out already in SQL.
    """
    return list(
        Conversation.objects.filter(
            last_message_direction=Direction.INBOUND,
            last_message_at__isnull=False,
            last_message_at__lte=now - timedelta(minutes=1),
        )
        .exclude(escalated_for_message_at=F("last_message_at"))
        .select_related("client")
        .order_by("last_message_at", "pk")
    )


def escalate_stall(conversation: Conversation, now: datetime) -> bool:
    """Notify the owner and remember the message escalated for; False if already escalated.

    OwnerUnreachable leaves the conversation waiting (escalated once the owner can be told)."""
    client = conversation.client
    # Before the transaction: finding the owner unreachable is recorded on the client, and a
    # rollback must not forget it.
    check_owner_reachable(client, now)
    since = conversation.last_message_at
    zone = ZoneInfo(client.timezone)
    body = (
        f"{client.name}: a message from {conversation.phone} has waited for a reply since "
        f"{since.astimezone(zone):%a %d %b %H:%M} (your time)."
    )
    with transaction.atomic():
        _, created = notify_owner(
            client,
            subject=f"A lead is waiting for a reply: {conversation.phone}",
            body=body,
            idempotency_key=stall_key(conversation.pk, since),
            source=SOURCE,
            now=now,
        )
        # Conditional: a message that arrived meanwhile starts a new stall of its own.
        Conversation.objects.filter(pk=conversation.pk, last_message_at=since).update(escalated_for_message_at=since)
    return created


@dataclass
class StallSort:
    stalled: list[Conversation] = field(default_factory=list)  # ripe, owner open: escalate now
    held: int = 0  # ripe, but outside business hours: the next tick after opening escalates
    errors: list[tuple[Conversation, Exception]] = field(default_factory=list)  # bad zone or hours


def sort_stalls(awaiting: list[Conversation], now: datetime) -> StallSort:
    """Which waiting conversations are stalled past their client's threshold in business
    minutes, and may be escalated now (the owner is told during business hours only: a stall
    that ripened at 16:55 is not texted at 17:00)."""
    result = StallSort()
    open_now: dict[int, bool] = {}
    for conversation in awaiting:
        try:
            if conversation_deadline(conversation) > now:
                continue
            if conversation.client_id not in open_now:
                open_now[conversation.client_id] = in_business_hours(conversation.client, now)
        except Exception as exc:  # a client's bad timezone or hours: this item fails, not the run
            result.errors.append((conversation, exc))
            continue
        if open_now[conversation.client_id]:
            result.stalled.append(conversation)
        else:
            result.held += 1
    return result
