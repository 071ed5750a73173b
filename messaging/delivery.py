"""The process-scheduled job: claim due messages, send them outside any transaction with a
bounded thread pool, record each outcome. Safe to run in many processes on many hosts."""

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from messaging.claiming import claim_due_messages, release
from messaging.models import Channel, ScheduledMessage
from messaging.outcomes import SendOutcome, record_many
from messaging.providers import get_email_provider, get_sms_provider
from messaging.providers.base import EmailPayload
from messaging.reconcile import recover_expired_leases
from scheduling.context import JobContext


def status_callback_url() -> str | None:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/webhooks/twilio/status/" if base else None


def send_one(message: ScheduledMessage, stop: threading.Event) -> SendOutcome | None:
    """One provider call, no database access (runs in a pool thread). None when the run is
    stopping and the message was not started."""
    if stop.is_set():
        return None
    started, clock = timezone.now(), time.monotonic()
    outcome = SendOutcome(message=message, started_at=started, duration_ms=0)
    try:
        if message.channel == Channel.SMS:
            sender = message.client.sms_from_number if message.client else ""
            outcome.result = get_sms_provider().send_sms(
                message.to, message.body, from_number=sender or None, status_callback=status_callback_url()
            )
        else:
            outcome.result = get_email_provider().send_email(
                EmailPayload(
                    to=message.to,
                    subject=message.subject,
                    html=message.html,
                    text=message.body,
                    # The message's UUID: a resend after a crash is dropped by Resend.
                    idempotency_key=str(message.pk),
                )
            )
    except Exception as exc:  # classified by outcomes.record
        outcome.error = exc
    outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    return outcome


def deliver_due_messages(ctx: JobContext) -> None:
    """Recover expired leases, then claim and send batches until none is due or the
    deadline nears. Counts go to the run: sent, retrying, failed, deferred, ..."""
    recovered = recover_expired_leases(timezone.now())
    for key, count in recovered.items():
        ctx.add(key, count)
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=settings.DELIVERY_CONCURRENCY, thread_name_prefix="deliver") as pool:
        while not ctx.should_stop():
            claim = claim_due_messages(timezone.now(), settings.DELIVERY_BATCH_SIZE, lease)
            ctx.add("deferred_quiet_hours", claim.deferred)
            ctx.add("opted_out", claim.opted_out)
            if not claim.ready:
                if not (claim.deferred or claim.opted_out):
                    break
                continue
            _send_batch(ctx, pool, claim.ready, stop)
            ctx.between_units()


# Outcomes are written in groups: one commit per group instead of one per message. A crash
# loses at most a group's records, and lease recovery reconciles those messages.
RECORD_GROUP_SIZE = 25
RECORD_GROUP_SECONDS = 0.25


def _send_batch(ctx: JobContext, pool: ThreadPoolExecutor, batch: list[ScheduledMessage], stop) -> None:
    futures: dict[Future, ScheduledMessage] = {pool.submit(send_one, m, stop): m for m in batch}
    unsent: list[ScheduledMessage] = []
    group: list[SendOutcome] = []
    oldest = 0.0

    def flush() -> None:
        counts = record_many(group)
        for state, count in counts.items():
            ctx.add(state, count)
        recorded = sum(n for state, n in counts.items() if state != "record_failed")
        ctx.item_succeeded(recorded)
        for _ in range(counts.get("record_failed", 0)):
            ctx.item_failed("delivery record", "database error while recording an outcome")
        group.clear()

    try:
        for future in as_completed(futures):
            outcome = future.result()
            if outcome is None:
                unsent.append(futures[future])
                continue
            if not group:
                oldest = time.monotonic()
            group.append(outcome)
            if len(group) >= RECORD_GROUP_SIZE or time.monotonic() - oldest >= RECORD_GROUP_SECONDS:
                flush()
            if ctx.should_stop():
                stop.set()  # sends not yet started are given back below
        if group:
            flush()
    except BaseException:
        stop.set()
        unsent.extend(m for f, m in futures.items() if not f.done())
        raise
    finally:
        if unsent:
            ctx.add("released", release(unsent))
