"""What the analytics jobs keep: one row of numbers per client and local day, and the usage
alerts already sent (so each threshold alerts once per month)."""

from django.db import models
from django.utils.timezone import now as utc_now

from messaging.models import Client, ScheduledMessage

# The counters of a DailyStats row, in the order the admin and the weekly summary show them.
COUNTER_FIELDS = (
    "leads_created",
    "inbound_messages",
    "outbound_messages",
    "sms_sent",
    "sms_failed",
    "emails_sent",
    "emails_failed",
    "missed_calls",
    "calls_texted_back",
    "escalations",
)


class DailyStats(models.Model):
    """A client's numbers for one day of its own calendar (`date` is local to client.timezone)."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="daily_stats")
    date = models.DateField(help_text="The day in the client's timezone.")
    leads_created = models.PositiveIntegerField(default=0)
    inbound_messages = models.PositiveIntegerField(default=0)
    outbound_messages = models.PositiveIntegerField(default=0)
    sms_sent = models.PositiveIntegerField(default=0)
    sms_failed = models.PositiveIntegerField(default=0)
    emails_sent = models.PositiveIntegerField(default=0)
    emails_failed = models.PositiveIntegerField(default=0)
    missed_calls = models.PositiveIntegerField(default=0)
    calls_texted_back = models.PositiveIntegerField(default=0)
    escalations = models.PositiveIntegerField(default=0)
    median_first_response_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Median wait from a lead's message to the first reply; empty when none."
    )
    computed_at = models.DateTimeField(default=utc_now)

    class Meta:
        verbose_name_plural = "daily stats"
        ordering = ["-date", "client"]
        constraints = [
            # The upsert's conflict target; also serves "which days exist" (client, date range)
            # for the back-fill and the weekly summary.
            models.UniqueConstraint(fields=["client", "date"], name="dailystats_client_date"),
        ]
        # daily, hourly: which rows of the back-fill window exist, across all clients (date range).
        indexes = [models.Index(fields=["date"], name="dailystats_date")]

    def __str__(self) -> str:
        return f"{self.client} {self.date:%Y-%m-%d}"


class UsageAlert(models.Model):
    """One SMS-allowance threshold reached by a client in one month of its calendar."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="usage_alerts")
    month = models.DateField(help_text="First day of the month, in the client's timezone.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly SMS allowance.")
    sms_count = models.PositiveIntegerField(help_text="SMS sent month-to-date when the threshold was seen.")
    allowance = models.PositiveIntegerField()
    message = models.ForeignKey(
        ScheduledMessage,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The email to the owner; empty when a higher threshold's email covered it.",
    )
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["-month", "client", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["client", "month", "threshold"], name="usagealert_once_per_month"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.month:%Y-%m} {self.threshold}%"
