"""Follow-ups: remind the owner of follow-ups that came due, and of qualified leads gone quiet.

Each reminder has a key made of the lead and the moment it is about (the follow-up time, or
the start of the idle stretch), so a lead is reminded once per follow-up date and once per idle
stretch, however often or late the job runs. A run after an outage catches up on everything
that came due within LOOKBACK; older items are taken as dealt with.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from messaging.automations.notify import notify_owner
from messaging.models import Lead, LeadStatus, ScheduledMessage

IDLE_AFTER = timedelta(days=7)
LOOKBACK = timedelta(days=30)
CLOSED = (LeadStatus.WON, LeadStatus.LOST)
KEY_CHUNK = 1000

FOLLOW_UP = "follow-up"
RE_ENGAGE = "re-engage"


def follow_up_key(lead_id: int, follow_up_at: datetime) -> str:
    return f"follow-up:{lead_id}:{follow_up_at.astimezone(UTC).isoformat()}"


def re_engage_key(lead_id: int, last_activity_at: datetime) -> str:
    return f"re-engage:{lead_id}:{last_activity_at.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class Reminder:
    kind: str
    lead: Lead
    key: str

    def __str__(self) -> str:
        return f"{self.kind} lead {self.lead.pk}"


def due_follow_ups(now: datetime) -> list[Lead]:
    """Open leads whose follow-up time passed within LOOKBACK (index lead_follow_up)."""
    return list(
        Lead.objects.filter(follow_up_at__lte=now, follow_up_at__gt=now - LOOKBACK)
        .exclude(status__in=CLOSED)
        .select_related("client")
        .order_by("follow_up_at", "pk")
    )


def idle_qualified_leads(now: datetime) -> list[Lead]:
    """Qualified leads whose idle stretch reached IDLE_AFTER within LOOKBACK."""
    idle_since = now - IDLE_AFTER
    return list(
        Lead.objects.filter(
            status=LeadStatus.QUALIFIED, last_activity_at__lte=idle_since, last_activity_at__gt=idle_since - LOOKBACK
        )
        .select_related("client")
        .order_by("last_activity_at", "pk")
    )


def _already_queued(keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        queued = ScheduledMessage.objects.filter(idempotency_key__in=chunk)
        found.update(queued.values_list("idempotency_key", flat=True))
    return found


def pending_reminders(now: datetime) -> list[Reminder]:
    """Every reminder due and not yet queued: two lead queries and one key query per KEY_CHUNK."""
    reminders = [Reminder(FOLLOW_UP, lead, follow_up_key(lead.pk, lead.follow_up_at)) for lead in due_follow_ups(now)]
    reminders += [
        Reminder(RE_ENGAGE, lead, re_engage_key(lead.pk, lead.last_activity_at)) for lead in idle_qualified_leads(now)
    ]
    queued = _already_queued([reminder.key for reminder in reminders])
    return [reminder for reminder in reminders if reminder.key not in queued]


def _who(lead: Lead) -> str:
    contact = lead.phone or lead.email
    if lead.name and contact:
        return f"{lead.name} ({contact})"
    return lead.name or contact or f"lead {lead.pk}"


def _text(reminder: Reminder, now: datetime) -> tuple[str, str]:
    lead, client = reminder.lead, reminder.lead.client
    zone = ZoneInfo(client.timezone)
    if reminder.kind == FOLLOW_UP:
        due = lead.follow_up_at.astimezone(zone)
        return (
            f"Follow-up due: {_who(lead)}",
            f"{client.name}: follow up with {_who(lead)}, due {due:%a %d %b %H:%M} (your time).",
        )
    idle_days = (now - lead.last_activity_at).days
    since = lead.last_activity_at.astimezone(zone)
    return (
        f"Qualified lead gone quiet: {_who(lead)}",
        f"{client.name}: {_who(lead)} is qualified but has had no activity for {idle_days} days "
        f"(since {since:%a %d %b}). Time to re-engage?",
    )


def send_reminder(reminder: Reminder, now: datetime) -> bool:
    """Queue one reminder to the lead's client owner; False if its key was queued already."""
    subject, body = _text(reminder, now)
    _, created = notify_owner(
        reminder.lead.client,
        subject=subject,
        body=body,
        idempotency_key=reminder.key,
        source=reminder.kind,
        now=now,
    )
    return created
