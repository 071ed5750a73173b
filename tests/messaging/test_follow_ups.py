from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from messaging.jobs import send_follow_up_reminders
from messaging.models import Client, Lead, LeadStatus, ScheduledMessage
from scheduling.context import JobContext
from scheduling.models import JobRun, RunStatus
from tests.jobs import job_context as shared_job_context
from tests.jobs import run_job_at

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # Tuesday; 16:00 in Berlin


def make_client(name: str = "Kiez Bikes", **fields) -> Client:
    fields.setdefault("timezone", "Europe/Berlin")
    fields.setdefault("owner_email", "owner@kiez.example")
    return Client.objects.create(name=name, **fields)


def make_lead(client: Client, phone: str = "+14155550142", **fields) -> Lead:
    fields.setdefault("name", "Ana")
    fields.setdefault("last_activity_at", NOW - timedelta(days=1))
    return Lead.objects.create(client=client, phone=phone, **fields)


def reminders(source: str) -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source=source).order_by("created_at", "idempotency_key"))


def run_at(when: datetime):
    return run_job_at("follow-ups", when)


def job_context() -> JobContext:
    return shared_job_context("follow-ups", timedelta(minutes=20))


@pytest.mark.django_db
class TestFollowUps:
    def test_passed_follow_up_reminds_the_owner(self):
        due = NOW - timedelta(minutes=10)
        lead = make_lead(make_client(), follow_up_at=due)

        result = run_at(NOW)

        [message] = reminders("follow-up")
        assert (message.channel, message.to, message.client_id) == ("email", "owner@kiez.example", lead.client_id)
        assert message.idempotency_key == f"follow-up:{lead.pk}:2026-03-10T14:50:00+00:00"
        assert message.subject == "Follow-up due: Ana (+14155550142)"
        assert "due Tue 10 Mar 15:50 (your time)" in message.body
        assert (result.status, result.data["follow_ups"]) == (RunStatus.SUCCEEDED, 1)

    def test_follow_up_in_the_future_waits(self):
        make_lead(make_client(), follow_up_at=NOW + timedelta(minutes=1))

        run_at(NOW)

        assert reminders("follow-up") == []

    @pytest.mark.parametrize("status", [LeadStatus.WON, LeadStatus.LOST])
    def test_closed_lead_gets_no_follow_up(self, status):
        make_lead(make_client(), follow_up_at=NOW - timedelta(hours=1), status=status)

        run_at(NOW)

        assert reminders("follow-up") == []

    def test_moved_follow_up_date_gets_a_reminder_of_its_own(self):
        lead = make_lead(make_client(), follow_up_at=NOW - timedelta(hours=1))
        run_at(NOW)
        Lead.objects.filter(pk=lead.pk).update(follow_up_at=NOW + timedelta(days=1))

        run_at(NOW + timedelta(days=1, minutes=30))

        assert len(reminders("follow-up")) == 2

    def test_follow_up_older_than_the_lookback_is_taken_as_dealt_with(self):
        make_lead(make_client(), follow_up_at=NOW - timedelta(days=31))

        run_at(NOW)

        assert reminders("follow-up") == []


@pytest.mark.django_db
class TestReEngagement:
    def test_qualified_lead_idle_for_seven_days_gets_one_reminder(self):
        idle_since = NOW - timedelta(days=9)
        lead = make_lead(make_client(), status=LeadStatus.QUALIFIED, last_activity_at=idle_since)

        result = run_at(NOW)

        [message] = reminders("re-engage")
        assert message.idempotency_key == f"re-engage:{lead.pk}:2026-03-01T15:00:00+00:00"
        assert message.subject == "Qualified lead gone quiet: Ana (+14155550142)"
        assert "no activity for 9 days (since Sun 01 Mar)" in message.body
        assert result.data["re_engagements"] == 1

    def test_qualified_lead_idle_for_six_days_is_not_reminded(self):
        make_lead(make_client(), status=LeadStatus.QUALIFIED, last_activity_at=NOW - timedelta(days=6, hours=23))

        run_at(NOW)

        assert reminders("re-engage") == []

    def test_idle_lead_that_is_not_qualified_is_not_reminded(self):
        make_lead(make_client(), status=LeadStatus.CONTACTED, last_activity_at=NOW - timedelta(days=10))

        run_at(NOW)

        assert reminders("re-engage") == []

    def test_new_activity_then_a_new_idle_stretch_gets_a_new_reminder(self):
        lead = make_lead(make_client(), status=LeadStatus.QUALIFIED, last_activity_at=NOW - timedelta(days=8))
        run_at(NOW)
        Lead.objects.filter(pk=lead.pk).update(last_activity_at=NOW + timedelta(days=1))

        run_at(NOW + timedelta(days=8, minutes=30))

        assert len(reminders("re-engage")) == 2


@pytest.mark.django_db
class TestRerunsAndGaps:
    def test_second_run_sends_nothing_more(self):
        client = make_client()
        make_lead(client, follow_up_at=NOW - timedelta(minutes=5))
        make_lead(client, phone="+14155550143", status=LeadStatus.QUALIFIED, last_activity_at=NOW - timedelta(days=8))
        run_at(NOW)

        result = run_at(NOW + timedelta(minutes=30))

        assert ScheduledMessage.objects.count() == 2
        assert result.data["processed"] == 0

    def test_run_after_three_day_gap_sends_each_reminder_once(self):
        client = make_client()
        last_run = NOW - timedelta(days=3)
        for hours in (2, 30, 50, 70):
            make_lead(client, phone=f"+1415555{150 + hours:04d}", follow_up_at=last_run + timedelta(hours=hours))
        make_lead(client, phone="+14155550143", status=LeadStatus.QUALIFIED, last_activity_at=NOW - timedelta(days=9))
        make_lead(client, phone="+14155550144", follow_up_at=NOW + timedelta(hours=1))

        result = run_at(NOW)
        run_at(NOW + timedelta(minutes=30))

        assert len(reminders("follow-up")) == 4
        assert len(reminders("re-engage")) == 1
        assert (result.data["follow_ups"], result.data["re_engagements"]) == (4, 1)


@pytest.mark.django_db
def test_client_without_owner_contact_fails_only_its_reminder():
    make_lead(make_client("Good"), follow_up_at=NOW - timedelta(minutes=5))
    make_lead(make_client("Bad", owner_email=""), phone="+14155550143", follow_up_at=NOW - timedelta(minutes=5))

    result = run_at(NOW)

    assert result.status == RunStatus.PARTIAL
    assert (result.data["succeeded"], result.data["failed"]) == (1, 1)
    assert "Bad" in JobRun.objects.get(pk=result.run_id).error
    assert [m.to for m in reminders("follow-up")] == ["owner@kiez.example"]


@pytest.mark.django_db
def test_leads_and_sent_keys_are_read_in_three_queries(django_assert_num_queries):
    client = make_client()
    for n in range(3):
        make_lead(client, phone=f"+1415555{150 + n:04d}", follow_up_at=NOW - timedelta(minutes=n + 1))
        make_lead(
            client, phone=f"+1415555{160 + n:04d}", status=LeadStatus.QUALIFIED, last_activity_at=NOW - timedelta(8)
        )
    with time_machine.travel(NOW, tick=False):
        ctx = job_context()
        # Follow-ups, idle leads, queued keys; then per reminder: key check, savepoint, insert, release.
        with django_assert_num_queries(3 + 6 * 4):
            send_follow_up_reminders(ctx, NOW)
    assert ctx.data == {"follow_ups": 3, "re_engagements": 3, "skipped_owner_unreachable": 0}
