"""Demo data for `make demo`: a superuser and a view-only staff user, and three clients with two weeks of history.

Deterministic: one random.Random(seed) and a base time (now, floored to the hour) drive every
value, so the same seed gives the same rows relative to the hour it runs in. Seeding again
finds the demo clients and creates nothing.
"""

import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from messaging.automations.agent_check import stall_key
from messaging.automations.notify import owner_contact
from messaging.models import (
    Call,
    CallStatus,
    Client,
    Conversation,
    DeliveryAttempt,
    Lead,
    LeadStatus,
    Message,
    Outcome,
    ScheduledMessage,
    Status,
)

DEMO_CLIENTS = (
    {
        "name": "Brightside Dental",
        "timezone": "America/New_York",
        "owner_phone": "+12125550101",
        "owner_email": "owner@brightside-dental.example",
        "sms_from_number": "+12125550100",
        "notify_by": "email",
        "business_hours_start": time(8, 0),
        "business_hours_end": time(18, 0),
    },
    {
        "name": "Kiez Bikes",
        "timezone": "Europe/Berlin",
        "owner_phone": "+4930555012345",
        "owner_email": "inhaber@kiezbikes.example",
        "notify_by": "email",
        "text_back_template": "Hallo! {client} here - sorry we missed you. Reply with what you need. STOP to opt out.",
        "agent_stall_minutes": 20,
    },
    {
        "name": "Harbour Plumbing",
        "timezone": "Australia/Sydney",
        "owner_phone": "+61255501234",
        "owner_email": "owner@harbourplumbing.example",
        "notify_by": "sms",
        "agent_stall_minutes": 15,
        "monthly_sms_allowance": 150,
    },
)
DEMO_NAMES = [spec["name"] for spec in DEMO_CLIENTS]
HISTORY_DAYS = 14
LEADS_PER_CLIENT = 18

FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Finn", "Grace", "Hugo", "Ines", "Jonas", "Kai", "Lena")
LAST_INITIALS = "ABCDEFGHJKLMNPRSTW"
# 555-01XX numbers are reserved for fiction and still valid to `phonenumbers`.
AREA_CODES = ("212", "646", "718", "415", "310", "617", "305", "512")
INBOUND = ("Hi, do you have time this week?", "How much would that cost?", "Can I move my appointment?", "Thanks!")
OUTBOUND = ("Happy to help - what day suits you?", "It's usually around $120.", "Done, see you then.", "Anytime!")
TIMEOUT = "Twilio did not answer within 10 s"
RETRIES_EXHAUSTED = (
    (Outcome.TRANSIENT, 503, "503", "Service unavailable"),
    (Outcome.TRANSIENT, None, "timeout", TIMEOUT),
    (Outcome.TRANSIENT, None, "timeout", TIMEOUT),
)
REJECTED = (
    (Outcome.TRANSIENT, 500, "500", "Internal server error"),
    (Outcome.PERMANENT, 400, "21211", "The 'To' number is not a valid phone number"),
)
REMINDERS = ("Reminder: your appointment is tomorrow at 10:00.", "Your quote is ready - reply YES to book.")


VIEWER = "viewer"
# What the view-only demo user may see: every model of these apps, read-only.
VIEWER_APPS = ("messaging", "scheduling", "analytics")


def ensure_demo_staff(username: str = "demo") -> str:
    """Create or reset the demo superuser and the view-only staff user `viewer` (same
    password, so one printed line logs in as either); returns the new password."""
    password = secrets.token_urlsafe(12)
    users = get_user_model().objects
    user, _ = users.get_or_create(username=username, defaults={"email": "demo@example.com"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    viewer, _ = users.get_or_create(username=VIEWER, defaults={"email": "viewer@example.com"})
    viewer.is_staff, viewer.is_superuser = True, False
    viewer.set_password(password)
    viewer.save()
    viewer.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=VIEWER_APPS, codename__startswith="view_")
    )
    return password


@dataclass(frozen=True)
class DemoSummary:
    created: bool
    counts: dict[str, int]

    def line(self) -> str:
        what = ", ".join(f"{count} {name}" for name, count in self.counts.items())
        return ("Demo data created: " if self.created else "Demo data already present: ") + what


