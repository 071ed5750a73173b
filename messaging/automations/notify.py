"""Telling a client's owner something happened (a missed call, a stalled conversation, a follow-up due).

The owner chose SMS or email (`client.notify_by`); everything goes through `schedule_message()`
(or `schedule_messages()` for many owners at once) with the caller's idempotency key, so a job
that runs twice notifies once.
"""

from datetime import datetime

from messaging.bulk import MessageSpec
from messaging.models import Channel, Client, NotifyBy, ScheduledMessage
from messaging.services import schedule_message


class OwnerUnreachable(ValueError):
    """The client has neither an owner phone nor an owner email to notify."""


def owner_contact(client: Client) -> tuple[str, str]:
    """(channel, address) to reach the owner: the chosen channel, else the other one if set."""
    phone, email = client.owner_phone.strip(), client.owner_email.strip()
    preferred = [(Channel.SMS, phone), (Channel.EMAIL, email)]
    if client.notify_by != NotifyBy.SMS:
        preferred.reverse()
    for channel, address in preferred:
        if address:
            return channel, address
    raise OwnerUnreachable(
        f"client {client.pk} ({client.name}) has no owner phone or email: set one in admin to receive notifications"
    )


def owner_message_spec(client: Client, *, subject: str, body: str, idempotency_key: str, now: datetime) -> MessageSpec:
    """The notification to the client's owner as a spec, for schedule_messages() (many
    owners at once) or notify_owner() (one). Raises OwnerUnreachable. No lead is attached:
    the recipient is the owner, so a lead's quiet hours must not hold it back."""
    channel, address = owner_contact(client)
    return MessageSpec(
        channel=channel,
        to=address,
        subject=subject if channel == Channel.EMAIL else "",
        body=body,
        send_at=now,
        client=client,
        idempotency_key=idempotency_key,
    )


def notify_owner(
    client: Client,
    *,
    subject: str,
    body: str,
    idempotency_key: str,
    source: str,
    now: datetime,
) -> tuple[ScheduledMessage, bool]:
    """Queue a notification to the client's owner; (message, created) as schedule_message returns.

    Raises OwnerUnreachable, or ValidationError when the stored contact is not valid.
    """
    spec = owner_message_spec(client, subject=subject, body=body, idempotency_key=idempotency_key, now=now)
    return schedule_message(source=source, **spec.as_kwargs())
