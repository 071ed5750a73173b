"""The process-scheduled job: claim due messages, send them outside any transaction with a
bounded thread pool, record each outcome. Safe to run in many processes on many hosts."""

import math
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.utils import timezone

from messaging.delivery.batching import batch_size, mark_batches, plan_batches, send_batch
from messaging.delivery.claiming import claim_due_messages, release
from messaging.delivery.halts import PROVIDER_NAMES, Breaker, Halts
from messaging.delivery.outcomes import SendOutcome, account_problem, record_many
from messaging.delivery.pacing import MAX_RATE_LIMITED_TRIES, RunPacing
from messaging.delivery.providers import get_email_provider, get_sms_provider
from messaging.delivery.providers.base import AccountError, EmailPayload, TransientError
from messaging.delivery.ratelimit import taking_turn
from messaging.delivery.reconcile import recover_expired_leases
from messaging.delivery.reports import apply_stored_reports
from messaging.models import Channel, ScheduledMessage
from scheduling.context import JobContext

CHANNELS = (Channel.SMS, Channel.EMAIL)

# A send must start this long before its lease ends: a worker that stalled (a paused VM, a
# slow rate limiter) must not send what another worker may already be reconciling.
LEASE_SAFETY_MARGIN_SECONDS = 30.0
# Outcomes are written in groups, one commit per group instead of one per message, and at
# least every RECORD_GROUP_SECONDS so a slow send never holds back the others' records (a
# delivery report arriving before its message is recorded would find no message).
RECORD_GROUP_SIZE = 25
RECORD_GROUP_SECONDS = 0.25


def status_callback_url() -> str | None:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/webhooks/twilio/status/" if base else None


def send_one(
    message: ScheduledMessage,
    stop: threading.Event,
    halts: Halts,
    pacing: RunPacing | None = None,
    until: float = math.inf,
) -> SendOutcome | None:
    """One provider call, no database access of Django's (runs in a pool thread). None when
    the message was not started (the run is stopping, its provider or sender was halted, no
    send slot comes before its lease or the run (`until`, monotonic) must end): it is
    released, its attempt unused. Waiting for a slot, and a 429 (which the provider never
    processed: it pauses the allowance for everyone), keep the message claimed."""
    until = min(until, message.send_by - LEASE_SAFETY_MARGIN_SECONDS)
    pacing = pacing or RunPacing()
    outcome = None
    for _ in range(MAX_RATE_LIMITED_TRIES):
        if stop.is_set() or halts.blocks(message) or pacing.blocks(message) or time.monotonic() > until:
            return None
        with taking_turn(pacing.turn(message, until, stop)) as turn:
            outcome = _call_provider(message)
        if turn.refused:
            pacing.refused(message, turn)
            return None
        if not pacing.rate_limited(message, outcome.error):
            break
    return outcome


def _call_provider(message: ScheduledMessage) -> SendOutcome:
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
                    # The message's UUID (and retry generation): a resend after a crash is
                    # dropped by Resend, an operator's retry is a new send.
                    idempotency_key=message.provider_idempotency_key,
                )
            )
    except ImproperlyConfigured as exc:  # a chosen provider without its settings
        outcome.error = AccountError(str(exc), code="not_configured")
    except Exception as exc:  # classified by outcomes.record
        outcome.error = exc
    outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    return outcome


def deliver_due_messages(ctx: JobContext, workers: int = 1) -> None:
    """Recover expired leases and apply stored delivery reports, then send what is due: in
    this process, or in up to `workers` processes sharing the queue (messaging.delivery.workers)."""
    for key, count in recover_expired_leases(timezone.now(), should_stop=ctx.should_stop).items():
        ctx.add(key, count)
    for key, count in apply_stored_reports(timezone.now()).items():
        ctx.add(key, count)
    from messaging.delivery.workers import deliver_in_workers, workers_for

    count = workers_for(workers, timezone.now())
    if count > 1:
        deliver_in_workers(ctx, count, send_due_messages)
    else:
        send_due_messages(ctx)


