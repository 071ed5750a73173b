from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.timezone import now as utc_now

from scheduling import registry, schedule


class Trigger(models.TextChoices):
    CRON = "cron"
    HTTP = "http"
    MANUAL = "manual"
    ADMIN = "admin"


class RunStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"


class Health(models.TextChoices):
    OK = "ok"
    # The last run was partial: shown, but not an incident (no alert, status stays 200/exit 0).
    DEGRADED = "degraded"
    DISABLED = "disabled"
    FAILING = "failing"
    OVERDUE = "overdue"
    # CRON_OVERLOAD_ALERT_AFTER starts in a row were refused because the machine was overloaded.
    OVERLOADED = "overloaded"


class Job(models.Model):
    """One row per registered job: what an operator may change, and the last outcome."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    schedule = models.CharField(max_length=100, blank=True, help_text="Cron expression; blank uses the job's default.")
    timezone = models.CharField(max_length=64, blank=True, help_text="IANA zone; blank = default.")
    grace_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How late a run may be before it counts as overdue."
    )
    jitter_seconds = models.PositiveIntegerField(
        default=0, help_text="The tick delays each start by a random 0..N seconds, to spread the :00 load."
    )
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, choices=RunStatus.choices, blank=True)
    # Start of the last run that did its work (succeeded or partial): what "overdue" measures.
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Partial runs in a row; CRON_PARTIAL_FAILING_AFTER of them make the job failing.
    consecutive_partials = models.PositiveIntegerField(default=0)
    # Starts refused in a row by the overload guard; a run that starts resets it.
    consecutive_overloads = models.PositiveIntegerField(default=0)
    # The incident operators were last told about; alerts fire on a change of this field only.
    alert_state = models.CharField(max_length=16, choices=Health.choices, default=Health.OK)
    alert_changed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["name"]
        # Running a job sends messages: apart from view (the dashboard) and change (enable,
        # schedule), "Run now" on /cron/ and in admin needs this permission of its own.
        permissions = [("run_job", "Can run a job now")]

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> "registry.JobSpec | None":
        return registry.get(self.name)

    @property
    def cron(self) -> str:
        return self.schedule or (self.spec.schedule if self.spec else "")

    @property
    def tz(self) -> str:
        return self.timezone or (self.spec.timezone if self.spec else "UTC")

    @property
    def grace(self) -> timedelta:
        if self.grace_seconds is not None:
            return timedelta(seconds=self.grace_seconds)
        return self.spec.grace if self.spec else timedelta(minutes=5)

    def clean(self) -> None:
        if self.schedule or self.timezone:
            try:
                schedule.validate(self.cron, self.tz)
            except schedule.ScheduleError as exc:
                raise ValidationError(str(exc)) from exc
        if self.jitter_seconds and self.cron:
            # A start delayed past the next slot would hold the flock over it: that slot is lost.
            gap = schedule.shortest_gap(self.cron, self.tz, utc_now())
            if self.jitter_seconds >= gap.total_seconds():
                raise ValidationError(
                    {"jitter_seconds": f"must be shorter than the {int(gap.total_seconds())} s between two runs"}
                )

    def next_run_at(self, now: datetime) -> datetime | None:
        return schedule.next_run(self.cron, self.tz, now) if self.cron else None

    def grace_starts_at(self) -> datetime | None:
        """When the run expected after the last good one was due (healthchecks' grace start).

        Measured from the last run that did its work, or from the job's creation, so a job
        that just appeared is not overdue for runs it could never have had.
        """
        if not self.cron:
            return None
        return schedule.next_run(self.cron, self.tz, self.last_success_at or self.created_at)

    def is_overdue(self, now: datetime) -> bool:
        start = self.grace_starts_at()
        return self.enabled and start is not None and now > start + self.grace

    def health(self, now: datetime) -> str:
        """The one answer to "is this job healthy?" that every view, command and alert asks."""
        if not self.enabled:
            return Health.DISABLED
        if self.is_failing():
            return Health.FAILING
        if self.is_overloaded():
            return Health.OVERLOADED
        if self.is_overdue(now):
            return Health.OVERDUE
        if self.last_status == RunStatus.PARTIAL:
            return Health.DEGRADED
        return Health.OK

    def is_overloaded(self) -> bool:
        """The overload guard refused CRON_OVERLOAD_ALERT_AFTER starts in a row."""
        return self.consecutive_overloads >= settings.CRON_OVERLOAD_ALERT_AFTER > 0

    def is_failing(self) -> bool:
        """The last run failed, or CRON_PARTIAL_FAILING_AFTER runs in a row were partial."""
        return self.last_status == RunStatus.FAILED or (
            self.last_status == RunStatus.PARTIAL and self.consecutive_partials >= settings.CRON_PARTIAL_FAILING_AFTER
        )


class JobRun(models.Model):
    """One execution (or skipped attempt) of a job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    planned_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=utc_now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    skip_reason = models.CharField(max_length=200, blank=True)
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # History of one job, newest first (dashboard, admin filter, 7-day success rate).
            models.Index(fields=["job", "-started_at"], name="jobrun_job_started"),
            # Watchdog, every 5 minutes: runs still marked running.
            models.Index(
                fields=["started_at"],
                name="jobrun_running",
                condition=models.Q(status="running"),
            ),
            # Prune: runs older than the retention, oldest first.
            models.Index(fields=["started_at"], name="jobrun_started"),
            # GET /metrics, every scrape: runs and duration buckets per job and status, read
            # from this index alone (an index-only scan, a third of the table's size).
            models.Index(fields=["job", "status", "duration_ms"], name="metrics_jobrun_totals"),
        ]
        constraints = [
            # An HTTP Idempotency-Key runs the job once; a repeat replays this row.
            models.UniqueConstraint(
                fields=["job", "idempotency_key"],
                name="jobrun_unique_idempotency_key",
                condition=~models.Q(idempotency_key=""),
            ),
            # A scheduled slot runs once, whichever tick, host or HTTP scheduler starts it;
            # skipped attempts and abandoned runs (their process died) do not take the slot.
            models.UniqueConstraint(
                fields=["job", "planned_at"],
                name="jobrun_unique_slot",
                condition=models.Q(planned_at__isnull=False) & ~models.Q(status__in=["skipped", "abandoned"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job.name} #{self.pk} {self.status}"

    def finish(
        self,
        status: str,
        *,
        now: datetime | None = None,
        error: str = "",
        traceback: str = "",
        skip_reason: str = "",
    ) -> None:
        self.finished_at = now or utc_now()
        self.duration_ms = max(0, int((self.finished_at - self.started_at).total_seconds() * 1000))
        self.status = status
        self.error = error[:10000]
        self.traceback = traceback[:50000]
        self.skip_reason = skip_reason
        self.save()


class RunTotal(models.Model):
    """What prune deleted, per job and status: the runs' count, total duration and duration
    buckets (scheduling.run_totals). Adding these to the live rows gives totals that never go
    down, so the /metrics counters and histogram stay monotonic across a prune."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="run_totals")
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    runs = models.PositiveBigIntegerField(default=0)
    duration_sum_ms = models.PositiveBigIntegerField(default=0)
    # {"<bound in seconds>": runs that took at most that long}, for run_totals.DURATION_BUCKETS.
    duration_buckets = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "status"], name="runtotal_unique_job_status")]

    def __str__(self) -> str:
        return f"{self.job.name} {self.status}: {self.runs} pruned"
