"""Enqueueing and operator actions on the delivery queue. Every job sends through
`schedule_message()`, with a derived idempotency key so a re-run never sends twice."""

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from messaging.models import Channel, Client, Lead, ScheduledMessage, Status, transition
from messaging.phones import normalize_phone

logger = logging.getLogger("messaging.enqueue")

# What a message may hold, whoever queues it: the API checks the same rules to name the field,
# schedule_message() enforces them so no caller can queue what a provider would refuse or cut.
SMS_BODY_MAX_CHARS = 1600  # Twilio's limit on Body (error 21617), counted as Twilio counts: UTF-16
SUBJECT_MAX_CHARS = 300  # the subject column (any channel); far beyond what a mail client shows
# Text and HTML parts of an email, in UTF-8 bytes. Gmail already clips an HTML part past ~102 KB,
# so anything near this is a mistake (a template loop, an inlined image), not a newsletter; it
# also keeps a Resend batch of 100 emails to tens of megabytes instead of hundreds.
EMAIL_BODY_MAX_BYTES = 256 * 1024
EMAIL_HTML_MAX_BYTES = 256 * 1024
RECIPIENT_MAX_CHARS = 254  # the `to` column


class IdempotencyConflict(Exception):
    """The idempotency key already names a message that differs from this request."""

    def __init__(self, message: ScheduledMessage, differences: dict[str, str]) -> None:
        super().__init__(f"idempotency key {message.idempotency_key!r} is used by a different message")
        self.message = message
        self.differences = differences  # field -> what the queued message has instead


# What normalize_phone() returns: "+", a country code, the national number; 15 digits at most.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def normalize_recipient(channel: str, to: str, *, normalized: bool = False) -> str:
    """E.164 for SMS, a lower-cased address for email; ValidationError otherwise.

    `normalized`: `to` is a value this function returned before, stored by the caller (a
    campaign's recipients are normalised as they are added). A number in E.164 form is then
    taken as it is: parsing it again and checking it against the numbering plan is most of the
    cost of queueing 10,000 campaign messages at once (about 75 ms per thousand). Anything not
    in that form is checked in full, and an address always is (a regular expression, cheap)."""
    to = (to or "").strip()
    if channel == Channel.SMS:
        if normalized and E164.fullmatch(to):
            return to
        return normalize_phone(to)
    if channel == Channel.EMAIL:
        validate_email(to)
        return to.lower()
    raise ValidationError(f"unknown channel {channel!r}: use 'sms' or 'email'")


def sms_length(text: str) -> int:
    """Characters as Twilio counts them toward its limit: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def content_errors(channel: str, body: str, subject: str = "", html: str = "") -> dict[str, str]:
    """What is wrong with a message's text for its channel, as {field: reason}; {} when nothing."""
    errors: dict[str, str] = {}
    body, subject, html = body or "", subject or "", html or ""
    if not body.strip():
        errors["body"] = "The body is empty."
    if channel == Channel.SMS:
        if sms_length(body) > SMS_BODY_MAX_CHARS:
            errors["body"] = (
                f"An SMS body is at most {SMS_BODY_MAX_CHARS:,} characters (Twilio's limit; an emoji counts "
                f"as two); this one is {sms_length(body):,}. Shorten it or send it as an email."
            )
    elif channel == Channel.EMAIL:
        if not subject.strip():
            errors["subject"] = "An email needs a subject."
        for field, text, limit in (("body", body, EMAIL_BODY_MAX_BYTES), ("html", html, EMAIL_HTML_MAX_BYTES)):
            size = len(text.encode("utf-8"))
            if size > limit:
                errors[field] = (
                    f"An email's {field} is at most {limit // 1024} KiB ({limit:,} bytes as UTF-8); "
                    f"this one is {size:,} bytes."
                )
    else:
        errors["channel"] = f"Unknown channel {channel!r}: use 'sms' or 'email'."
    if len(subject) > SUBJECT_MAX_CHARS:
        errors["subject"] = f"A subject is at most {SUBJECT_MAX_CHARS} characters; this one is {len(subject):,}."
    return errors


