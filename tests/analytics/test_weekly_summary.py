from datetime import date, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.daily import run_daily_analytics_job
from analytics.models import DailyStats
from analytics.weekly_summary import process_weekly_summaries, send_weekly_summaries
from messaging.models import Client, ScheduledMessage
from scheduling.models import JobRun, RunStatus
from scheduling.runner import run_job
from tests.analytics.factories import add_message, make_call, make_client, make_conversation, make_lead, utc

pytestmark = pytest.mark.django_db

# Berlin is UTC+1 in March: Monday 17 March 08:00 local is 07:00 UTC. The last full week is
# 10-16 March (ISO 2025-W11); the one before, 3-9 March.
MONDAY_8AM = utc(2025, 3, 17, 7)


def summaries() -> list[ScheduledMessage]:
    return list(ScheduledMessage.objects.filter(source="weekly-summary").order_by("created_at"))


def build_two_weeks(client: Client) -> None:
    for day in (4, 6):
        make_lead(client, utc(2025, 3, day, 12))
    for day in (10, 12, 16):
        make_lead(client, utc(2025, 3, day, 12))
    before = make_conversation(client)
    add_message(before, "in", utc(2025, 3, 5, 10))
    add_message(before, "out", utc(2025, 3, 5, 10, 5))
    this_week = make_conversation(client)
    add_message(this_week, "in", utc(2025, 3, 12, 10))
    add_message(this_week, "out", utc(2025, 3, 12, 10, 10))
    add_message(this_week, "in", utc(2025, 3, 13, 9))
    for n in range(4):
        make_call(client, utc(2025, 3, 5, 9 + n), texted_back=n < 2)
        make_call(client, utc(2025, 3, 11, 9 + n), texted_back=n < 1)


def test_summary_email_has_subject_numbers_and_changes_in_both_parts():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    build_two_weeks(client)
    send_weekly_summaries(now=MONDAY_8AM)
    (email,) = summaries()
    assert email.subject == "Weekly summary for Acme Plumbing: 10–16 Mar 2025"
    assert (email.channel, email.to) == ("email", "owner@acme.example")
    for line in (
        "New leads: 3 (+50% vs previous week)",
        "Messages received: 2 (+100% vs previous week)",
        "Messages sent: 1 (no change vs previous week)",
        "Missed calls: 4 (no change vs previous week)",
        "Missed calls texted back: 1 (-50% vs previous week)",
        "Median response time: 10 min (+100% vs previous week, slower)",
    ):
        assert line in email.body
    for cell in ("New leads</td>", ">3</td>", "+50% vs previous week", ">10 min</td>", "-50% vs previous week"):
        assert cell in email.html
    assert email.html.lstrip().startswith("<!doctype html>")


def test_a_previous_week_of_zero_is_described_in_words():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    make_lead(client, utc(2025, 3, 12, 12))
    send_weekly_summaries(now=MONDAY_8AM)
    (email,) = summaries()
    assert "New leads: 1 (up from 0 the previous week)" in email.body
    assert "Missed calls: 0 (no change vs previous week)" in email.body
    assert "Median response time: no replies measured" in email.body


def test_missing_daily_stats_are_aggregated_before_the_summary_is_written():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    build_two_weeks(client)
    assert not DailyStats.objects.exists()
    send_weekly_summaries(now=MONDAY_8AM)
    days = set(DailyStats.objects.filter(client=client).values_list("date", flat=True))
    assert days == {date(2025, 3, 3) + timedelta(days=n) for n in range(14)}
    assert "New leads: 3" in summaries()[0].body


