from datetime import date, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.daily import run_daily_analytics_job
from analytics.metrics import ESCALATION_SOURCE
from analytics.models import COUNTER_FIELDS, DailyStats
from messaging.models import Client
from scheduling.models import JobRun, RunStatus
from scheduling.runner import run_job
from tests.analytics.factories import (
    add_message,
    make_call,
    make_client,
    make_conversation,
    make_lead,
    make_scheduled,
    utc,
)
from tests.conftest import manage_py, subprocess_env

pytestmark = pytest.mark.django_db

NOW = utc(2025, 3, 12, 10)  # a Wednesday; UTC clients' yesterday is 11 March
YESTERDAY = date(2025, 3, 11)


def stats(client: Client, day: date) -> dict:
    row = DailyStats.objects.get(client=client, date=day)
    return {name: getattr(row, name) for name in (*COUNTER_FIELDS, "median_first_response_seconds")}


def build_day(client: Client) -> None:
    """A hand-built 11 March, with rows on the 10th and 12th that must not count."""
    make_lead(client, utc(2025, 3, 11, 0, 0))
    make_lead(client, utc(2025, 3, 11, 23, 59))
    make_lead(client, utc(2025, 3, 10, 23, 59))
    make_lead(client, utc(2025, 3, 12, 0, 0))
    first = make_conversation(client)
    add_message(first, "in", utc(2025, 3, 11, 9, 0))  # waits 10 min
    add_message(first, "in", utc(2025, 3, 11, 9, 2))  # same wait, not a new one
    add_message(first, "out", utc(2025, 3, 11, 9, 10))
    add_message(first, "in", utc(2025, 3, 11, 12, 0))  # waits 30 min
    add_message(first, "out", utc(2025, 3, 11, 12, 30))
    second = make_conversation(client)
    add_message(second, "in", utc(2025, 3, 11, 15, 0))  # waits 5 min
    add_message(second, "out", utc(2025, 3, 11, 15, 5))
    add_message(second, "in", utc(2025, 3, 11, 18, 0))  # never answered: no wait measured
    make_scheduled(client, "sms", "sent", at=utc(2025, 3, 11, 8), sent=True)
    make_scheduled(client, "sms", "delivered", at=utc(2025, 3, 11, 9), sent=True)
    make_scheduled(client, "sms", "undelivered", at=utc(2025, 3, 11, 10), sent=True)
    make_scheduled(client, "sms", "sent", at=utc(2025, 3, 10, 23), sent=True)
    make_scheduled(client, "sms", "pending", at=utc(2025, 3, 11, 11), claimed=False)
    make_scheduled(client, "sms", "failed", at=utc(2025, 3, 11, 12))
    make_scheduled(client, "email", "sent", at=utc(2025, 3, 11, 13), sent=True)
    make_scheduled(client, "email", "failed", at=utc(2025, 3, 11, 14), claimed=False)  # failed before any attempt
    make_scheduled(client, "sms", "pending", at=utc(2025, 3, 11, 15), claimed=False, source=ESCALATION_SOURCE)
    make_scheduled(client, "sms", "cancelled", at=utc(2025, 3, 11, 16), claimed=False, source=ESCALATION_SOURCE)
    make_call(client, utc(2025, 3, 11, 9), texted_back=True)
    make_call(client, utc(2025, 3, 11, 10), texted_back=True)
    make_call(client, utc(2025, 3, 11, 11))
    make_call(client, utc(2025, 3, 11, 12), status="completed")
    make_call(client, utc(2025, 3, 12, 1), texted_back=True)


def test_daily_stats_count_a_hand_built_day_exactly():
    client = make_client()
    build_day(client)
    run_daily_analytics_job(now=NOW)
    assert stats(client, YESTERDAY) == {
        "leads_created": 2,
        "inbound_messages": 5,
        "outbound_messages": 3,
        "sms_sent": 3,
        "sms_failed": 1,
        "emails_sent": 1,
        "emails_failed": 1,
        "missed_calls": 3,
        "calls_texted_back": 2,
        "escalations": 1,
        "median_first_response_seconds": 600,
    }


