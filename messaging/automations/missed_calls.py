"""Missed-call text-back: text the caller from the client's number and tell the owner.

Each unhandled missed call is handled once: its row is locked with SKIP LOCKED, and the
text-back, the owner's notification and the `handled` flag are written in one transaction,
so a crash leaves the call unhandled (and the next tick does it) and two runs never both do it.
The idempotency keys make a retry after a crash between commit and report harmless too.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from messaging.automations.notify import OwnerUnreachable, notify_owner
from messaging.models import Call, CallStatus, Channel, Client, Lead, ScheduledMessage, Status
from messaging.optouts import OptOuts, opt_outs_for
from messaging.phones import normalize_phone
from messaging.services import schedule_message

logger = logging.getLogger("messaging.automations.missed_calls")
DEFAULT_TEXT_BACK = "Sorry we missed your call at {client}! How can we help? Reply STOP to opt out."
# A number the client texted this recently is already in a conversation: don't pile on.
RECENTLY_TEXTED = timedelta(hours=24)
BATCH_SIZE = 200

SOURCE_TEXT_BACK = "missed-call"
SOURCE_NOTIFY = "missed-call-notify"

TEXTED = "texted"
SKIP_OPTED_OUT = "opted_out"
SKIP_RECENTLY_TEXTED = "recently_texted"
SKIP_TEXT_BACK_OFF = "text_back_off"
SKIP_INVALID_NUMBER = "invalid_number"  # e.g. a withheld caller ID that carriers report as a fake number
ALREADY_HANDLED = "already_handled"


def text_back_key(call_id: int) -> str:
    return f"missed-call:{call_id}"


def notify_key(call_id: int) -> str:
    return f"missed-call-notify:{call_id}"


def text_back_body(client: Client) -> str:
    template = client.text_back_template.strip() or DEFAULT_TEXT_BACK
    return template.replace("{client}", client.name)


@dataclass
class CallFacts:
    """What the skip rules need for one batch of calls, read with one query per kind."""

    opt_outs: OptOuts = field(default_factory=lambda: OptOuts(frozenset()))
    recently_texted: set[tuple[int, str]] = field(default_factory=set)
    owner_unreachable: int = 0
    leads: dict[tuple[int, str], Lead] = field(default_factory=dict)

    def skip_reason(self, call: Call) -> str:
        if not call.client.text_back_enabled:
            return SKIP_TEXT_BACK_OFF
        try:
            normalize_phone(call.caller)
        except ValidationError:
            return SKIP_INVALID_NUMBER
        if self.opt_outs.blocks(call.caller, call.client_id):
            return SKIP_OPTED_OUT
        if (call.client_id, call.caller) in self.recently_texted:
            return SKIP_RECENTLY_TEXTED
        return ""


def gather_call_facts(calls: list[Call], now: datetime) -> CallFacts:
    """Opt-outs, recent texts and leads for every (client, caller) of the batch: three queries."""
    callers = {call.caller for call in calls}
    client_ids = {call.client_id for call in calls}
    facts = CallFacts()
    facts.opt_outs = opt_outs_for(callers)
    facts.recently_texted = set(
        ScheduledMessage.objects.filter(
            channel=Channel.SMS, client_id__in=client_ids, to__in=callers, created_at__gte=now - RECENTLY_TEXTED
        )
        .exclude(status=Status.CANCELLED)
        .values_list("client_id", "to")
    )
    for lead in Lead.objects.filter(client_id__in=client_ids, phone__in=callers).only("id", "client_id", "phone"):
        facts.leads.setdefault((lead.client_id, lead.phone), lead)
    return facts


def _owner_message(call: Call, outcome: str) -> tuple[str, str]:
    local = call.started_at.astimezone(ZoneInfo(call.client.timezone))
    what = {
        TEXTED: "We texted them back.",
        SKIP_OPTED_OUT: "They opted out of texts, so we did not text them.",
        SKIP_RECENTLY_TEXTED: "They were texted in the last 24 hours, so we did not text them again.",
        SKIP_TEXT_BACK_OFF: "Text-back is off for your account, so we did not text them.",
        SKIP_INVALID_NUMBER: "The caller's number is withheld or not valid, so we could not text them.",
    }[outcome]
    subject = f"Missed call from {call.caller}"
    body = f"{call.client.name}: missed call from {call.caller} at {local:%a %d %b %H:%M} (your time). {what}"
    return subject, body


def handle_missed_call(call: Call, facts: CallFacts, now: datetime) -> str:
    """Text back (unless a skip rule says no), notify the owner, mark handled; one transaction.

    Returns TEXTED, a skip reason, or ALREADY_HANDLED when another run has it (locked or done).
    """
    with transaction.atomic():
        mine = Call.objects.select_for_update(skip_locked=True).filter(pk=call.pk, handled=False).exists()
        if not mine:
            return ALREADY_HANDLED
        reason = facts.skip_reason(call)
        if not reason:
            schedule_message(
                channel=Channel.SMS,
                to=call.caller,
                body=text_back_body(call.client),
                send_at=now,
                client=call.client,
                lead=facts.leads.get((call.client_id, call.caller)),
                idempotency_key=text_back_key(call.pk),
                source=SOURCE_TEXT_BACK,
            )
        outcome = reason or TEXTED
        subject, body = _owner_message(call, outcome)
        try:
            notify_owner(
                call.client,
                subject=subject,
                body=body,
                idempotency_key=notify_key(call.pk),
                source=SOURCE_NOTIFY,
                now=now,
            )
        except (OwnerUnreachable, ValidationError) as exc:
            # A client whose owner cannot be reached must not cost its callers their text
            # back, nor leave the call to fail again every five minutes.
            facts.owner_unreachable += 1
            logger.warning(
                "owner_unreachable", extra={"client_id": call.client_id, "call_id": call.pk, "error": str(exc)}
            )
        Call.objects.filter(pk=call.pk).update(handled=True, handled_at=now, texted_back=not reason)
    if not reason:
        # A second missed call from the same number later in this batch is "recently texted".
        facts.recently_texted.add((call.client_id, call.caller))
    return outcome


def _unhandled_calls(now: datetime, after: tuple[datetime, int] | None) -> list[Call]:
    # Served by the partial index call_missed_unhandled (status=missed, handled=false).
    calls = Call.objects.filter(status=CallStatus.MISSED, handled=False, started_at__lte=now)
    if after is not None:
        started_at, pk = after
        calls = calls.filter(Q(started_at__gt=started_at) | Q(started_at=started_at, pk__gt=pk))
    return list(calls.select_related("client").order_by("started_at", "pk")[:BATCH_SIZE])


def unhandled_call_batches(now: datetime, should_stop: Callable[[], bool] = lambda: False) -> Iterator[list[Call]]:
    """Missed calls not yet handled, oldest first, a batch at a time until `should_stop()`."""
    # Keyset pagination: a call that failed stays unhandled and must not be fetched again.
    after = None
    while not should_stop():
        calls = _unhandled_calls(now, after)
        if not calls:
            return
        yield calls
        after = (calls[-1].started_at, calls[-1].pk)
