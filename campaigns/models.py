"""Campaigns: one body sent to a list of recipients, a few at a time, inside a send window.

A campaign's and a recipient's state change only through `move_campaign()` /
`move_recipients()`: conditional UPDATEs that refuse a move the tables below do not allow and
whose row count says who won (a tick on another host, an operator, a webhook's sync).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from django.core.validators import MinValueValidator
from django.db import connection, models
from django.utils.timezone import now as utc_now

from messaging.models import Channel, Client, Lead, ScheduledMessage


class CampaignStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# The tick works on these.
ACTIVE = (CampaignStatus.QUEUED, CampaignStatus.RUNNING)

CAMPAIGN_TRANSITIONS: dict[str, set[str]] = {
    CampaignStatus.QUEUED: {
        CampaignStatus.RUNNING,
        CampaignStatus.PAUSED,
        CampaignStatus.COMPLETED,
        CampaignStatus.CANCELLED,
    },
    CampaignStatus.RUNNING: {CampaignStatus.PAUSED, CampaignStatus.COMPLETED, CampaignStatus.CANCELLED},
    CampaignStatus.PAUSED: {CampaignStatus.QUEUED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED},
    # Recipients added to a completed campaign reopen it.
    CampaignStatus.COMPLETED: {CampaignStatus.RUNNING},
    CampaignStatus.CANCELLED: set(),
}


class RecipientState(models.TextChoices):
    PENDING = "pending"
    LAUNCHED = "launched"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


RECIPIENT_TRANSITIONS: dict[str, set[str]] = {
    # skipped: opted out, suppressed, campaign cancelled; failed: the template or the address.
    RecipientState.PENDING: {RecipientState.LAUNCHED, RecipientState.SKIPPED, RecipientState.FAILED},
    # Following the message: sent/delivered, failed/undelivered, cancelled.
    RecipientState.LAUNCHED: {RecipientState.DONE, RecipientState.FAILED, RecipientState.SKIPPED},
    RecipientState.DONE: set(),
    RecipientState.SKIPPED: set(),
    RecipientState.FAILED: set(),
}


class IllegalTransition(ValueError):
    pass


def allowed_sources(table: dict[str, set[str]], target: str, expect: Iterable[str] | None) -> list[str]:
    """The states that may move to `target` (narrowed to `expect`); IllegalTransition otherwise."""
    allowed = [source for source, targets in table.items() if target in targets]
    if expect is not None:
        expect = list(expect)
        illegal = set(expect) - set(allowed)
        if illegal:
            raise IllegalTransition(f"{sorted(illegal)} -> {target} is not a legal transition")
        allowed = expect
    if not allowed:
        raise IllegalTransition(f"nothing may move to {target}")
    return allowed


class Campaign(models.Model):
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    body = models.TextField(help_text="A Django template; the recipient's fields: {{ first_name }}, {{ name }}, ...")
    subject = models.CharField(max_length=300, blank=True, help_text="Email only; a template too.")
    max_in_flight = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    window_start = models.TimeField(null=True, blank=True, help_text="Send window, the client's local time.")
    window_end = models.TimeField(null=True, blank=True)
    start_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.QUEUED)
    # What stopped the campaign from launching at its last visit (a template that does not
    # compile); "" when nothing did.
    last_error = models.TextField(blank=True)
    # When a tick last visited it: the tick visits the longest-unvisited first, so the
    # campaigns a deadline left out go first next time.
    last_ticked_at = models.DateTimeField(null=True, blank=True)
    # The client schedule occurrence that launched it (schedule:<id>:<occurrence UTC>), if one did.
    source_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=utc_now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # process-campaigns, every minute: the active campaigns, least recently visited first.
            models.Index(
                fields=["last_ticked_at", "id"],
                name="campaign_tick_order",
                condition=models.Q(status__in=["queued", "running"]),
            ),
            models.Index(fields=["status", "-created_at"], name="campaign_status_created"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_window(self) -> bool:
        return self.window_start is not None and self.window_end is not None

    @property
    def window_text(self) -> str:
        if not self.has_window:
            return "any time"
        return f"{self.window_start:%H:%M}-{self.window_end:%H:%M} {self.client.timezone}"

    def can_become(self, target: str) -> bool:
        return target in CAMPAIGN_TRANSITIONS.get(self.status, set())


def move_campaign(
    campaign_ids: int | Iterable[int], target: str, *, expect: Iterable[str] | None = None, **fields
) -> int:
    """Move campaigns to `target` where their state allows it; the number moved."""
    allowed = allowed_sources(CAMPAIGN_TRANSITIONS, target, expect)
    ids = [campaign_ids] if isinstance(campaign_ids, int) else list(campaign_ids)
    if not ids:
        return 0
    return Campaign.objects.filter(pk__in=ids, status__in=allowed).update(status=target, updated_at=utc_now(), **fields)


class CampaignRecipient(models.Model):
    # No index of its own: the (campaign, to) unique index serves lookups by campaign, and a
    # launch updates every index of the row (10,000 rows a tick at scale).
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False)
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The address the campaign's channel sends to (E.164 or a lower-cased email), and the fields
    # a template may use, copied when the recipient is added: a template sees only these.
    to = models.CharField(max_length=254)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    fields = models.JSONField(default=dict, blank=True, help_text="More template fields (from contacts or CSV).")
    state = models.CharField(max_length=16, choices=RecipientState.choices, default=RecipientState.PENDING)
    message = models.ForeignKey(ScheduledMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField(blank=True, help_text="Why it was skipped or failed.")
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=utc_now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "lead"], name="recipient_campaign_lead", condition=models.Q(lead__isnull=False)
            ),
            models.UniqueConstraint(fields=["campaign", "to"], name="recipient_campaign_to"),
        ]
        indexes = [
            # process-campaigns: the next pending recipients of each campaign, in id order.
            models.Index(fields=["campaign", "id"], name="recipient_pending", condition=models.Q(state="pending")),
            # process-campaigns: in flight per campaign, and syncing launched recipients.
            models.Index(
                fields=["campaign", "message"], name="recipient_launched", condition=models.Q(state="launched")
            ),
            # process-campaigns: launched in the last 60 s (per_minute); pages: counts per state.
            models.Index(fields=["campaign", "launched_at"], name="recipient_launched_at"),
            models.Index(fields=["campaign", "state"], name="recipient_campaign_state"),
        ]

    def __str__(self) -> str:
        return self.to

    def template_context(self) -> dict[str, object]:
        return template_context(self.to, self.first_name, self.last_name, self.fields)


def template_context(to: str, first_name: str, last_name: str, fields: dict) -> dict[str, object]:
    """What a campaign's template sees: the recipient's own fields, nothing else."""
    name = " ".join(part for part in (first_name, last_name) if part)
    return {
        **(fields or {}),
        "first_name": first_name,
        "last_name": last_name,
        "name": name,
        "email" if "@" in to else "phone": to,
    }


class PendingRecipient(NamedTuple):
    """A recipient the tick is about to launch: the columns it needs, without a model instance
    (the tick reads 10,000 of them at a time)."""

    pk: int
    campaign_id: int
    lead_id: int | None
    to: str
    first_name: str
    last_name: str
    fields: dict

    def template_context(self) -> dict[str, object]:
        return template_context(self.to, self.first_name, self.last_name, self.fields)


def move_recipients(
    target: str,
    *,
    ids: Iterable[int] | None = None,
    where: models.Q | None = None,
    expect: Iterable[str] | None = None,
    now: datetime | None = None,
    **fields: object,
) -> int:
    """Move the recipients named by `ids` and/or `where` to `target` where their state allows
    it; the number moved."""
    allowed = allowed_sources(RECIPIENT_TRANSITIONS, target, expect)
    rows = CampaignRecipient.objects.filter(state__in=allowed)
    if ids is not None:
        ids = list(ids)
        if not ids:
            return 0
        rows = rows.filter(pk__in=ids)
    if where is not None:
        rows = rows.filter(where)
    if target in (RecipientState.DONE, RecipientState.SKIPPED, RecipientState.FAILED):
        fields.setdefault("finished_at", now or utc_now())
    return rows.update(state=target, **fields)


def launch_recipients(launched: dict[int, object], now: datetime) -> int:
    """pending -> launched for each recipient id in `launched`, with the id of the message it
    launched: one UPDATE for the lot (a CASE per row would grow with the batch)."""
    allowed_sources(RECIPIENT_TRANSITIONS, RecipientState.LAUNCHED, [RecipientState.PENDING])
    if not launched:
        return 0
    if connection.vendor != "postgresql":  # SQLite (the demo): one UPDATE each
        return sum(
            CampaignRecipient.objects.filter(pk=pk, state=RecipientState.PENDING).update(
                state=RecipientState.LAUNCHED, message_id=message_id, launched_at=now
            )
            for pk, message_id in launched.items()
        )
    table = CampaignRecipient._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} AS r SET state = %s, message_id = v.message_id, launched_at = %s
                FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, message_id)
                WHERE r.id = v.id AND r.state = %s""",
            [RecipientState.LAUNCHED, now, list(launched), [str(m) for m in launched.values()], RecipientState.PENDING],
        )
        return cursor.rowcount