def test_day_without_activity_has_zeros_and_no_median():
    client = make_client()
    run_daily_analytics_job(now=NOW)
    row = stats(client, YESTERDAY)
    assert row.pop("median_first_response_seconds") is None
    assert set(row.values()) == {0}


def test_a_wait_answered_after_midnight_counts_on_the_day_it_started():
    client = make_client()
    conversation = make_conversation(client)
    add_message(conversation, "in", utc(2025, 3, 11, 23, 50))
    add_message(conversation, "out", utc(2025, 3, 12, 0, 10))
    run_daily_analytics_job(now=NOW)
    assert stats(client, YESTERDAY)["median_first_response_seconds"] == 1200


def test_a_message_continuing_yesterdays_wait_does_not_start_a_new_one():
    client = make_client()
    conversation = make_conversation(client)
    add_message(conversation, "in", utc(2025, 3, 10, 23, 0))
    add_message(conversation, "in", utc(2025, 3, 11, 0, 10))
    add_message(conversation, "out", utc(2025, 3, 11, 0, 30))
    add_message(conversation, "in", utc(2025, 3, 11, 9, 0))
    add_message(conversation, "out", utc(2025, 3, 11, 9, 3))
    run_daily_analytics_job(now=NOW)
    assert stats(client, date(2025, 3, 10))["median_first_response_seconds"] == 5400
    assert stats(client, YESTERDAY)["median_first_response_seconds"] == 180


def test_same_utc_instants_land_on_each_clients_own_local_dates():
    auckland = make_client("Kiwi Cafe", "Pacific/Auckland")  # UTC+13 in March
    los_angeles = make_client("Bay Dental", "America/Los_Angeles")  # UTC-7 in March
    for client in (auckland, los_angeles):
        for instant in (utc(2025, 3, 11, 20), utc(2025, 3, 12, 10, 30), utc(2025, 3, 12, 11, 30)):
            make_lead(client, instant)
    run_daily_analytics_job(now=utc(2025, 3, 13, 12))
    by_day = {
        (row.client.name, row.date): row.leads_created
        for row in DailyStats.objects.select_related("client").filter(leads_created__gt=0)
    }
    assert by_day == {
        ("Kiwi Cafe", date(2025, 3, 12)): 2,
        ("Kiwi Cafe", date(2025, 3, 13)): 1,
        ("Bay Dental", date(2025, 3, 11)): 1,
        ("Bay Dental", date(2025, 3, 12)): 2,
    }


def test_a_day_is_computed_only_once_it_has_ended_in_the_clients_zone():
    auckland = make_client("Kiwi Cafe", "Pacific/Auckland")
    los_angeles = make_client("Bay Dental", "America/Los_Angeles")
    run_daily_analytics_job(now=utc(2025, 3, 12, 11, 5))  # Auckland: 13 March 00:05; LA: 12 March 04:05
    assert DailyStats.objects.filter(client=auckland, date=date(2025, 3, 12)).exists()
    assert not DailyStats.objects.filter(client=auckland, date=date(2025, 3, 13)).exists()
    assert DailyStats.objects.filter(client=los_angeles, date=date(2025, 3, 11)).exists()
    assert not DailyStats.objects.filter(client=los_angeles, date=date(2025, 3, 12)).exists()


def test_first_run_back_fills_the_configured_number_of_days(settings):
    settings.ANALYTICS_BACKFILL_DAYS = 7
    client = make_client()
    result = run_daily_analytics_job(now=NOW)
    days = set(DailyStats.objects.filter(client=client).values_list("date", flat=True))
    assert days == {YESTERDAY - timedelta(days=n) for n in range(7)}
    assert (result["days_computed"], result["days_backfilled"]) == (7, 6)


