"""Telling a client's owner something happened (a missed call, a stalled conversation, a follow-up due).

The owner chose SMS or email (`client.notify_by`); everything goes through `schedule_message()`
(or `schedule_messages()` for many owners at once) with the caller's idempotency key, so a job
that runs twice notifies once.

An owner who cannot be reached (no contact, or none that is valid) is recorded on the client
(`Client.mark_owner_unreachable`): the first notification that finds it out raises
OwnerUnreachable with `first_time` set, later ones raise it without touching the contact
again, until the contact changes. The jobs report the first as one failed item and skip the
rest, so a client without a contact is not a failing run every tick.
"""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from messaging.bulk import MessageSpec
from messaging.models import Channel, Client, NotifyBy, ScheduledMessage
from messaging.phones import normalize_phone
from messaging.services import schedule_message


class OwnerUnreachable(ValueError):
    """The client has no owner phone or email that a notification can go to."""

    def __init__(self, reason: str, *, first_time: bool = True) -> None:
        super().__init__(reason)
        # False when this contact was already found unreachable (by an earlier run or item).
        self.first_time = first_time


def _usable(channel: str, address: str) -> str:
    """Why `address` cannot be used for `channel`, or "" when it can."""
    try:
        normalize_phone(address) if channel == Channel.SMS else validate_email(address)
    except ValidationError as exc:
        return " ".join(exc.messages)
    return ""


def owner_contact(client: Client) -> tuple[str, str]:
    """(channel, address) to reach the owner: the chosen channel, else the other one if set
    and valid; OwnerUnreachable saying what to fix otherwise."""
    phone, email = client.owner_phone.strip(), client.owner_email.strip()
    preferred = [(Channel.SMS, phone), (Channel.EMAIL, email)]
    if client.notify_by != NotifyBy.SMS:
        preferred.reverse()
    problems = []
    for channel, address in preferred:
        if not address:
            continue
        problem = _usable(channel, address)
        if not problem:
            return channel, address
        problems.append(f"owner {'phone' if channel == Channel.SMS else 'email'}: {problem}")
    what = "; ".join(problems) if problems else "no owner phone or email"
    raise OwnerUnreachable(
        f"client {client.pk} ({client.name}) cannot be notified: {what}. "
        "Set a valid one in admin to receive notifications"
    )


def check_owner_reachable(client: Client, now: datetime) -> tuple[str, str]:
    """owner_contact(), remembering an unreachable owner on the client (and forgetting it once
    the contact works): raises OwnerUnreachable, with first_time False for a contact already
    known to fail, without reading it again."""
    if client.owner_known_unreachable:
        raise OwnerUnreachable(client.owner_unreachable_reason, first_time=False)
    try:
        contact = owner_contact(client)
    except OwnerUnreachable as exc:
        exc.first_time = client.mark_owner_unreachable(str(exc), now)
        raise
    client.mark_owner_reachable()
    return contact


def owner_message_spec(client: Client, *, subject: str, body: str, idempotency_key: str, now: datetime) -> MessageSpec:
    """The notification to the client's owner as a spec, for schedule_messages() (many
    owners at once) or notify_owner() (one). Raises OwnerUnreachable (recorded on the client,
    see check_owner_reachable). No lead is attached: the recipient is the owner, so a lead's
    quiet hours must not hold it back."""
    channel, address = check_owner_reachable(client, now)
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

    Raises OwnerUnreachable (recorded on the client, see check_owner_reachable).
    """
    spec = owner_message_spec(client, subject=subject, body=body, idempotency_key=idempotency_key, now=now)
    return schedule_message(source=source, **spec.as_kwargs())
