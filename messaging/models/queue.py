"""The delivery queue: ScheduledMessage, one DeliveryAttempt per provider call."""

import uuid
from collections.abc import Iterable

from django.db import models
from django.utils.timezone import now as utc_now

from messaging.models.domain import Client, Lead


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "Email"


class Status(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Every legal move; `transition()` refuses anything else.
TRANSITIONS: dict[str, set[str]] = {
    Status.PENDING: {Status.SENDING, Status.CANCELLED, Status.FAILED},
    Status.SENDING: {Status.SENT, Status.PENDING, Status.FAILED},
    Status.SENT: {Status.DELIVERED, Status.UNDELIVERED},
    Status.DELIVERED: set(),
    Status.UNDELIVERED: {Status.PENDING},  # an operator's retry
    Status.FAILED: {Status.PENDING},  # an operator's retry
    Status.CANCELLED: set(),
}


class IllegalTransition(ValueError):
    pass


def sources_of(target: str) -> list[str]:
    """The states a message may move to `target` from."""
    return [source for source, targets in TRANSITIONS.items() if target in targets]


class ScheduledMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField()
    html = models.TextField(blank=True)
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="scheduled")
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="scheduled")
    send_at = models.DateTimeField(default=utc_now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    next_attempt_at = models.DateTimeField(default=utc_now)
    # The lease: who claimed the message, when, and until when the claim is theirs (database
    # clock). `claim_token` is new at every claim; every outcome write is conditional on it, so
    # a write from a claim that lease recovery took over (or from another run in the same
    # process: threads share `claimed_by`) changes nothing.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True)
    last_error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # Bumped by an operator's retry: the provider keeps an idempotency key for 24 h, so a retry
    # must send under a key of its own, while crash recovery of one generation keeps its key.
    generation = models.PositiveIntegerField(default=0)
    # The Idempotency-Key of the Resend batch this message last went out in, written before the
    # call: crash recovery resends the whole batch under it (messaging.delivery.batching).
    batch_idempotency_key = models.CharField(max_length=256, blank=True, default="")
    source = models.CharField(max_length=64, default="api")
    created_at = models.DateTimeField(default=utc_now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-send_at"]
        indexes = [
            # process-scheduled, every minute: the claim query (pending, next_attempt_at <= now, in
            # next_attempt_at order; deferred messages sit later in the index, not at its head).
            models.Index(
                fields=["next_attempt_at", "send_at"], name="sched_claim_next", condition=models.Q(status="pending")
            ),
            # process-scheduled: leases that expired (crashed workers).
            models.Index(fields=["lease_expires_at"], name="sched_lease", condition=models.Q(status="sending")),
            # The /scheduled/ page: filter by status and channel, newest first; per-client view.
            models.Index(fields=["status", "channel", "-send_at"], name="sched_status_channel"),
            # GET /metrics, every scrape: messages per status and channel. Narrow, so it
            # deduplicates to a tenth of the one above and is read alone (index-only scan).
            models.Index(fields=["status", "channel"], name="metrics_sched_status"),
            models.Index(fields=["client", "-send_at"], name="sched_client"),
            models.Index(fields=["to"], name="sched_to"),
            # Provider webhooks look messages up by the provider's id.
            models.Index(fields=["provider_message_id"], name="sched_provider_id"),
            # Crash recovery of a Resend batch: every message of the batch, by its key.
            models.Index(
                fields=["batch_idempotency_key"], name="sched_batch_key", condition=~models.Q(batch_idempotency_key="")
            ),
            # Analytics count sends per client and day.
            models.Index(fields=["client", "sent_at"], name="sched_client_sent"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.to} ({self.status})"

    @property
    def label(self) -> str:
        """What an operator calls this message: "SMS to +14155550123 (id 3f2a9c1e)"."""
        return f"{self.get_channel_display()} to {self.to} (id {str(self.pk)[:8]})"

    @property
    def provider_idempotency_key(self) -> str:
        """The Idempotency-Key of this message's sends: its UUID, plus the retry generation."""
        return str(self.pk) if not self.generation else f"{self.pk}:retry-{self.generation}"

    def can_become(self, target: str) -> bool:
        return target in TRANSITIONS.get(self.status, set())

    @property
    def can_cancel(self) -> bool:
        return self.can_become(Status.CANCELLED)

    @property
    def can_retry(self) -> bool:
        return self.status in (Status.FAILED, Status.UNDELIVERED)


def transition(
    message_ids: uuid.UUID | Iterable[uuid.UUID],
    target: str,
    *,
    expect: list[str] | None = None,
    where: dict[str, object] | None = None,
    **fields: object,
) -> int:
    """Move messages to `target` if they are in a state that allows it, atomically.

    A conditional UPDATE: the row count says how many this caller moved (another worker, a
    webhook or an operator may have moved a message meanwhile). `expect` narrows the
    allowed source states and `where` adds conditions (e.g. the claiming worker); a source
    state that could never reach `target` is refused with IllegalTransition.
    """
    allowed = sources_of(target)
    if expect is not None:
        illegal = set(expect) - set(allowed)
        if illegal:
            raise IllegalTransition(f"{sorted(illegal)} -> {target} is not a legal transition")
        allowed = expect
    if not allowed:
        raise IllegalTransition(f"nothing may move to {target}")
    ids = [message_ids] if isinstance(message_ids, uuid.UUID) else list(message_ids)
    if not ids:
        return 0
    rows = ScheduledMessage.objects.filter(pk__in=ids, status__in=allowed, **(where or {}))
    # update() skips auto_now: set updated_at so it means "last state change".
    return rows.update(status=target, updated_at=utc_now(), **fields)


class Outcome(models.TextChoices):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    # Nothing can go on this provider (bad credentials, a sender that cannot send, missing
    # settings): the message keeps its attempt and stays pending.
    ACCOUNT = "account"
    OPTED_OUT = "opted_out"
    SUPPRESSED = "suppressed"
    RECONCILED = "reconciled"


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(ScheduledMessage, on_delete=models.CASCADE, related_name="delivery_attempts")
    started_at = models.DateTimeField(default=utc_now)
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["started_at"]
        indexes = [
            models.Index(fields=["message", "started_at"], name="attempt_message_started"),
            # GET /metrics, every scrape: attempts per outcome, counted from this index alone.
            models.Index(fields=["outcome"], name="metrics_attempt_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class PendingReport(models.Model):
    """A delivery report (Twilio status callback, Resend event) whose message is not known
    yet: it overtook the worker's commit of `sent`, or the worker crashed with the send in
    `sending`. Applied when the send is recorded (in the same transaction) or by the next
    run; expired after DELIVERY_REPORT_RETENTION_HOURS if nothing ever matches it."""

    channel = models.CharField(max_length=8, choices=Channel.choices)
    provider_message_id = models.CharField(max_length=100)
    target = models.CharField(max_length=16, choices=Status.choices)  # delivered | undelivered
    event = models.CharField(max_length=40)  # "twilio:delivered", "email.bounced", ...
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True)
    occurred_at = models.DateTimeField(default=utc_now)
    received_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["received_at"]
        indexes = [
            # Recording a send looks its provider id up here, in the same transaction.
            models.Index(fields=["channel", "provider_message_id"], name="report_provider_id"),
            # process-scheduled: expire the oldest unmatched reports.
            models.Index(fields=["received_at"], name="report_received"),
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.provider_message_id}"
