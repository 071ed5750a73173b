"""The domain the jobs read (clients, leads, conversations, calls) and the delivery queue."""

import hashlib
from datetime import datetime, time
from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils.timezone import now as utc_now

from messaging.phones import validate_phone


def validate_timezone(value: str) -> None:
    if value and value not in available_timezones():
        raise ValidationError(f"{value!r} is not an IANA timezone; use e.g. America/New_York")


class NotifyBy(models.TextChoices):
    SMS = "sms"
    EMAIL = "email"


class Client(models.Model):
    """A business using the platform."""

    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    owner_phone = models.CharField(max_length=20, blank=True, validators=[validate_phone])
    owner_email = models.EmailField(blank=True)
    sms_from_number = models.CharField(
        max_length=20, blank=True, validators=[validate_phone], help_text="Sender; blank = TWILIO_FROM_NUMBER."
    )
    monthly_sms_allowance = models.PositiveIntegerField(default=1000)
    # Blank (both) = the QUIET_HOURS setting, so changing the setting moves every such client.
    quiet_hours_start = models.TimeField(
        null=True, blank=True, help_text="SMS to leads only from this local time... (blank = QUIET_HOURS)"
    )
    quiet_hours_end = models.TimeField(
        null=True, blank=True, help_text="...until this local time (blank = QUIET_HOURS)."
    )
    business_hours_start = models.TimeField(default=time(9, 0))
    business_hours_end = models.TimeField(default=time(17, 0))
    text_back_enabled = models.BooleanField(default=True)
    text_back_template = models.TextField(
        blank=True, help_text="Missed-call text; {client} is replaced. Blank = the default text."
    )
    notify_by = models.CharField(max_length=8, choices=NotifyBy.choices, default=NotifyBy.EMAIL)
    agent_stall_minutes = models.PositiveIntegerField(default=10)
    weekly_summary_enabled = models.BooleanField(default=True)
    # Set when a notification could not reach the owner (no contact, or an invalid one): jobs
    # skip the client while owner_unreachable_contact still equals contact_fingerprint(), and
    # try again as soon as the contact changes.
    owner_unreachable_reason = models.CharField(max_length=300, blank=True, editable=False)
    owner_unreachable_at = models.DateTimeField(null=True, blank=True, editable=False)
    owner_unreachable_contact = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if (start is None) != (end is None):
            raise ValidationError("Set both quiet-hours times, or neither to use the QUIET_HOURS setting.")
        if start is not None and start == end:
            raise ValidationError({"quiet_hours_end": "The quiet-hours window is empty: start and end must differ."})

    # --- owner reachability -------------------------------------------------------------
    def contact_fingerprint(self) -> str:
        """A digest of the fields an owner is reached through: any change gives a new one."""
        contact = "\0".join((self.owner_phone.strip(), self.owner_email.strip(), self.notify_by))
        return hashlib.sha256(contact.encode()).hexdigest()[:32]

    @property
    def owner_known_unreachable(self) -> bool:
        """True when the owner was found unreachable through the contact stored now."""
        return self.owner_unreachable_at is not None and self.owner_unreachable_contact == self.contact_fingerprint()

    def mark_owner_unreachable(self, reason: str, now: datetime) -> bool:
        """Record that the owner cannot be reached through the current contact; False when
        that was recorded already (by this run or another), so it is reported once."""
        fingerprint = self.contact_fingerprint()
        fields = {
            "owner_unreachable_reason": reason[:300],
            "owner_unreachable_at": now,
            "owner_unreachable_contact": fingerprint,
        }
        # Judged on the contact as this run read it: an edit saved meanwhile does not match, so
        # the new contact is tried at the next tick instead of being marked unreachable unseen.
        newly = (
            Client.objects.filter(pk=self.pk, owner_phone=self.owner_phone, owner_email=self.owner_email)
            .filter(notify_by=self.notify_by)
            .exclude(owner_unreachable_at__isnull=False, owner_unreachable_contact=fingerprint)
            .update(**fields)
        )
        for name, value in fields.items():
            setattr(self, name, value)
        return bool(newly)

    def mark_owner_reachable(self) -> None:
        """Forget a recorded unreachable owner (a notification went out through the contact)."""
        if self.owner_unreachable_at is None and not self.owner_unreachable_contact:
            return
        Client.objects.filter(pk=self.pk).update(
            owner_unreachable_reason="", owner_unreachable_at=None, owner_unreachable_contact=""
        )
        self.owner_unreachable_reason, self.owner_unreachable_at, self.owner_unreachable_contact = "", None, ""