def demo_counts() -> dict[str, int]:
    """Rows that belong to the demo clients, by kind."""
    from campaigns.models import Campaign

    clients = Client.objects.filter(name__in=DEMO_NAMES)
    scheduled = ScheduledMessage.objects.filter(client__in=clients)
    return {
        "clients": clients.count(),
        "leads": Lead.objects.filter(client__in=clients).count(),
        "conversations": Conversation.objects.filter(client__in=clients).count(),
        "messages": Message.objects.filter(conversation__client__in=clients).count(),
        "calls": Call.objects.filter(client__in=clients).count(),
        "scheduled messages": scheduled.count(),
        "delivery attempts": DeliveryAttempt.objects.filter(message__in=scheduled).count(),
        "campaigns": Campaign.objects.filter(client__in=clients).count(),
    }


def seed_demo_data(seed: int = 42, now: datetime | None = None) -> DemoSummary:
    """Create the demo clients and their history, unless they exist already."""
    if Client.objects.filter(name__in=DEMO_NAMES).exists():
        return DemoSummary(created=False, counts=demo_counts())
    base = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    with transaction.atomic():
        rng = random.Random(seed)
        _Seeder(rng, base).run()
        # Imported here: campaigns builds on messaging, not the other way round; only the demo
        # reaches across, to show every page with data.
        from campaigns.demo import seed_demo_campaigns

        clients = list(Client.objects.filter(name__in=DEMO_NAMES).order_by("pk"))
        seed_demo_campaigns(clients, base, lambda: uuid.UUID(int=rng.getrandbits(128), version=4))
    return DemoSummary(created=True, counts=demo_counts())


