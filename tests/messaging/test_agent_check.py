from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

from messaging.automations.agent_check import stall_deadline
from messaging.jobs import check_agent_stalls
from messaging.models import Client, Conversation, ScheduledMessage
from scheduling.context import JobContext
from scheduling.models import JobRun, RunStatus
from tests.jobs import job_context as shared_job_context
from tests.jobs import run_job_at

# Tuesday 10 March 2026, 17:00 UTC: 10:00 in Los Angeles (PDT since 8 March), Wednesday 06:00 in Auckland.
TUESDAY_10AM_LA = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)


def make_client(name: str = "Acme", tz: str = "America/Los_Angeles", **fields) -> Client:
    fields.setdefault("owner_email", f"owner@{name.lower()}.example")
    return Client.objects.create(name=name, timezone=tz, **fields)


def waiting(client: Client, at: datetime, phone: str = "+14155550142", direction: str = "in") -> Conversation:
    return Conversation.objects.create(
        client=client, phone=phone, last_message_at=at, last_message_direction=direction, created_at=at
    )


def escalations() -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source="agent-stall").order_by("created_at", "to"))


def run_at(when: datetime):
    return run_job_at("agent-check", when)


def job_context() -> JobContext:
    return shared_job_context("agent-check", timedelta(minutes=10))


@pytest.mark.django_db
class TestEscalation:
    def test_message_unanswered_past_the_threshold_is_escalated_to_the_owner(self):
        conversation = waiting(make_client(), TUESDAY_10AM_LA)

        result = run_at(TUESDAY_10AM_LA + timedelta(minutes=11))

        [message] = escalations()
        stamp = int(TUESDAY_10AM_LA.timestamp())
        assert (message.channel, message.to) == ("email", "owner@acme.example")
        assert message.idempotency_key == f"agent-stall:{conversation.pk}:{stamp}"
        assert message.subject == "A lead is waiting for a reply: +14155550142"
        assert "since Tue 10 Mar 10:00 (your time)" in message.body
        assert (result.status, result.data["checked"], result.data["escalated"]) == (RunStatus.SUCCEEDED, 1, 1)

    def test_escalation_is_remembered_on_the_conversation(self):
        conversation = waiting(make_client(), TUESDAY_10AM_LA)

        run_at(TUESDAY_10AM_LA + timedelta(minutes=11))

        conversation.refresh_from_db()
        assert conversation.escalated_for_message_at == TUESDAY_10AM_LA

    def test_message_within_the_threshold_is_not_escalated(self):
        waiting(make_client(), TUESDAY_10AM_LA)

        result = run_at(TUESDAY_10AM_LA + timedelta(minutes=9))

        assert escalations() == []
        assert (result.data["checked"], result.data["escalated"]) == (1, 0)

    def test_client_threshold_replaces_the_default(self):
        waiting(make_client(agent_stall_minutes=30), TUESDAY_10AM_LA)

        run_at(TUESDAY_10AM_LA + timedelta(minutes=29))
        assert escalations() == []
        run_at(TUESDAY_10AM_LA + timedelta(minutes=31))
        assert len(escalations()) == 1

    def test_answered_conversation_is_not_checked(self):
        waiting(make_client(), TUESDAY_10AM_LA, direction="out")

        result = run_at(TUESDAY_10AM_LA + timedelta(hours=2))

        assert escalations() == []
        assert result.data["checked"] == 0

    def test_owner_who_chose_sms_gets_a_text(self):
        waiting(make_client(notify_by="sms", owner_phone="+14155550100"), TUESDAY_10AM_LA)

        run_at(TUESDAY_10AM_LA + timedelta(minutes=11))

        assert [(m.channel, m.to) for m in escalations()] == [("sms", "+14155550100")]


