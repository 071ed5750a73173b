"""Recording what a provider call did: the message's new state and a DeliveryAttempt row."""

import logging
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from messaging.conversations import record_outbound_sms
from messaging.delivery.claiming import worker_name
from messaging.delivery.providers.base import AccountError, PermanentError, ProviderError, SendResult
from messaging.delivery.reports import apply_pending_reports
from messaging.models import Channel, DeliveryAttempt, Outcome, ScheduledMessage, Status, transition
from messaging.optouts import record_opt_out

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
logger = logging.getLogger("messaging.delivery")
OPTED_OUT_CODES = {"21610"}  # Twilio: the recipient replied STOP to this sender


@dataclass
class SendOutcome:
    message: ScheduledMessage
    started_at: datetime
    duration_ms: int
    result: SendResult | None = None
    error: Exception | None = None
    attempt: DeliveryAttempt | None = None


def backoff(attempts: int, retry_after: float | None = None, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter; the provider's Retry-After wins when given."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


def _attempt(outcome: SendOutcome, kind: str, **fields: object) -> None:
    outcome.attempt = DeliveryAttempt(
        message_id=outcome.message.pk,
        started_at=outcome.started_at,
        duration_ms=outcome.duration_ms,
        outcome=kind,
        worker=worker_name(),
        **fields,
    )


def record_many(outcomes: list[SendOutcome], now: datetime | None = None) -> Counter:
    """Apply a group of outcomes in one transaction (one commit, not one per message).

    If the group fails (a database error on one row), each outcome is recorded on its own
    so one bad row cannot lose the others; a row that still fails is left `sending` for lease
    recovery and counted as "record_failed".
    """
    now = now or timezone.now()
    counts: Counter = Counter()
    try:
        with transaction.atomic():
            states = [record(outcome, now) for outcome in outcomes]
            DeliveryAttempt.objects.bulk_create([o.attempt for o in outcomes if o.attempt is not None])
            sent = [o for o, state in zip(outcomes, states, strict=True) if state == "sent"]
            record_outbound_sms([o.message for o in sent], now)
            # Last, so its per-report locks are held only until the commit right after: a
            # report that overtook this commit is applied in the same transaction.
            apply_pending_reports((o.message.channel, o.result.provider_id, o.message.pk) for o in sent)
        counts.update(states)
        return counts
    except DatabaseError:
        logger.exception("record_group_failed", extra={"size": len(outcomes)})
    for outcome in outcomes:
        try:
            with transaction.atomic():
                state = record(outcome, now)
                if outcome.attempt is not None:
                    outcome.attempt.save()
                if state == "sent":
                    record_outbound_sms([outcome.message], now)
                    apply_pending_reports([(outcome.message.channel, outcome.result.provider_id, outcome.message.pk)])
                counts[state] += 1
        except DatabaseError:
            logger.exception("record_failed", extra={"message_id": str(outcome.message.pk)})
            counts["record_failed"] += 1
    return counts


def record(outcome: SendOutcome, now: datetime | None = None) -> str:
    """Apply one send's outcome to the message; returns "sent", "retrying", "failed",
    "held" (an account error: pending again, attempt given back), "unknown" or
    "lost_claim". The DeliveryAttempt is left on `outcome.attempt` for the caller to save.

    Every change is conditional on the message still being `sending` under this claim's
    token: if lease recovery took it over meanwhile, recovery decides its fate.
    """
    now = now or timezone.now()
    message, error = outcome.message, outcome.error
    ours = {"claim_token": message.claim_token}

    def move(target: str, **fields: object) -> bool:
        return bool(transition(message.pk, target, expect=[Status.SENDING], where=ours, **fields))

    if error is None:
        result = outcome.result
        _attempt(outcome, Outcome.SENT, http_status=result.http_status, provider_message_id=result.provider_id)
        moved = move(
            Status.SENT,
            provider_message_id=result.provider_id,
            sent_at=now,
            lease_expires_at=None,
            last_error_code="",
            last_error="",
        )
        return "sent" if moved else "lost_claim"
    code = str(getattr(error, "code", None) or type(error).__name__)[:32]
    text = str(error)[:2000]
    http_status = getattr(error, "http_status", None)
    if isinstance(error, AccountError):
        # Not this message's fault: it keeps its attempt and waits, due, for the next run.
        _attempt(outcome, Outcome.ACCOUNT, http_status=http_status, error_code=code, error=text)
        moved = move(
            Status.PENDING,
            attempts=F("attempts") - 1,
            lease_expires_at=None,
            claim_token=None,
            last_error_code=code,
            last_error=f"held: {account_problem(error)}",
        )
        return "held" if moved else "lost_claim"
    if isinstance(error, PermanentError):
        _attempt(outcome, Outcome.PERMANENT, http_status=http_status, error_code=code, error=text)
        if message.channel == Channel.SMS and code in OPTED_OUT_CODES:
            record_opt_out(message.to, message.client, source=f"twilio_{code}")
        moved = move(Status.FAILED, last_error_code=code, last_error=text, lease_expires_at=None)
        return "failed" if moved else "lost_claim"
    # Transient (or an unexpected exception, which may be ours: treated the same way).
    _attempt(outcome, Outcome.TRANSIENT, http_status=http_status, error_code=code, error=text)
    when = now + backoff(message.attempts, getattr(error, "retry_after", None))
    if message.channel == Channel.SMS and getattr(error, "may_have_sent", False):
        # Twilio may have accepted it before the error (a read timeout, a 5xx): never resend
        # or give up blindly. Keep it `sending` under a lease that ends at the retry time;
        # lease recovery then asks Twilio, and retries or fails it only if it is not there.
        # Not before DELIVERY_RECONCILE_DELAY_SECONDS: Twilio's message list must have had
        # time to show a message it accepted, or it would be resent.
        wait = max(when - now, timedelta(seconds=settings.DELIVERY_RECONCILE_DELAY_SECONDS))
        moved = ScheduledMessage.objects.filter(pk=message.pk, status=Status.SENDING, **ours).update(
            lease_expires_at=Now() + wait, last_error_code=code, last_error=text
        )
        return "unknown" if moved else "lost_claim"
    if message.channel == Channel.EMAIL and message.batch_idempotency_key and getattr(error, "may_have_sent", False):
        # A batch Resend may have created: only the same request under the same key is safe
        # (a message re-batched with others would go under another key). It stays `sending`
        # until the retry time; lease recovery then resends the whole batch under its key.
        if message.attempts >= message.max_attempts:
            moved = move(
                Status.FAILED,
                last_error_code=code,
                last_error=f"gave up after {message.attempts} attempts (the batch may have been sent): {text}",
                lease_expires_at=None,
            )
            return "failed" if moved else "lost_claim"
        moved = ScheduledMessage.objects.filter(pk=message.pk, status=Status.SENDING, **ours).update(
            lease_expires_at=Now() + (when - now), last_error_code=code, last_error=text
        )
        return "unknown" if moved else "lost_claim"
    if message.attempts >= message.max_attempts:
        moved = move(
            Status.FAILED,
            last_error_code=code,
            last_error=f"gave up after {message.attempts} attempts: {text}",
            lease_expires_at=None,
        )
        return "failed" if moved else "lost_claim"
    moved = move(Status.PENDING, next_attempt_at=when, lease_expires_at=None, last_error_code=code, last_error=text)
    return "retrying" if moved else "lost_claim"


def account_problem(error: ProviderError) -> str:
    """What an account error says to an operator: the provider's words, then what to fix."""
    hint = getattr(error, "hint", "")
    return f"{error}: {hint}" if hint else str(error)
