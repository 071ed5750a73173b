"""Recurring work a client sets up ("every Monday 09:00 our time, launch this campaign"), and
each occurrence it had: fired once, failed, or missed."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.timezone import now as utc_now

from messaging.models import Client


class Kind(models.TextChoices):
    CAMPAIGN = "campaign"
    WEEKLY_SUMMARY = "weekly-summary"


class Frequency(models.TextChoices):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    CRON = "cron"


class ClientSchedule(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    frequency = models.CharField(max_length=16, choices=Frequency.choices)
    time = models.TimeField(null=True, blank=True, help_text="Local time of day (daily, weekly, monthly).")
    weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(6)], help_text="Weekly: 0 Monday ... 6 Sunday."
    )
    day = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Monthly: day of the month (a month without it has no occurrence).",
    )
    cron = models.CharField(max_length=100, blank=True, help_text="Derived from the frequency, or given for 'cron'.")
    timezone = models.CharField(max_length=64, blank=True, help_text="IANA zone; blank: the client's.")
    enabled = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True)
    catch_up_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1)],  # the tick runs some seconds after each minute
        help_text="An occurrence found later than this after its time is recorded missed, not fired.",
    )
    # Occurrences after this count (set when created, re-enabled or re-timed): earlier ones
    # were never meant to run, so they are not recorded as missed.
    counts_from = models.DateTimeField(default=utc_now)
    last_occurrence_at = models.DateTimeField(null=True, blank=True)
    next_occurrence_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=utc_now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["client_id", "name"]
        indexes = [models.Index(fields=["next_occurrence_at"], name="schedule_due", condition=models.Q(enabled=True))]

    def __str__(self) -> str:
        return f"{self.client}: {self.name}"

    @property
    def tz(self) -> str:
        return self.timezone or self.client.timezone or "UTC"

    def clean(self) -> None:
        from schedules.services import derive_cron

        try:
            self.cron = derive_cron(self)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class ExecutionStatus(models.TextChoices):
    FIRING = "firing"  # claimed; the work is being queued
    FIRED = "fired"
    FAILED = "failed"
    MISSED = "missed"  # found past its catch-up window: not fired late


class ScheduleExecution(models.Model):
    schedule = models.ForeignKey(ClientSchedule, on_delete=models.CASCADE, related_name="executions")
    occurrence_at = models.DateTimeField(help_text="The occurrence (UTC); 'trigger now' uses the time asked.")
    manual = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.FIRING)
    key = models.CharField(max_length=255, help_text="schedule:<id>:<occurrence UTC>: what the work is keyed on.")
    detail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=utc_now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurrence_at", "-id"]
        indexes = [
            # refire_stale(), every minute: the few executions left firing by a dead process.
            models.Index(fields=["created_at"], name="execution_firing", condition=models.Q(status="firing")),
        ]
        constraints = [
            # Each occurrence runs once, whichever tick (or host) gets there first.
            models.UniqueConstraint(fields=["schedule", "occurrence_at"], name="execution_once_per_occurrence"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.status}"