def test_by_default_the_daily_run_before_a_first_monday_leaves_the_summary_nothing_to_aggregate(caplog):
    # A fresh install: no DailyStats at all. `daily` runs (hourly) before the summary's 08:00.
    client = make_client("Acme Plumbing", "Europe/Berlin")
    build_two_weeks(client)
    run_daily_analytics_job(now=MONDAY_8AM - timedelta(hours=6))
    days = set(DailyStats.objects.filter(client=client).values_list("date", flat=True))
    assert days == {date(2025, 3, 3) + timedelta(days=n) for n in range(14)}
    caplog.set_level("INFO", logger="analytics")
    send_weekly_summaries(now=MONDAY_8AM)
    assert not [r for r in caplog.records if r.getMessage() == "weekly_summary_backfilled"]
    assert "New leads: 3 (+50% vs previous week)" in summaries()[0].body


def test_counts_come_from_the_stored_daily_stats():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    for n in range(14):
        DailyStats.objects.create(client=client, date=date(2025, 3, 3) + timedelta(days=n), leads_created=n)
    send_weekly_summaries(now=MONDAY_8AM)
    # 7+8+...+13 this week against 0+1+...+6 the week before.
    assert "New leads: 70 (+233% vs previous week)" in summaries()[0].body


def test_nothing_is_sent_before_monday_8am_local():
    make_client("Acme Plumbing", "Europe/Berlin")
    assert send_weekly_summaries(now=MONDAY_8AM - timedelta(minutes=1)) == []
    assert len(send_weekly_summaries(now=MONDAY_8AM)) == 1


def test_second_run_in_the_same_week_sends_nothing():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    send_weekly_summaries(now=MONDAY_8AM)
    assert send_weekly_summaries(now=MONDAY_8AM + timedelta(hours=1)) == []
    assert [m.idempotency_key for m in summaries()] == [f"weekly-summary:{client.pk}:2025-W11"]


def test_a_late_run_on_tuesday_sends_the_last_full_week_once():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    send_weekly_summaries(now=MONDAY_8AM + timedelta(days=1, hours=3))
    send_weekly_summaries(now=MONDAY_8AM + timedelta(days=1, hours=4))
    assert [m.idempotency_key for m in summaries()] == [f"weekly-summary:{client.pk}:2025-W11"]


def test_after_a_three_day_gap_exactly_one_summary_for_the_last_full_week():
    client = make_client("Acme Plumbing", "Europe/Berlin")
    send_weekly_summaries(now=utc(2025, 3, 14, 9))  # Friday: last week's summary, late
    after_gap = utc(2025, 3, 17, 10)
    for hour in range(12):
        send_weekly_summaries(now=after_gap + timedelta(hours=hour))
    assert [m.idempotency_key for m in summaries()] == [
        f"weekly-summary:{client.pk}:2025-W10",
        f"weekly-summary:{client.pk}:2025-W11",
    ]


def test_dst_change_week_uses_local_days_and_sends_at_8am_winter_time():
    # Berlin leaves summer time on Sunday 26 October 2025: that Sunday has 25 hours, and
    # Monday 27 October 08:00 local is 07:00 UTC (it would be 06:00 UTC in summer time).
    client = make_client("Acme Plumbing", "Europe/Berlin")
    make_lead(client, utc(2025, 10, 19, 21, 30))  # Sun 19 Oct 23:30 CEST: the week before
    make_lead(client, utc(2025, 10, 19, 22, 30))  # Mon 20 Oct 00:30 CEST
    make_lead(client, utc(2025, 10, 26, 22, 30))  # Sun 26 Oct 23:30 CET
    make_lead(client, utc(2025, 10, 26, 23, 30))  # Mon 27 Oct 00:30 CET: the next week
    assert send_weekly_summaries(now=utc(2025, 10, 27, 6, 30)) == []
    (email,) = send_weekly_summaries(now=utc(2025, 10, 27, 7))
    assert email.idempotency_key == f"weekly-summary:{client.pk}:2025-W43"
    assert email.subject == "Weekly summary for Acme Plumbing: 20–26 Oct 2025"
    assert "New leads: 2 (+100% vs previous week)" in email.body
    assert DailyStats.objects.get(client=client, date=date(2025, 10, 26)).leads_created == 1