class _Seeder:
    def __init__(self, rng: random.Random, base: datetime) -> None:
        self.rng, self.base = rng, base
        pool = [f"+1{area}55501{n:02d}" for area in AREA_CODES for n in range(100)]
        rng.shuffle(pool)
        self.phones = iter(pool)
        self.queue: list[ScheduledMessage] = []
        self.attempts: list[DeliveryAttempt] = []
        self.serial = 0

    def run(self) -> None:
        for spec in DEMO_CLIENTS:
            client = Client.objects.create(created_at=self.base - timedelta(days=60), **spec)
            leads = self.leads(client)
            self.conversations(client, leads)
            self.calls(client)
            self.history(client, leads)
            self.queue_in_every_state(client, leads)
        ScheduledMessage.objects.bulk_create(self.queue)
        DeliveryAttempt.objects.bulk_create(self.attempts)

    # --- helpers -------------------------------------------------------------------------
    def ago(self, max_days: float, min_days: float = 0.0) -> datetime:
        """A random moment between max_days and min_days before the base time, to the second."""
        seconds = self.rng.uniform(min_days * 86400, max_days * 86400)
        return self.base - timedelta(seconds=int(seconds))

    def hex_id(self, prefix: str) -> str:
        return prefix + f"{self.rng.getrandbits(128):032x}"

    def message(self, client: Client, lead: Lead | None, status: str, send_at: datetime, **fields) -> ScheduledMessage:
        """A queued message; the channel follows the fields (an email has a subject)."""
        self.serial += 1
        channel = "email" if fields.get("subject") else "sms"
        to = fields.pop("to", None) or (lead.email if channel == "email" else lead.phone)
        message = ScheduledMessage(
            id=uuid.UUID(int=self.rng.getrandbits(128), version=4),
            channel=channel,
            to=to,
            body=fields.pop("body", None) or self.rng.choice(REMINDERS),
            client=client,
            lead=lead,
            send_at=send_at,
            next_attempt_at=fields.pop("next_attempt_at", send_at),
            status=status,
            idempotency_key=fields.pop("idempotency_key", f"demo:{self.serial}"),
            source=fields.pop("source", "demo"),
            created_at=min(send_at, self.base) - timedelta(minutes=5),
            **fields,
        )
        self.queue.append(message)
        return message

    def attempt(self, message: ScheduledMessage, at: datetime, outcome: str, **fields) -> None:
        self.attempts.append(
            DeliveryAttempt(
                message=message, started_at=at, outcome=outcome, duration_ms=self.rng.randint(80, 900), **fields
            )
        )

    def sent(self, message: ScheduledMessage, at: datetime) -> None:
        """Mark a message as handed to the provider at `at`, with the attempt that did it."""
        provider_id = self.hex_id("SM" if message.channel == "sms" else "re_")
        message.attempts, message.sent_at, message.provider_message_id = 1, at, provider_id
        self.attempt(message, at, Outcome.SENT, http_status=201, provider_message_id=provider_id)

    # --- clients' data -------------------------------------------------------------------
    def leads(self, client: Client) -> list[Lead]:
        statuses = [LeadStatus.NEW, LeadStatus.CONTACTED, LeadStatus.QUALIFIED, LeadStatus.WON, LeadStatus.LOST]
        leads = []
        for n in range(LEADS_PER_CLIENT):
            first, initial = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_INITIALS)
            created = self.ago(HISTORY_DAYS)
            status = self.rng.choices(statuses, weights=[4, 4, 3, 2, 1])[0]
            follow_up = None
            if n % 6 == 0:
                follow_up = self.ago(1.5, 0.01)  # came due: the follow-ups job reminds the owner
            elif n % 6 == 1:
                follow_up = self.base + timedelta(days=self.rng.randint(1, 5), hours=2)
            last_activity = self.ago((self.base - created).total_seconds() / 86400)
            if status == LeadStatus.QUALIFIED and n % 2 == 0:
                created = min(created, self.base - timedelta(days=11))
                last_activity = self.ago(10.5, 8)  # idle: due a re-engagement reminder
            leads.append(
                Lead(
                    client=client,
                    name=f"{first} {initial}.",
                    phone=next(self.phones),
                    email=f"{first}.{initial}{n}@example.com".lower(),
                    status=status,
                    follow_up_at=follow_up,
                    last_activity_at=max(last_activity, created),
                    created_at=created,
                )
            )
        return Lead.objects.bulk_create(leads)

    def conversations(self, client: Client, leads: list[Lead]) -> None:
        messages: list[Message] = []
        for n, lead in enumerate(leads):
            stalled = n % 5 == 0  # the lead wrote last and waits: agent-check material
            count = self.rng.randint(1, 3) * 2 - (1 if stalled else 0)
            moments = sorted(self.ago((self.base - lead.created_at).total_seconds() / 86400) for _ in range(count))
            if stalled:
                moments[-1] = self.ago(2 / 24, 0.5 / 24)
                moments = sorted(moments)
            conversation = Conversation.objects.create(
                client=client, lead=lead, phone=lead.phone, created_at=lead.created_at
            )
            for i, at in enumerate(moments):
                inbound = i % 2 == 0
                body = self.rng.choice(INBOUND if inbound else OUTBOUND)
                messages.append(
                    Message(conversation=conversation, direction="in" if inbound else "out", body=body, created_at=at)
                )
            conversation.last_message_at = moments[-1]
            conversation.last_message_direction = "in" if len(moments) % 2 else "out"
            if n % 10 == 5 and conversation.last_message_direction == "in":
                self.escalated(client, conversation, moments[-1])
            conversation.save()
        Message.objects.bulk_create(messages)

    def escalated(self, client: Client, conversation: Conversation, since: datetime) -> None:
        """A stall the agent check already told the owner about."""
        conversation.escalated_for_message_at = since
        channel, address = owner_contact(client)
        notice = self.message(
            client,
            None,
            Status.SENT,
            since + timedelta(minutes=client.agent_stall_minutes),
            to=address,
            subject="A lead is waiting for a reply" if channel == "email" else "",
            body=f"{client.name}: a message from {conversation.phone} is waiting for a reply.",
            idempotency_key=stall_key(conversation.pk, since),
            source="agent-stall",
        )
        self.sent(notice, notice.send_at + timedelta(seconds=3))

    def calls(self, client: Client) -> None:
        calls = []
        for _ in range(20):
            status = self.rng.choices(list(CallStatus), weights=[5, 3, 1, 1])[0]
            started = self.ago(HISTORY_DAYS, 2 / 24)
            handled = status == CallStatus.MISSED
            calls.append(
                Call(
                    client=client,
                    caller=next(self.phones),
                    status=status,
                    started_at=started,
                    handled=handled,
                    handled_at=started + timedelta(minutes=3) if handled else None,
                    texted_back=handled,
                )
            )
        for minutes in (8, 25):  # missed just now: the next check-missed-calls texts them back
            calls.append(
                Call(
                    client=client,
                    caller=next(self.phones),
                    status=CallStatus.MISSED,
                    started_at=self.base - timedelta(minutes=minutes),
                )
            )
        for call in Call.objects.bulk_create(calls):
            if call.texted_back:
                text = self.message(
                    client,
                    None,
                    Status.DELIVERED,
                    call.started_at + timedelta(minutes=3),
                    to=call.caller,
                    body=f"Sorry we missed your call at {client.name}! How can we help? Reply STOP to opt out.",
                    idempotency_key=f"missed-call:{call.pk}",
                    source="missed-call",
                )
                self.sent(text, text.send_at + timedelta(seconds=2))
                text.delivered_at = text.sent_at + timedelta(seconds=4)

    def history(self, client: Client, leads: list[Lead]) -> None:
        """Two weeks of sent messages, a few every day, most delivered."""
        for day in range(HISTORY_DAYS):
            for _ in range(self.rng.randint(2, 5)):
                lead = self.rng.choice(leads)
                send_at = self.ago(day + 1, day)
                email = self.rng.random() < 0.3
                outcome = self.rng.choices([Status.DELIVERED, Status.SENT, Status.UNDELIVERED], weights=[8, 2, 1])[0]
                if email and outcome == Status.UNDELIVERED:
                    outcome = Status.SENT
                fields = {"subject": "Your appointment"} if email else {}
                message = self.message(client, lead, outcome, send_at, **fields)
                self.sent(message, send_at + timedelta(seconds=self.rng.randint(1, 40)))
                if outcome == Status.DELIVERED:
                    message.delivered_at = message.sent_at + timedelta(seconds=self.rng.randint(2, 30))
                elif outcome == Status.UNDELIVERED:
                    message.last_error_code, message.last_error = "30003", "Unreachable destination handset"

    def queue_in_every_state(self, client: Client, leads: list[Lead]) -> None:
        """The queue as an operator sees it: due, future, in flight, failed, cancelled."""
        lead = leads[0]
        for minutes in (1, 10):
            self.message(client, lead, Status.PENDING, self.base - timedelta(minutes=minutes))
        for hours in (3, 26):
            self.message(client, leads[1], Status.PENDING, self.base + timedelta(hours=hours))
        self.message(client, leads[2], Status.PENDING, self.base + timedelta(days=2), subject="See you soon")
        in_flight = self.message(
            client, leads[3], Status.SENDING, self.base - timedelta(minutes=1), attempts=1, claimed_by="demo-worker"
        )
        in_flight.claimed_at, in_flight.lease_expires_at = self.base, self.base + timedelta(hours=2)
        self.failed(client, leads[4], RETRIES_EXHAUSTED, max_attempts=3)
        self.failed(client, leads[5], REJECTED)
        self.message(client, leads[6], Status.CANCELLED, self.base + timedelta(hours=5))
        # A transient error earlier; back to pending, waiting for its backoff to pass.
        retrying = self.message(
            client,
            leads[7],
            Status.PENDING,
            self.base - timedelta(minutes=30),
            attempts=1,
            next_attempt_at=self.base + timedelta(minutes=4),
            last_error_code="429",
            last_error="Too many requests",
        )
        self.attempt(
            retrying,
            self.base - timedelta(minutes=30),
            Outcome.TRANSIENT,
            http_status=429,
            error_code="429",
            error="Too many requests; Retry-After 240",
        )

    def failed(self, client: Client, lead: Lead, errors: tuple, max_attempts: int = 5) -> None:
        """A failed message whose attempts say why: one (outcome, http status, code, error) each."""
        start = self.ago(4, 1)
        *_, (_, _, last_code, last_error) = errors
        message = self.message(
            client,
            lead,
            Status.FAILED,
            start,
            attempts=len(errors),
            max_attempts=max_attempts,
            last_error_code=last_code,
            last_error=last_error,
        )
        for n, (outcome, http_status, code, error) in enumerate(errors):
            at = start + timedelta(minutes=2**n - 1)
            self.attempt(message, at, outcome, http_status=http_status, error_code=code, error=error)


def banner(password: str, base_url: str = "http://127.0.0.1:8000") -> str:
    """What `make demo` prints once it is ready: where to look, how to log in, how to trigger."""
    secret = settings.CRON_SECRET[0] if settings.CRON_SECRET else "<set CRON_SECRET>"
    return "\n".join(
        [
            "",
            "Demo ready (SQLite, console providers; the scheduler loop runs the jobs every minute):",
            f"  dashboard   {base_url}/cron/",
            f"  messages    {base_url}/scheduled/",
            f"  admin       {base_url}/admin/",
            f"  log in as   username=demo password={password}  (or {VIEWER}, same password: view-only)",
            "  trigger a job over HTTP, as an external scheduler would:",
            f'    curl -X POST -H "Authorization: Bearer {secret}" {base_url}/api/cron/watchdog/',
            "",
        ]
    )