class LeadStatus(models.TextChoices):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    WON = "won"
    LOST = "lost"


class Lead(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="leads")
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=20, blank=True, validators=[validate_phone])
    email = models.EmailField(blank=True)
    status = models.CharField(max_length=16, choices=LeadStatus.choices, default=LeadStatus.NEW)
    timezone = models.CharField(
        max_length=64, blank=True, validators=[validate_timezone], help_text="Blank = the client's timezone."
    )
    follow_up_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=utc_now)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        indexes = [
            models.Index(fields=["client", "phone"], name="lead_client_phone"),
            # follow-ups, every 30 minutes: leads whose follow-up time has passed.
            models.Index(
                fields=["follow_up_at"], name="lead_follow_up", condition=models.Q(follow_up_at__isnull=False)
            ),
            models.Index(fields=["client", "created_at"], name="lead_client_created"),
        ]

    def __str__(self) -> str:
        return self.name or self.phone or self.email or f"lead {self.pk}"

    @property
    def tz(self) -> str:
        return self.timezone or self.client.timezone


class Conversation(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="conversations")
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    phone = models.CharField(max_length=20, validators=[validate_phone])
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_message_direction = models.CharField(max_length=8, blank=True)
    # The inbound message an escalation was raised for; a later reply or inbound resets it.
    escalated_for_message_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        indexes = [
            # Every inbound SMS finds its conversation by client and phone.
            models.Index(fields=["client", "phone"], name="conversation_client_phone"),
            # agent-check, every 15 minutes: conversations waiting on a reply.
            models.Index(
                fields=["last_message_at"],
                name="conversation_awaiting",
                condition=models.Q(last_message_direction="in"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client} / {self.phone}"


class Direction(models.TextChoices):
    INBOUND = "in"
    OUTBOUND = "out"


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    body = models.TextField()
    created_at = models.DateTimeField(default=utc_now)
    # Twilio's MessageSid of an inbound SMS: a webhook Twilio retries is recorded once.
    provider_message_id = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["conversation", "created_at"], name="message_conv_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_message_id"],
                name="message_unique_provider_id",
                condition=~models.Q(provider_message_id=""),
            )
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.created_at:%Y-%m-%d %H:%M}"


class CallStatus(models.TextChoices):
    COMPLETED = "completed"
    MISSED = "missed"
    BUSY = "busy"
    VOICEMAIL = "voicemail"


class Call(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="calls")
    caller = models.CharField(max_length=20, validators=[validate_phone])
    status = models.CharField(max_length=16, choices=CallStatus.choices)
    handled = models.BooleanField(default=False)
    handled_at = models.DateTimeField(null=True, blank=True)
    texted_back = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=utc_now)

    class Meta:
        indexes = [
            # check-missed-calls, every 5 minutes: missed calls not yet handled.
            models.Index(
                fields=["started_at"],
                name="call_missed_unhandled",
                condition=models.Q(status="missed", handled=False),
            ),
            models.Index(fields=["client", "started_at"], name="call_client_started"),
        ]

    def __str__(self) -> str:
        return f"{self.status} call from {self.caller}"


class OptOut(models.Model):
    """A number that must never get an SMS from this client (or from the platform, client null)."""

    phone = models.CharField(max_length=20, validators=[validate_phone])
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.CASCADE, related_name="opt_outs")
    source = models.CharField(max_length=32, help_text="twilio_21610, inbound_stop, manual")
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["phone", "client"], name="optout_phone_client", condition=models.Q(client__isnull=False)
            ),
            models.UniqueConstraint(
                fields=["phone"], name="optout_phone_global", condition=models.Q(client__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.phone} ({self.client or 'all clients'})"


class SuppressionReason(models.TextChoices):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MANUAL = "manual"


class EmailSuppression(models.Model):
    """An address that must not get email: it bounced or its owner marked us as spam. A later
    email to it fails as suppressed without a provider call; an operator may delete the row."""

    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    detail = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


def validate_recipient(channel: str, to: str) -> None:
    if channel == "sms":
        validate_phone(to)
    else:
        validate_email(to)
