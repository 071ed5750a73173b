"""Enqueueing and operator actions on the delivery queue. Every job sends through
`schedule_message()`, with a derived idempotency key so a re-run never sends twice."""

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.models import Channel, Client, Lead, ScheduledMessage, Status, transition
from messaging.phones import normalize_phone

logger = logging.getLogger("messaging.enqueue")


def normalize_recipient(channel: str, to: str) -> str:
    """E.164 for SMS, a lower-cased address for email; ValidationError otherwise."""
    to = (to or "").strip()
    if channel == Channel.SMS:
        return normalize_phone(to)
    if channel == Channel.EMAIL:
        validate_email(to)
        return to.lower()
    raise ValidationError(f"unknown channel {channel!r}: use 'sms' or 'email'")


def schedule_message(
    *,
    channel: str,
    to: str,
    body: str,
    subject: str = "",
    html: str = "",
    send_at: datetime | None = None,
    client: Client | None = None,
    lead: Lead | None = None,
    idempotency_key: str | None = None,
    source: str = "api",
    max_attempts: int | None = None,
) -> tuple[ScheduledMessage, bool]:
    """Queue a message; returns (message, created). The same idempotency_key again returns
    the message already queued under it and queues nothing."""
    if idempotency_key:
        existing = ScheduledMessage.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    recipient = normalize_recipient(channel, to)
    if not (body or "").strip():
        raise ValidationError("body is empty")
    if channel == Channel.EMAIL and not subject.strip():
        raise ValidationError("an email needs a subject")
    if send_at is not None and timezone.is_naive(send_at):
        raise ValidationError("send_at must carry a timezone offset, e.g. 2026-11-28T09:00:00-05:00")
    when = send_at or timezone.now()
    message = ScheduledMessage(
        channel=channel,
        to=recipient,
        body=body,
        subject=subject,
        html=html,
        send_at=when,
        next_attempt_at=when,
        client=client,
        lead=lead,
        idempotency_key=idempotency_key or None,
        source=source,
        max_attempts=max_attempts or settings.DELIVERY_MAX_ATTEMPTS,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        # Two callers with the same key at once: the other one won; return its message.
        existing = ScheduledMessage.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    logger.info(
        "message_scheduled",
        extra={"message_id": str(message.pk), "channel": channel, "source": source, "send_at": when.isoformat()},
    )
    return message, True


def cancel_message(message: ScheduledMessage) -> bool:
    """Cancel a pending message; False when its state no longer allows it."""
    done = bool(transition(message.pk, Status.CANCELLED, expect=[Status.PENDING]))
    message.refresh_from_db()
    return done


def retry_message(message: ScheduledMessage, now: datetime | None = None) -> bool:
    """Queue a failed or undelivered message again, with a fresh set of attempts."""
    now = now or timezone.now()
    done = bool(
        transition(
            message.pk,
            Status.PENDING,
            expect=[Status.FAILED, Status.UNDELIVERED],
            attempts=0,
            next_attempt_at=now,
            lease_expires_at=None,
        )
    )
    message.refresh_from_db()
    return done
