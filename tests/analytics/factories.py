"""Small builders for analytics tests: each row at an explicit instant."""

import itertools
from datetime import UTC, datetime

from messaging.models import Call, Client, Conversation, Lead, Message, ScheduledMessage

_phones = itertools.count(100)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_client(name: str = "Acme Plumbing", tz: str = "UTC", **fields: object) -> Client:
    fields.setdefault("owner_email", f"owner@{name.split()[0].lower()}.example")
    return Client.objects.create(name=name, timezone=tz, **fields)


def make_lead(client: Client, at: datetime) -> Lead:
    return Lead.objects.create(client=client, phone=f"+1415555{next(_phones):04d}", created_at=at)


def make_conversation(client: Client) -> Conversation:
    return Conversation.objects.create(client=client, phone=f"+1415556{next(_phones):04d}")


def add_message(conversation: Conversation, direction: str, at: datetime) -> Message:
    return Message.objects.create(conversation=conversation, direction=direction, body="hello", created_at=at)


def make_call(client: Client, at: datetime, status: str = "missed", texted_back: bool = False) -> Call:
    return Call.objects.create(
        client=client, caller=f"+1415557{next(_phones):04d}", status=status, texted_back=texted_back, started_at=at
    )


def make_scheduled(
    client: Client,
    channel: str,
    status: str,
    *,
    at: datetime,
    sent: bool = False,
    claimed: bool = True,
    source: str = "api",
) -> ScheduledMessage:
    """A queue row whose events happen at `at`: sent_at when `sent`, claimed_at when `claimed`."""
    return ScheduledMessage.objects.create(
        client=client,
        channel=channel,
        to="+14155550000" if channel == "sms" else "lead@example.com",
        subject="" if channel == "sms" else "Hi",
        body="hello",
        status=status,
        send_at=at,
        created_at=at,
        sent_at=at if sent else None,
        claimed_at=at if claimed else None,
        source=source,
    )


def sms_sent(client: Client, at: datetime, count: int) -> None:
    for _ in range(count):
        make_scheduled(client, "sms", "sent", at=at, sent=True)