def send_due_messages(ctx: JobContext) -> None:
    """Keep the send pools fed with claimed messages until none is due or the deadline
    nears. Counts go to the run: sent, retrying, failed, held, ...

    Each channel has its own pool of DELIVERY_CONCURRENCY threads. The next batch is claimed
    while a pool still works on the last one (when fewer than two sends per thread are left),
    for the channels that need more only, so no pool idles between batches. A provider that
    refuses our account, or fails DELIVERY_BREAKER_THRESHOLD times in a row, is not used for
    the rest of the run, and the run fails saying what to fix.
    """
    lease = timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    low_water = 2 * settings.DELIVERY_CONCURRENCY
    stop = threading.Event()
    halts = Halts()
    pacing = RunPacing()
    # No send slot is taken that comes after the run must stop taking work (ctx.should_stop's
    # margin is at most a tenth of the run): a throttled channel is then left for the next run.
    run_until = time.monotonic() + 0.9 * ctx.time_left()
    watch = _ProviderWatch(ctx, halts, Breaker(settings.DELIVERY_BREAKER_THRESHOLD), pacing, run_until)
    futures: dict[Future, list[ScheduledMessage]] = {}
    unsent: list[ScheduledMessage] = []
    recorder = _Recorder(ctx)
    drained: set[str] = set()  # channels with nothing left to claim in this run
    with ExitStack() as stack:
        # A pool per channel, each claimed for on its own: SMS waiting for their allowance
        # never hold the threads (or the claim window) that email needs, and the other way round.
        pools = {
            channel: stack.enter_context(
                ThreadPoolExecutor(max_workers=settings.DELIVERY_CONCURRENCY, thread_name_prefix=f"deliver-{channel}")
            )
            for channel in CHANNELS
        }
        try:
            while True:
                if ctx.should_stop():
                    stop.set()  # sends not yet started come back as None and are released
                # Requests in flight per channel (a batch is one request).
                busy = Counter(group[0].channel for group in futures.values())
                wanted = [c for c in CHANNELS if c not in drained and busy[c] < low_water]
                if wanted and not stop.is_set():
                    closed = [c for c in CHANNELS if c not in wanted]
                    claim = claim_due_messages(
                        timezone.now(), settings.DELIVERY_BATCH_SIZE, lease, exclude=_exclusion(halts, pacing, closed)
                    )
                    ctx.add("deferred_quiet_hours", claim.deferred)
                    ctx.add("opted_out", claim.opted_out)
                    ctx.add("suppressed", claim.suppressed)
                    singles, batches = plan_batches(claim.ready, batch_size())
                    mark_batches(batches, singles)
                    futures.update({pools[m.channel].submit(watch.send_group, [m], stop): [m] for m in singles})
                    futures.update({pools[Channel.EMAIL].submit(watch.send_group, b, stop): b for b in batches})
                    if not (claim.ready or claim.deferred or claim.opted_out or claim.suppressed):
                        drained.update(wanted)
                    elif not claim.ready:
                        continue  # only deferred, opted-out or suppressed rows this time: claim again
                if not futures:
                    if stop.is_set() or drained.issuperset(CHANNELS):
                        break
                    continue
                done, _ = wait(futures, timeout=RECORD_GROUP_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    futures.pop(future)
                    for message, outcome in future.result():
                        if outcome is None:
                            unsent.append(message)
                        else:
                            recorder.add(outcome)
                if recorder.due():
                    recorder.flush()
                    ctx.between_units()
            recorder.flush()
        except BaseException:
            # Interrupted (a database error): give back only the sends that never started.
            # Those in flight may reach the provider; they stay `sending` and lease recovery
            # reconciles them, so nothing is sent twice.
            stop.set()
            unsent.extend(m for f, group in futures.items() if f.cancel() for m in group)
            raise
        finally:
            if unsent:
                ctx.add("released", release(unsent))
    watch.report()


def _exclusion(halts: Halts, pacing: RunPacing, closed: list[str]) -> Q | None:
    """What a claim leaves out: halted providers and senders, throttled channels, channels
    with enough claimed already (`closed`)."""
    channels = set(pacing.channels()) | set(closed)
    halted = halts.exclusion()
    if not channels:
        return halted
    condition = Q(channel__in=sorted(channels))
    return condition | halted if halted is not None else condition


class _ProviderWatch:
    """Halts a provider (or one SMS sender) on an account error or a run of transient errors,
    and tells the run once per provider what happened and what to fix."""

    def __init__(self, ctx: JobContext, halts: Halts, breaker: Breaker, pacing: RunPacing, until: float) -> None:
        self.ctx, self.halts, self.breaker = ctx, halts, breaker
        self.pacing, self.until = pacing, until

    def send(self, message: ScheduledMessage, stop: threading.Event) -> SendOutcome | None:
        """send_one, then judge its outcome in the same pool thread: a halt takes effect
        before this thread (or any other) starts another send."""
        outcome = send_one(message, stop, self.halts, self.pacing, self.until)
        if outcome is not None:
            self.saw(outcome)
        return outcome

    def send_group(
        self, messages: list[ScheduledMessage], stop: threading.Event
    ) -> list[tuple[ScheduledMessage, SendOutcome | None]]:
        """One message alone, or an email batch (one request; split on a 422): each message
        with its outcome, None when it was not started."""
        if len(messages) == 1:
            return [(messages[0], self.send(messages[0], stop))]
        outcomes, split = send_batch(
            messages, stop, self.halts, self.pacing, self.until, send_alone=lambda m: self.send(m, stop)
        )
        if outcomes is None:
            return [(m, None) for m in messages]
        if not split:
            self.saw(outcomes[0])  # the batch's one answer (a split batch's were judged one by one)
        return list(zip(messages, outcomes, strict=True))

    def saw(self, outcome: SendOutcome) -> None:
        message, error = outcome.message, outcome.error
        channel = message.channel
        if isinstance(error, AccountError):
            sender = error.sender if channel == Channel.SMS else ""
            reason = account_problem(error)
            if sender and sender != settings.TWILIO_FROM_NUMBER:
                if self.halts.halt_sender(sender, reason):
                    self.ctx.fail_run(f"SMS from {sender} refused: {reason}; its messages stay pending")
            elif self.halts.halt_channel(channel, reason):
                name = PROVIDER_NAMES[channel]
                self.ctx.fail_run(f"{name} provider refused our account: {reason}; {name} messages stay pending")
        elif isinstance(error, TransientError):
            if self.breaker.failure(channel) and self.halts.halt_channel(channel, f"outage: {error}"):
                name = PROVIDER_NAMES[channel]
                self.ctx.fail_run(
                    f"{name} provider failed {self.breaker.threshold} times in a row (last: {error}); "
                    f"stopped sending {name} for this run, unsent messages released with their attempts unused"
                )
        else:
            self.breaker.success(channel)

    def report(self) -> None:
        for key, count in self.pacing.counts.items():
            self.ctx.add(key, count)
        if self.pacing.throttled:
            # Not a failure by itself: the provider's allowance is used up until after this
            # run; the next run sends what was released.
            self.ctx.data["throttled"] = sorted(PROVIDER_NAMES[c] for c in self.pacing.throttled)
        for problem in self.pacing.problems:
            self.ctx.fail_run(problem)
        if self.halts.channels or self.halts.senders:
            self.ctx.data["halted"] = sorted(
                [PROVIDER_NAMES[c] for c in self.halts.channels] + [f"SMS from {s}" for s in self.halts.senders]
            )


class _Recorder:
    """Collects outcomes and writes them a group at a time."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.group: list[SendOutcome] = []
        self.oldest = 0.0

    def add(self, outcome: SendOutcome) -> None:
        if not self.group:
            self.oldest = time.monotonic()
        self.group.append(outcome)

    def due(self) -> bool:
        return bool(self.group) and (
            len(self.group) >= RECORD_GROUP_SIZE or time.monotonic() - self.oldest >= RECORD_GROUP_SECONDS
        )

    def flush(self) -> None:
        if not self.group:
            return
        counts = record_many(self.group)
        self.group = []
        for state, count in counts.items():
            self.ctx.add(state, count)
        # A held message (its provider refused our account) is not a delivery: the run says
        # why in its failure, and the message waits for the next run.
        self.ctx.item_succeeded(sum(n for state, n in counts.items() if state not in ("record_failed", "held")))
        for _ in range(counts.get("record_failed", 0)):
            self.ctx.item_failed("delivery record", "database error while recording an outcome")