def test_clients_without_the_summary_or_an_owner_email_get_none():
    make_client("Quiet Co", "Europe/Berlin", weekly_summary_enabled=False)
    make_client("Nobody Co", "Europe/Berlin", owner_email="")
    assert send_weekly_summaries(now=MONDAY_8AM) == []


def test_each_client_is_due_at_8am_in_its_own_zone():
    auckland = make_client("Kiwi Cafe", "Pacific/Auckland")  # Monday 08:00 NZDT = Sunday 19:00 UTC
    los_angeles = make_client("Bay Dental", "America/Los_Angeles")  # Monday 08:00 PDT = Monday 15:00 UTC
    sent = send_weekly_summaries(now=utc(2025, 3, 17, 14, 59))
    assert [m.idempotency_key for m in sent] == [f"weekly-summary:{auckland.pk}:2025-W11"]
    sent = send_weekly_summaries(now=utc(2025, 3, 17, 15))
    assert [m.idempotency_key for m in sent] == [f"weekly-summary:{los_angeles.pk}:2025-W11"]


def test_public_entry_point_takes_no_arguments_and_sends_due_summaries():
    make_client("Acme Plumbing", "Europe/Berlin")
    with time_machine.travel(MONDAY_8AM, tick=False):
        assert process_weekly_summaries() is None
    assert len(summaries()) == 1


def test_weekly_summary_job_is_partial_when_one_client_has_a_bad_timezone():
    make_client("Acme Plumbing", "Europe/Berlin")
    Client.objects.create(name="Broken Co", timezone="Europe/Atlantis", owner_email="x@broken.example")
    with time_machine.travel(MONDAY_8AM, tick=False):
        result = run_job("weekly-summary", "manual")
    run = JobRun.objects.get(pk=result.run_id)
    assert (run.status, run.succeeded, run.failed) == (RunStatus.PARTIAL, 1, 1)
    assert run.summary["summaries_queued"] == 1
    assert len(summaries()) == 1


def _summary_clients(count: int) -> list[Client]:
    return [make_client(f"Client{n} Co", "Europe/Berlin", owner_email=f"owner{n}@example.com") for n in range(count)]


def test_queries_do_not_grow_with_the_number_of_clients():
    # 5 clients summarised for one week, then 50 for the next: the same queries, both runs
    # aggregating their missing days first.
    _summary_clients(5)
    with CaptureQueriesContext(connection) as few:
        assert len(send_weekly_summaries(now=MONDAY_8AM)) == 5
    _summary_clients(45)
    with CaptureQueriesContext(connection) as many:
        assert len(send_weekly_summaries(now=MONDAY_8AM + timedelta(days=7))) == 50
    assert len(few) == len(many) <= 16
    assert sum("INSERT INTO" in q["sql"] and "scheduledmessage" in q["sql"] for q in many.captured_queries) == 1


def test_a_rerun_for_many_clients_queues_nothing_twice():
    clients = _summary_clients(30)
    assert len(send_weekly_summaries(now=MONDAY_8AM)) == 30
    assert send_weekly_summaries(now=MONDAY_8AM + timedelta(hours=1)) == []
    keys = sorted(m.idempotency_key for m in summaries())
    assert keys == sorted(f"weekly-summary:{c.pk}:2025-W11" for c in clients)


def test_one_clients_invalid_owner_email_fails_that_client_and_the_others_are_queued():
    good = make_client("Good Co", "Europe/Berlin")
    make_client("Broken Co", "Europe/Berlin", owner_email="not-an-address")
    with time_machine.travel(MONDAY_8AM, tick=False):
        result = run_job("weekly-summary", "manual")
    run = JobRun.objects.get(pk=result.run_id)
    assert (run.status, run.succeeded, run.failed) == (RunStatus.PARTIAL, 1, 1)
    assert "to: " in run.error and "client" in run.error
    assert [m.client_id for m in summaries()] == [good.pk]
