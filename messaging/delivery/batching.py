"""Email through Resend's /emails/batch: up to RESEND_BATCH_SIZE emails per request.

Strict validation (Resend's default): a batch is accepted whole or refused whole, so a 200
means every email of it was created and a 422 means none was. A refused batch is split and
each email goes alone, meeting its own error. Permissive mode would answer ids for the
created emails and errors by index; which id belongs to which email would then rest on the
order of the answer, which Resend does not promise (see docs/operations.md).

One Idempotency-Key covers a batch. It is derived from its messages (sorted ids and retry
generations), written on every message before the call, and the payload is built in the same
order, so crash recovery rebuilds the same request from the database and Resend answers it
with the first answer, sending nothing twice.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from messaging.delivery.halts import Halts
from messaging.delivery.outcomes import SendOutcome, record_many
from messaging.delivery.pacing import MAX_RATE_LIMITED_TRIES, RunPacing
from messaging.delivery.providers import get_email_provider
from messaging.delivery.providers.base import EmailPayload, PermanentError, TransientError
from messaging.delivery.ratelimit import taking_turn
from messaging.models import Channel, ScheduledMessage, Status, transition

MAX_BATCH = 100
# Resend keeps a key 24 hours; past this a resend under it could send again.
KEY_KEPT = timedelta(hours=23)
CONCURRENT_IDEMPOTENT = "concurrent_idempotent_requests"


def batch_size() -> int:
    """RESEND_BATCH_SIZE, or 100 when it is 0 and email goes through Resend; 1 otherwise."""
    if settings.EMAIL_PROVIDER != "resend":
        return 1
    size = settings.RESEND_BATCH_SIZE or MAX_BATCH
    return max(1, min(size, MAX_BATCH))


def batch_key(messages: list[ScheduledMessage]) -> str:
    """The batch's Idempotency-Key: the same messages (and generations) give the same key."""
    members = ",".join(f"{m.pk}:{m.generation}" for m in sorted(messages, key=lambda m: str(m.pk)))
    return "batch:" + hashlib.sha256(members.encode()).hexdigest()


def plan_batches(messages: list[ScheduledMessage], size: int) -> tuple[list[ScheduledMessage], list[list]]:
    """Split claimed messages into those sent alone and email batches (at least 2 each), each
    batch in key order (sorted by id), so recovery rebuilds it in the same order."""
    emails = sorted((m for m in messages if m.channel == Channel.EMAIL), key=lambda m: str(m.pk))
    if size <= 1 or len(emails) < 2:
        return list(messages), []
    singles = [m for m in messages if m.channel != Channel.EMAIL]
    batches = [emails[i : i + size] for i in range(0, len(emails), size)]
    if len(batches[-1]) == 1:
        singles.append(batches.pop()[0])
    return singles, batches


def mark_batches(batches: list[list[ScheduledMessage]], singles: list[ScheduledMessage]) -> None:
    """Record each batch's key on its messages before any call (one UPDATE per batch); a
    message going alone loses a key left from an earlier batch."""
    for batch in batches:
        key = batch_key(batch)
        ScheduledMessage.objects.filter(
            pk__in=[m.pk for m in batch], status=Status.SENDING, claim_token=batch[0].claim_token
        ).update(batch_idempotency_key=key)
        for message in batch:
            message.batch_idempotency_key = key
    stale = [m for m in singles if m.batch_idempotency_key]
    if stale:
        ScheduledMessage.objects.filter(pk__in=[m.pk for m in stale]).update(batch_idempotency_key="")
        for message in stale:
            message.batch_idempotency_key = ""


def _payload(message: ScheduledMessage) -> EmailPayload:
    return EmailPayload(
        to=message.to,
        subject=message.subject,
        html=message.html,
        text=message.body,
        idempotency_key=message.provider_idempotency_key,
    )


def call_batch(messages: list[ScheduledMessage], key: str) -> list[SendOutcome]:
    """One /emails/batch request; an outcome per message (the same error for all on failure)."""
    started, clock = timezone.now(), time.monotonic()
    try:
        results = get_email_provider().send_batch([_payload(m) for m in messages], key)
        error = None
    except Exception as exc:  # classified by outcomes.record
        results, error = None, exc
        if isinstance(exc, TransientError) and exc.code == CONCURRENT_IDEMPOTENT:
            exc.may_have_sent = True  # the first request under this key may still succeed
    duration = int((time.monotonic() - clock) * 1000)
    if results is None:
        return [SendOutcome(message=m, started_at=started, duration_ms=duration, error=error) for m in messages]
    return [
        SendOutcome(message=m, started_at=started, duration_ms=duration, result=r)
        for m, r in zip(messages, results, strict=True)
    ]