@pytest.mark.django_db
class TestOncePerStall:
    def test_second_run_escalates_nothing_more(self):
        waiting(make_client(), TUESDAY_10AM_LA)
        run_at(TUESDAY_10AM_LA + timedelta(minutes=15))

        result = run_at(TUESDAY_10AM_LA + timedelta(minutes=30))

        assert len(escalations()) == 1
        assert (result.data["checked"], result.data["escalated"]) == (0, 0)

    def test_new_inbound_message_after_an_escalation_is_a_new_stall(self):
        conversation = waiting(make_client(), TUESDAY_10AM_LA)
        run_at(TUESDAY_10AM_LA + timedelta(minutes=15))
        later = TUESDAY_10AM_LA + timedelta(hours=1)
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=later)

        run_at(later + timedelta(minutes=15))

        assert [m.idempotency_key.rsplit(":", 1)[1] for m in escalations()] == [
            str(int(TUESDAY_10AM_LA.timestamp())),
            str(int(later.timestamp())),
        ]

    def test_reply_ends_the_stall_before_it_is_escalated(self):
        conversation = waiting(make_client(), TUESDAY_10AM_LA)
        Conversation.objects.filter(pk=conversation.pk).update(
            last_message_direction="out", last_message_at=TUESDAY_10AM_LA + timedelta(minutes=5)
        )

        run_at(TUESDAY_10AM_LA + timedelta(minutes=30))

        assert escalations() == []

    def test_run_after_three_day_gap_escalates_each_stall_once(self):
        client = make_client()
        for day in range(3):
            waiting(client, TUESDAY_10AM_LA + timedelta(days=day), phone=f"+1415555{150 + day:04d}")

        result = run_at(TUESDAY_10AM_LA + timedelta(days=3))
        run_at(TUESDAY_10AM_LA + timedelta(days=3, minutes=15))

        assert sorted(m.body.split(" from ")[1][:12] for m in escalations()) == [
            "+14155550150",
            "+14155550151",
            "+14155550152",
        ]
        assert result.data["escalated"] == 3


@pytest.mark.django_db
class TestBusinessHours:
    def test_message_before_opening_counts_from_opening(self):
        seven_am = TUESDAY_10AM_LA - timedelta(hours=3)
        waiting(make_client(), seven_am)

        run_at(TUESDAY_10AM_LA - timedelta(hours=1, minutes=1))  # 08:59 local: nothing counted yet
        run_at(TUESDAY_10AM_LA - timedelta(minutes=51))  # 09:09 local: 9 business minutes
        assert escalations() == []
        run_at(TUESDAY_10AM_LA - timedelta(minutes=50))  # 09:10 local
        assert len(escalations()) == 1

    def test_auckland_and_los_angeles_clients_at_the_same_utc_instant(self):
        # 17:00 UTC is 10:00 on a Tuesday in Los Angeles but 06:00 on Wednesday in Auckland.
        los_angeles = waiting(make_client("LA"), TUESDAY_10AM_LA, phone="+14155550150")
        auckland = waiting(make_client("Akl", tz="Pacific/Auckland"), TUESDAY_10AM_LA, phone="+14155550151")

        run_at(TUESDAY_10AM_LA + timedelta(minutes=30))
        assert [m.client_id for m in escalations()] == [los_angeles.client_id]

        # Auckland opens at 09:00 NZDT = 20:00 UTC; ten business minutes later it stalls.
        run_at(datetime(2026, 3, 10, 20, 9, tzinfo=UTC))
        assert len(escalations()) == 1
        run_at(datetime(2026, 3, 10, 20, 10, tzinfo=UTC))
        assert [m.client_id for m in escalations()] == [los_angeles.client_id, auckland.client_id]

    def test_friday_afternoon_message_stalls_monday_morning_across_the_dst_change(self):
        # Friday 6 March 16:55 PST; clocks go forward on Sunday 8 March; Monday 09:05 PDT is 16:05 UTC.
        friday = datetime(2026, 3, 7, 0, 55, tzinfo=UTC)
        waiting(make_client(), friday)

        run_at(datetime(2026, 3, 9, 16, 4, tzinfo=UTC))
        assert escalations() == []
        run_at(datetime(2026, 3, 9, 16, 5, tzinfo=UTC))
        assert len(escalations()) == 1

    def test_deadline_skips_the_weekend(self):
        friday = datetime(2026, 3, 7, 0, 55, tzinfo=UTC)

        deadline = stall_deadline(friday, "America/Los_Angeles", time(9), time(17), 10)

        assert deadline == datetime(2026, 3, 9, 16, 5, tzinfo=UTC)

    def test_deadline_with_hours_past_midnight_runs_into_the_next_day(self):
        # Open 22:00-02:00 Berlin (CET, UTC+1): a message at 01:55 Wednesday has 5 minutes that night.
        since = datetime(2026, 3, 11, 0, 55, tzinfo=UTC)

        deadline = stall_deadline(since, "Europe/Berlin", time(22), time(2), 10)

        assert deadline == datetime(2026, 3, 11, 21, 5, tzinfo=UTC)


