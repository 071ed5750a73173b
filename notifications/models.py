"""What each staff user wants to hear about, and what they were told (in the app)."""

from django.conf import settings
from django.db import models
from django.utils.timezone import now as utc_now


class Event(models.TextChoices):
    FAILURE = "failure", "job failing"
    PARTIAL = "partial", "job failing partly (partial runs in a row)"
    MISSED = "missed", "job overdue (missed its schedule)"
    RECOVERED = "recovered", "job recovered"
    OVERLOADED = "overloaded", "job not starting: machine overloaded"
    SUCCESS = "success", "job run succeeded"
    CAMPAIGN_COMPLETED = "campaign_completed", "campaign completed"
    SCHEDULE_FAILED = "schedule_failed", "client schedule occurrence failed"
    SCHEDULE_MISSED = "schedule_missed", "client schedule occurrence missed (found too late to fire)"


# In the app, everyone hears of every incident; a run that merely succeeded is off by default.
DEFAULT_IN_APP = [event for event in Event.values if event != Event.SUCCESS]
# By email, only what a user chose (the team-wide address list is CRON_ALERT_EMAILS).
DEFAULT_EMAIL: list[str] = []


class Preference(models.Model):
    """One row per staff user, created with the defaults the first time it is needed."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs")
    in_app = models.JSONField(default=list, blank=True, help_text="Events shown in the app.")
    email = models.JSONField(default=list, blank=True, help_text="Events emailed to the user's address.")
    jobs = models.JSONField(default=list, blank=True, help_text="Job names to hear about; empty: every job.")

    def __str__(self) -> str:
        return f"notification preferences of {self.user}"

    def wants(self, event: str, job: str, channel: str) -> bool:
        if job and self.jobs and job not in self.jobs:
            return False
        return event in (self.in_app if channel == "in_app" else self.email)


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=32, choices=Event.choices)
    job = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=utc_now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The header's unread count, on every page.
            models.Index(fields=["user"], name="notification_unread", condition=models.Q(read_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.subject
