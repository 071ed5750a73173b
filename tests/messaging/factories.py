"""Small builders for messaging tests."""

from datetime import datetime, time

from django.utils import timezone

from messaging.models import Client, Lead, ScheduledMessage
from messaging.services import schedule_message


def make_client(name: str = "Acme Plumbing", tz: str = "America/New_York", **fields) -> Client:
    fields.setdefault("owner_email", "owner@acme.example")
    fields.setdefault("owner_phone", "+14155550100")
    return Client.objects.create(name=name, timezone=tz, **fields)


def make_lead(client: Client, phone: str = "+14155550111", tz: str = "", **fields) -> Lead:
    return Lead.objects.create(client=client, phone=phone, timezone=tz, **fields)


def sms(
    to: str = "+14155550123", body: str = "Your appointment is tomorrow", send_at: datetime | None = None, **fields
) -> ScheduledMessage:
    message, _ = schedule_message(channel="sms", to=to, body=body, send_at=send_at or timezone.now(), **fields)
    return message


def email(to: str = "lead@example.com", subject: str = "Hello", body: str = "Hi there", **fields) -> ScheduledMessage:
    message, _ = schedule_message(channel="email", to=to, subject=subject, body=body, html=f"<p>{body}</p>", **fields)
    return message


ALWAYS_OPEN = (time(0, 0), time(23, 59, 59))