def send_at_error(send_at: datetime | None, now: datetime) -> str:
    """Why `send_at` cannot be queued ("" when it can): naive, or past the enqueue horizon."""
    if send_at is None:
        return ""
    if timezone.is_naive(send_at):
        return "send_at must carry a timezone offset, e.g. 2026-11-28T09:00:00-05:00."
    horizon = now + timedelta(days=settings.ENQUEUE_HORIZON_DAYS)
    if send_at > horizon:
        return (
            f"send_at is more than {settings.ENQUEUE_HORIZON_DAYS} days ahead (the latest is "
            f"{horizon.replace(microsecond=0).isoformat()}); queue it closer to the date."
        )
    return ""


def validate_message(
    *,
    channel: str,
    to: str,
    body: str,
    subject: str,
    html: str,
    send_at: datetime | None,
    now: datetime,
    normalized: bool = False,
) -> str:
    """The normalised recipient of a message that may be queued; ValidationError naming every
    field that is wrong otherwise. `normalized`: as normalize_recipient() takes it."""
    errors = content_errors(channel, body, subject, html)
    recipient = ""
    if "channel" not in errors:
        try:
            recipient = normalize_recipient(channel, to, normalized=normalized)
        except ValidationError as exc:
            errors["to"] = " ".join(exc.messages)
        else:
            if len(recipient) > RECIPIENT_MAX_CHARS:
                errors["to"] = f"A recipient is at most {RECIPIENT_MAX_CHARS} characters."
    if reason := send_at_error(send_at, now):
        errors["send_at"] = reason
    if errors:
        raise ValidationError(errors)
    return recipient


def idempotency_differences(message: ScheduledMessage, **requested: object) -> dict[str, str]:
    """The fields in which a request differs from the message already queued under its key,
    each with the queued value (or a description of it). send_at only counts when the request
    gives one: "now" moves between a request and its retry."""
    differences: dict[str, str] = {}
    channel = requested["channel"]
    try:
        recipient = normalize_recipient(channel, requested["to"])
    except ValidationError as exc:
        raise ValidationError({"to": exc.messages}) from exc
    client, lead, send_at = requested["client"], requested["lead"], requested["send_at"]
    if message.channel != channel:
        differences["channel"] = message.channel
    if message.to != recipient:
        differences["to"] = message.to
    for field in ("subject", "body", "html"):
        if getattr(message, field) != (requested[field] or ""):
            differences[field] = f"a different {field} ({len(getattr(message, field)):,} characters)"
    if send_at is not None and message.send_at != send_at:
        differences["send_at"] = message.send_at.isoformat()
    if message.client_id != (client.pk if client else None):
        differences["client"] = str(message.client_id)
    if message.lead_id != (lead.pk if lead else None):
        differences["lead"] = str(message.lead_id)
    return differences


def _existing(idempotency_key: str, strict: bool, requested: dict[str, object]) -> ScheduledMessage | None:
    """The message already queued under the key; IdempotencyConflict when strict and it differs."""
    message = ScheduledMessage.objects.filter(idempotency_key=idempotency_key).first()
    if message is not None and strict:
        differences = idempotency_differences(message, **requested)
        if differences:
            raise IdempotencyConflict(message, differences)
    return message


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
    strict_idempotency: bool = False,
) -> tuple[ScheduledMessage, bool]:
    """Queue a message; returns (message, created). The same idempotency_key again returns
    the message already queued under it and queues nothing.

    ValidationError (a dict naming each wrong field) when the message cannot be queued as
    given: see validate_message(). With strict_idempotency a key already used for a different
    message raises IdempotencyConflict instead of returning it: the API wants that (a caller
    reusing a key by mistake must hear so), jobs do not (a re-run may render a slightly
    different text for the same event, and must still send nothing).
    """
    requested = {
        "channel": channel,
        "to": to,
        "body": body,
        "subject": subject,
        "html": html,
        "send_at": send_at,
        "client": client,
        "lead": lead,
    }
    if idempotency_key:
        existing = _existing(idempotency_key, strict_idempotency, requested)
        if existing is not None:
            return existing, False
    now = timezone.now()
    recipient = validate_message(
        channel=channel, to=to, body=body, subject=subject, html=html, send_at=send_at, now=now
    )
    when = send_at or now
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
        existing = _existing(idempotency_key, strict_idempotency, requested) if idempotency_key else None
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
            # A new generation sends under a new provider idempotency key: Resend would
            # answer a retry under the old key with the first send's result and send nothing.
            generation=F("generation") + 1,
            # The old send's id goes too: a late report about it must not be taken for this one.
            provider_message_id="",
        )
    )
    message.refresh_from_db()
    return done
