from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count, Max, Min

from messaging.demo import DEMO_NAMES, demo_counts, ensure_demo_staff, seed_demo_data
from messaging.models import Call, CallStatus, Client, DeliveryAttempt, Lead, Message, ScheduledMessage, Status
from messaging.phones import normalize_phone
from scheduling.runner import run_job

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 15, 23, tzinfo=UTC)  # Tuesday: New York 11:23, Berlin 16:23, Sydney Wed 02:23
BASE = NOW.replace(minute=0)


@pytest.fixture
def seeded():
    with time_machine.travel(NOW, tick=False):
        yield seed_demo_data()


def snapshot() -> list[tuple]:
    """The demo's data without database ids, comparable across two seedings."""
    return sorted(
        ScheduledMessage.objects.filter(client__name__in=DEMO_NAMES).values_list(
            "id", "status", "channel", "to", "send_at", "sent_at", "attempts", "source"
        )
    ) + sorted(Lead.objects.filter(client__name__in=DEMO_NAMES).values_list("name", "phone", "status", "created_at"))


def wipe_demo() -> None:
    ScheduledMessage.objects.filter(client__name__in=DEMO_NAMES).delete()
    Client.objects.filter(name__in=DEMO_NAMES).delete()


def test_seeding_twice_creates_nothing_the_second_time(seeded):
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        again = seed_demo_data()

    assert (seeded.created, again.created) == (True, False)
    assert again.counts == seeded.counts == demo_counts()
    assert Client.objects.filter(name__in=DEMO_NAMES).count() == 3


def test_same_seed_gives_the_same_data(seeded):
    first = snapshot()
    wipe_demo()

    with time_machine.travel(NOW, tick=False):
        second = seed_demo_data()

    assert second.counts == seeded.counts
    assert snapshot() == first


def test_another_seed_gives_other_data(seeded):
    first = snapshot()
    wipe_demo()

    with time_machine.travel(NOW, tick=False):
        seed_demo_data(seed=7)

    assert snapshot() != first


def test_fixed_parts_have_fixed_counts(seeded):
    counts = seeded.counts
    assert (counts["clients"], counts["leads"], counts["conversations"], counts["calls"]) == (3, 54, 54, 66)
    assert counts["messages"] > counts["conversations"]
    assert counts["delivery attempts"] > counts["scheduled messages"] / 2


def test_clients_are_in_three_timezones(seeded):
    assert set(Client.objects.values_list("timezone", flat=True)) == {
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
    }


def test_every_queue_status_is_present(seeded):
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == set(Status.values)


def test_pending_messages_are_both_due_now_and_in_the_future(seeded):
    pending = ScheduledMessage.objects.filter(status=Status.PENDING)
    assert pending.filter(send_at__lte=NOW, next_attempt_at__lte=NOW).exists()
    assert pending.filter(send_at__gt=NOW).exists()


def test_failed_messages_carry_the_attempts_that_explain_why(seeded):
    failed = ScheduledMessage.objects.filter(status=Status.FAILED).annotate(tries=Count("delivery_attempts"))
    assert failed.exists()
    for message in failed:
        assert message.tries == message.attempts >= 2
        assert message.last_error
        last = message.delivery_attempts.order_by("started_at").last()
        assert (last.error_code, last.error) == (message.last_error_code, message.last_error)


def test_every_phone_number_is_valid_e164(seeded):
    phones = [
        *Lead.objects.values_list("phone", flat=True),
        *Call.objects.values_list("caller", flat=True),
        *Client.objects.values_list("owner_phone", flat=True),
        *ScheduledMessage.objects.filter(channel="sms").values_list("to", flat=True),
    ]
    assert all(normalize_phone(phone) == phone for phone in phones)


def test_history_covers_the_last_two_weeks(seeded):
    sent = ScheduledMessage.objects.filter(sent_at__isnull=False)
    span = sent.aggregate(first=Min("sent_at"), last=Max("sent_at"))
    assert BASE - timedelta(days=14) <= span["first"] < BASE - timedelta(days=13)
    assert span["last"] <= BASE
    sent_days = {at.date() for at in sent.values_list("sent_at", flat=True)}
    lead_days = {at.date() for at in Lead.objects.values_list("created_at", flat=True)}
    message_days = {at.date() for at in Message.objects.values_list("created_at", flat=True)}
    assert len(sent_days) >= 14 and len(lead_days) >= 10 and len(message_days) >= 10


def test_missed_calls_are_handled_except_the_latest(seeded):
    missed = Call.objects.filter(status=CallStatus.MISSED)
    unhandled = missed.filter(handled=False)
    assert unhandled.count() == 6
    assert all(call.started_at > BASE - timedelta(hours=1) for call in unhandled)
    texted = missed.filter(texted_back=True)
    assert ScheduledMessage.objects.filter(source="missed-call").count() == texted.count() > 0


def test_demo_gives_every_business_job_work(seeded):
    with time_machine.travel(NOW, tick=False):
        missed = run_job("check-missed-calls", "manual")
        stalls = run_job("agent-check", "manual")
        follow_ups = run_job("follow-ups", "manual")

    assert (missed.status, missed.data["texted"]) == ("succeeded", 6)
    assert stalls.status == "succeeded" and stalls.data["checked"] > 0
    assert follow_ups.status == "succeeded"
    assert follow_ups.data.get("follow_ups", 0) > 0 and follow_ups.data.get("re_engagements", 0) > 0


def test_seed_demo_command_prints_credentials_and_a_summary(capsys):
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo")

    out = capsys.readouterr().out
    assert "username=demo password=" in out
    assert "Demo data created: 3 clients, 54 leads" in out
    assert DeliveryAttempt.objects.exists()


def test_demo_seeds_a_view_only_viewer_who_can_see_but_not_change(client):
    password = ensure_demo_staff()
    viewer = get_user_model().objects.get(username="viewer")
    assert viewer.is_staff and not viewer.is_superuser
    assert client.login(username="viewer", password=password)
    assert client.get("/scheduled/").status_code == 200
    assert client.get("/cron/").status_code == 200
    assert "Run now" not in client.get("/cron/").content.decode()
    assert client.post("/cron/watchdog/run/").status_code == 403
    ensure_demo_staff()  # seeding again resets, never duplicates
    assert get_user_model().objects.filter(username="viewer").count() == 1
