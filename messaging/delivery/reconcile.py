"""Crash recovery: a `sending` message whose lease expired is reconciled, never guessed.

Email goes back to `pending` and is resent with the same Idempotency-Key (its UUID), so
Resend drops a duplicate; email that went in a Resend batch is resent as that whole batch
under the batch's recorded key (messaging.delivery.batching). SMS has no such key: Twilio is
asked for messages to that number since the claim; one with the same sender and body means
it went out (marked `sent` with that SID), none means it did not (back to `pending`). If
Twilio cannot be asked, the message
stays `sending` under a new lease and is asked about again later.
"""

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from messaging.delivery.batching import resend_recovered_batches
from messaging.delivery.claiming import worker_name
from messaging.delivery.providers import get_sms_provider
from messaging.delivery.providers.base import ProviderError
from messaging.delivery.reports import apply_pending_reports
from messaging.models import Channel, DeliveryAttempt, Outcome, ScheduledMessage, Status, transition

logger = logging.getLogger("messaging.delivery.reconcile")
CLOCK_SKEW = timedelta(seconds=30)  # our clock vs Twilio's when comparing creation times
RECOVERY_BATCH = 200


def _take_expired() -> list[ScheduledMessage]:
    """Leases that ended by the database's clock, taken over under a claim of our own."""
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    token = uuid.uuid4()
    with transaction.atomic():
        expired = list(
            ScheduledMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("client")
            .filter(status=Status.SENDING, lease_expires_at__lt=Now())
            .order_by("lease_expires_at")[:RECOVERY_BATCH]
        )
        # A new lease and token while we look: no other worker reconciles the same rows, and
        # a late outcome write from the claim that expired changes nothing.
        ScheduledMessage.objects.filter(pk__in=[m.pk for m in expired]).update(
            lease_expires_at=Now() + lease, claimed_by=worker_name(), claim_token=token
        )
    for message in expired:
        message.claim_token = token
    return expired


def _ours(message: ScheduledMessage) -> dict[str, object]:
    return {"claim_token": message.claim_token}


def _give_back(message: ScheduledMessage, now: datetime, why: str) -> str:
    if message.attempts >= message.max_attempts:
        transition(
            message.pk,
            Status.FAILED,
            expect=[Status.SENDING],
            where=_ours(message),
            lease_expires_at=None,
            last_error=f"gave up after {message.attempts} attempts: {why}",
        )
        return "failed"
    transition(
        message.pk,
        Status.PENDING,
        expect=[Status.SENDING],
        where=_ours(message),
        next_attempt_at=now,
        lease_expires_at=None,
        last_error=why,
    )
    return "retrying"


def _find_on_twilio(message: ScheduledMessage) -> str | None:
    """The SID of a Twilio message matching this one, sent since it was claimed."""
    since = (message.claimed_at or message.send_at) - CLOCK_SKEW
    own = message.client.sms_from_number if message.client else ""
    # Through a Messaging Service the pool chose the number: look by recipient (and text) only.
    sender = own or ("" if settings.TWILIO_MESSAGING_SERVICE_SID else settings.TWILIO_FROM_NUMBER)
    found = get_sms_provider().find_sent(message.to, since, from_number=sender or None)
    candidates = [r.provider_id for r in found if (r.raw or {}).get("body") in (None, message.body)]
    if not candidates:
        return None
    # Another message with the same text to the same number may already own a SID.
    taken = set(
        ScheduledMessage.objects.filter(provider_message_id__in=candidates)
        .exclude(pk=message.pk)
        .values_list("provider_message_id", flat=True)
    )
    return next((sid for sid in candidates if sid not in taken), None)


def recover_expired_leases(now: datetime, should_stop: Callable[[], bool] = lambda: False) -> Counter:
    """Reconcile expired leases, a batch at a time. Stops at the run's deadline or at the
    first failed Twilio look-up (Twilio is likely down: waiting on it message by message
    would hold up all delivery); what is left is handed back for the next tick."""
    counts: Counter = Counter()
    taken = _take_expired()
    batched = [m for m in taken if m.channel == Channel.EMAIL and m.batch_idempotency_key]
    if batched:
        counts.update(resend_recovered_batches(batched, now))
        taken = [m for m in taken if not (m.channel == Channel.EMAIL and m.batch_idempotency_key)]
    for index, message in enumerate(taken):
        if should_stop():
            _hand_back(taken[index:], now)
            break
        if message.channel == Channel.EMAIL:
            counts["recovered_" + _give_back(message, now, "lease expired; resent with the same idempotency key")] += 1
            continue
        try:
            sid = _find_on_twilio(message)
        except ProviderError as exc:
            logger.warning("reconcile_lookup_failed", extra={"message_id": str(message.pk), "error": str(exc)})
            counts["reconcile_pending"] += len(taken) - index
            _hand_back(taken[index:], now)
            break
        if sid:
            with transaction.atomic():
                moved = transition(
                    message.pk,
                    Status.SENT,
                    expect=[Status.SENDING],
                    where=_ours(message),
                    provider_message_id=sid,
                    sent_at=now,
                    lease_expires_at=None,
                    last_error="",
                )
                DeliveryAttempt.objects.create(
                    message=message,
                    started_at=now,
                    outcome=Outcome.RECONCILED,
                    provider_message_id=sid,
                    worker=worker_name(),
                    error="found at Twilio after the lease expired",
                )
                if moved:
                    apply_pending_reports([(Channel.SMS, sid, message.pk)])
            counts["reconciled_sent"] += 1
        else:
            counts["recovered_" + _give_back(message, now, "lease expired; not found at Twilio")] += 1
    return counts


def _hand_back(messages: list[ScheduledMessage], now: datetime) -> None:
    """Let the lease of messages we took but did not reconcile expire at once again."""
    ScheduledMessage.objects.filter(
        pk__in=[m.pk for m in messages], status=Status.SENDING, claim_token__in={m.claim_token for m in messages}
    ).update(lease_expires_at=Now())