def test_run_after_a_three_day_gap_fills_exactly_the_missing_days(settings):
    client = make_client()
    run_daily_analytics_job(now=NOW)
    later = NOW + timedelta(days=4)
    make_lead(client, utc(2025, 3, 13, 12))
    run_daily_analytics_job(now=later)
    recomputed = set(DailyStats.objects.filter(client=client, computed_at=later).values_list("date", flat=True))
    assert recomputed == {date(2025, 3, 12), date(2025, 3, 13), date(2025, 3, 14), date(2025, 3, 15)}
    # The first run's back-fill window, then the four days since.
    assert DailyStats.objects.filter(client=client).count() == settings.ANALYTICS_BACKFILL_DAYS + 4
    assert stats(client, date(2025, 3, 13))["leads_created"] == 1


def test_back_fill_reaches_back_no_further_than_the_setting(settings):
    settings.ANALYTICS_BACKFILL_DAYS = 3
    client = make_client()
    run_daily_analytics_job(now=NOW)
    run_daily_analytics_job(now=NOW + timedelta(days=10))
    days = set(DailyStats.objects.filter(client=client).values_list("date", flat=True))
    assert days == {date(2025, 3, 9), date(2025, 3, 10), date(2025, 3, 11)} | {
        date(2025, 3, 19),
        date(2025, 3, 20),
        date(2025, 3, 21),
    }


def test_rerun_updates_yesterday_instead_of_adding_rows():
    client = make_client()
    run_daily_analytics_job(now=NOW)
    rows = DailyStats.objects.count()
    make_lead(client, utc(2025, 3, 11, 15))
    run_daily_analytics_job(now=NOW + timedelta(hours=1))
    assert DailyStats.objects.count() == rows
    assert stats(client, YESTERDAY)["leads_created"] == 1


def _clients_with_data(count: int, start: int = 0) -> None:
    zones = ["UTC", "Pacific/Auckland", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata"]
    for n in range(start, start + count):
        client = make_client(f"Client {n}", zones[n % len(zones)])
        make_lead(client, utc(2025, 3, 11, 12))
        conversation = make_conversation(client)
        add_message(conversation, "in", utc(2025, 3, 11, 12))
        add_message(conversation, "out", utc(2025, 3, 11, 12, 5))
        make_call(client, utc(2025, 3, 11, 12))
        make_scheduled(client, "sms", "sent", at=utc(2025, 3, 11, 12), sent=True)


def test_query_count_does_not_grow_with_the_number_of_clients(django_assert_max_num_queries):
    _clients_with_data(3)
    with CaptureQueriesContext(connection) as few:
        run_daily_analytics_job(now=NOW)
    DailyStats.objects.all().delete()
    _clients_with_data(27, start=3)
    with django_assert_max_num_queries(len(few.captured_queries)):
        result = run_daily_analytics_job(now=NOW)
    assert result["clients"] == 30
    # 12:00 UTC on 11 March is 12 March in Auckland, a day not over there yet: 4 zones of 5 count it.
    assert DailyStats.objects.filter(date=YESTERDAY, leads_created=1).count() == 24


def test_client_with_an_invalid_timezone_makes_the_daily_run_partial_and_the_others_are_computed():
    good = make_client("Good Co")
    Client.objects.create(name="Broken Co", timezone="Mars/Olympus_Mons")
    make_lead(good, utc(2025, 3, 11, 12))
    with time_machine.travel(NOW, tick=False):
        result = run_job("daily", "manual")
    run = JobRun.objects.get(pk=result.run_id)
    assert run.status == RunStatus.PARTIAL
    assert (run.succeeded, run.failed) == (1, 1)
    assert "Mars/Olympus_Mons" in run.error
    assert stats(good, YESTERDAY)["leads_created"] == 1


def test_escalations_are_counted_under_the_source_the_agent_check_uses():
    from messaging.automations import agent_check

    assert ESCALATION_SOURCE == agent_check.SOURCE


def test_a_back_fill_under_one_day_refuses_to_start():
    env = subprocess_env(ANALYTICS_BACKFILL_DAYS="0")
    proc = manage_py("check", env=env, timeout=60)

    assert proc.returncode != 0
    assert "ANALYTICS_BACKFILL_DAYS=0 must be 1 or more: fix it in .env." in proc.stderr