def send_batch(
    messages: list[ScheduledMessage],
    stop: threading.Event,
    halts: Halts,
    pacing: RunPacing,
    until: float = math.inf,
    send_alone: Callable[[ScheduledMessage], SendOutcome | None] | None = None,
) -> tuple[list[SendOutcome | None] | None, bool]:
    """A batch in a pool thread: one send slot for the whole request; None when not started
    (released unsent). A batch refused whole for validation (422) is split: each message is
    sent alone by `send_alone(message)` (which may answer None: not started); the flag says
    the batch was split."""
    first = messages[0]
    until = min(until, min(m.send_by for m in messages) - 30.0)
    key = first.batch_idempotency_key
    outcomes: list[SendOutcome] = []
    for _ in range(MAX_RATE_LIMITED_TRIES):
        if stop.is_set() or halts.blocks(first) or pacing.blocks(first) or time.monotonic() > until:
            return None, False
        with taking_turn(pacing.turn(first, until, stop)) as turn:
            outcomes = call_batch(messages, key)
        if turn.refused:
            pacing.refused(first, turn)
            return None, False
        if not pacing.rate_limited(first, outcomes[0].error):
            break
    error = outcomes[0].error
    if isinstance(error, PermanentError) and send_alone is not None and len(messages) > 1:
        return [send_alone(m) for m in messages], True
    return list(outcomes), False


def resend_recovered_batches(messages: list[ScheduledMessage], now: datetime) -> dict[str, int]:
    """Crash recovery of email sent in batches: `messages` are expired `sending` rows taken
    over by recovery (its claim token). Each batch is rebuilt from every message carrying its
    key, in key order, and sent again under that key: Resend answers what it answered the
    first time. A batch that cannot be rebuilt as it was (a member retried or deleted since,
    or the key older than Resend keeps it) is not resent: its messages fail, saying so."""
    counts: dict[str, int] = {}
    by_key: dict[str, list[ScheduledMessage]] = {}
    for message in messages:
        by_key.setdefault(message.batch_idempotency_key, []).append(message)
    for key, ours in by_key.items():
        members = sorted(ScheduledMessage.objects.filter(batch_idempotency_key=key), key=lambda m: str(m.pk))
        held = {m.pk: m for m in ours}
        too_old = any((m.claimed_at or now) < now - KEY_KEPT for m in ours)
        if batch_key(members) != key or too_old:
            for message in ours:
                transition(
                    message.pk,
                    Status.FAILED,
                    expect=[Status.SENDING],
                    where={"claim_token": message.claim_token},
                    lease_expires_at=None,
                    last_error="lease expired during a batch send that cannot be resent as it was: "
                    "check Resend's log before retrying",
                )
            counts["recovered_failed"] = counts.get("recovered_failed", 0) + len(ours)
            continue
        ScheduledMessage.objects.filter(pk__in=list(held), claim_token__in={m.claim_token for m in ours}).update(
            attempts=F("attempts") + 1
        )
        for message in ours:
            message.attempts += 1
        # Members already recorded (or held by another recovery) go in the request unchanged
        # but are not recorded here.
        outcomes = [o for o in call_batch(members, key) if o.message.pk in held]
        if isinstance(outcomes[0].error, PermanentError):
            # Refused whole (strict): nothing of it was created. Back in the queue, keyless,
            # to be split by the next send.
            for message in ours:
                transition(
                    message.pk,
                    Status.PENDING,
                    expect=[Status.SENDING],
                    where={"claim_token": message.claim_token},
                    next_attempt_at=now,
                    lease_expires_at=None,
                    batch_idempotency_key="",
                    last_error=str(outcomes[0].error)[:2000],
                )
            counts["recovered_retrying"] = counts.get("recovered_retrying", 0) + len(ours)
            continue
        for outcome in outcomes:
            outcome.message = held[outcome.message.pk]
        for state, count in record_many(outcomes).items():
            counts[f"recovered_batch_{state}"] = counts.get(f"recovered_batch_{state}", 0) + count
    return counts