@pytest.mark.django_db
class TestFailureIsolation:
    def test_client_without_owner_contact_fails_only_its_conversation(self):
        waiting(make_client("Good"), TUESDAY_10AM_LA, phone="+14155550150")
        bad = waiting(make_client("Bad", owner_email=""), TUESDAY_10AM_LA, phone="+14155550151")

        result = run_at(TUESDAY_10AM_LA + timedelta(minutes=20))

        assert result.status == RunStatus.PARTIAL
        assert (result.data["succeeded"], result.data["failed"], result.data["escalated"]) == (1, 1, 1)
        bad.refresh_from_db()
        assert bad.escalated_for_message_at is None  # tried again next run, once the owner is reachable

    def test_client_with_an_unknown_timezone_fails_only_its_conversation(self):
        waiting(make_client("Good"), TUESDAY_10AM_LA, phone="+14155550150")
        broken = make_client("Broken")
        Client.objects.filter(pk=broken.pk).update(timezone="Mars/Olympus_Mons")
        waiting(broken, TUESDAY_10AM_LA, phone="+14155550151")

        result = run_at(TUESDAY_10AM_LA + timedelta(minutes=20))

        assert result.status == RunStatus.PARTIAL
        assert "conversation" in JobRun.objects.get(pk=result.run_id).error
        assert len(escalations()) == 1


@pytest.mark.django_db
def test_conversations_are_read_in_one_query(django_assert_num_queries):
    for n in range(4):
        waiting(make_client(f"Client{n}"), TUESDAY_10AM_LA, phone=f"+1415555{150 + n:04d}")
    now = TUESDAY_10AM_LA + timedelta(minutes=20)
    with time_machine.travel(now, tick=False):
        ctx = job_context()
        # 1 read, then per stall: savepoint, key check, savepoint, insert, release, update, release.
        with django_assert_num_queries(1 + 4 * 7):
            check_agent_stalls(ctx, now)
    assert ctx.data == {"checked": 4, "escalated": 4, "skipped_owner_unreachable": 0}


@pytest.mark.django_db
def test_stall_that_ripens_at_closing_waits_for_the_next_business_morning():
    client = make_client(business_hours_start=time(9), business_hours_end=time(17))
    tuesday_1650_la = datetime(2026, 3, 10, 23, 50, tzinfo=UTC)
    waiting(client, tuesday_1650_la)  # 10 business minutes pass at 17:00, as the office closes

    evening = run_at(datetime(2026, 3, 11, 0, 0, tzinfo=UTC))  # Tuesday 17:00 in Los Angeles
    assert escalations() == [] and evening.data["held_until_business_hours"] == 1

    run_at(datetime(2026, 3, 11, 16, 0, tzinfo=UTC))  # Wednesday 09:00 in Los Angeles
    assert len(escalations()) == 1
