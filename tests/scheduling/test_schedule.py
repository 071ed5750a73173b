from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduling import schedule


def _runs_between(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    runs, current = [], start
    while True:
        current = schedule.next_run(expr, tz, current)
        if current >= end:
            return runs
        runs.append(current)


@pytest.mark.parametrize(
    ("tz", "transition_day"),
    [
        ("America/New_York", "2026-03-08"),  # spring forward: 02:00 -> 03:00
        ("America/New_York", "2026-11-01"),  # fall back: 02:00 -> 01:00
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
    ],
)
def test_daily_0230_job_runs_exactly_once_per_local_day_across_dst(tz, transition_day):
    zone = ZoneInfo(tz)
    day = datetime.fromisoformat(transition_day).replace(tzinfo=zone)
    runs = _runs_between(
        "30 2 * * *", tz, (day - timedelta(days=2)).astimezone(UTC), (day + timedelta(days=3)).astimezone(UTC)
    )
    per_local_day = Counter(run.astimezone(zone).date() for run in runs)
    assert len(runs) == 5
    assert set(per_local_day.values()) == {1}
    assert all(run.tzinfo == UTC for run in runs)


def test_spring_forward_run_happens_once_when_the_clocks_jump():
    run = schedule.next_run("30 2 * * *", "America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    # 02:30 does not exist on 2026-03-08 in New York; the run happens once, as the clocks
    # jump (03:00 EDT), as cronie does.
    assert run == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_fall_back_run_happens_once_not_at_both_0130s():
    runs = _runs_between(
        "30 1 * * *",
        "America/New_York",
        datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 2, 0, 0, tzinfo=UTC),
    )
    assert runs == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]


def test_previous_run_is_at_or_before_the_given_time():
    at = datetime(2026, 11, 28, 10, 7, 30, tzinfo=UTC)
    assert schedule.previous_run("*/5 * * * *", "UTC", at) == datetime(2026, 11, 28, 10, 5, tzinfo=UTC)


def test_is_due_only_in_the_scheduled_minute():
    assert schedule.is_due("0 9 * * *", "Europe/Berlin", datetime(2026, 11, 28, 8, 0, 40, tzinfo=UTC))
    assert not schedule.is_due("0 9 * * *", "Europe/Berlin", datetime(2026, 11, 28, 9, 0, 40, tzinfo=UTC))


@pytest.mark.parametrize(("expr", "tz"), [("61 * * * *", "UTC"), ("* * * * *", "Mars/Olympus")])
def test_validate_rejects_bad_expression_or_zone(expr, tz):
    with pytest.raises(schedule.ScheduleError):
        schedule.validate(expr, tz)


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("*/30 * * * *", "Every 30 minutes"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("* * * * *", "Every minute"),
        ("17 3 * * *", "At 03:17"),
        ("0 8 * * 1", "At 08:00, only on Monday"),
        ("30 8 * * 1", "At 08:30, only on Monday"),
        ("*/15 9-17 * * 1-5", "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"),
        ("0 9 1 * *", "At 09:00, on day 1 of the month"),
    ],
)
def test_describe_says_the_schedule_as_people_say_it(expr, words):
    assert schedule.describe(expr) == words


@pytest.mark.parametrize("expr", ["61 * * * *", "not a schedule"])
def test_describe_shows_an_invalid_expression_as_written(expr):
    assert schedule.describe(expr) == expr


@pytest.mark.parametrize(
    ("expr", "tz", "day"),
    [("30 1 * * *", "America/New_York", "2026-11-01"), ("30 2 * * *", "Europe/Berlin", "2026-10-25")],
)
def test_job_in_the_repeated_hour_is_due_in_exactly_one_minute_of_the_fall_back_day(expr, tz, day):
    start = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    due_minutes = [m for m in range(0, 24 * 60) if schedule.is_due(expr, tz, start + timedelta(minutes=m))]
    assert len(due_minutes) == 1


def test_next_run_from_inside_the_repeated_hour_is_later_not_earlier():
    inside_second_0130 = datetime(2026, 11, 1, 6, 45, tzinfo=UTC)  # 01:45 EST, after the 01:30 run
    assert schedule.next_run("30 1 * * *", "America/New_York", inside_second_0130) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )
    assert schedule.previous_run("30 1 * * *", "America/New_York", inside_second_0130) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_previous_run_includes_the_exact_instant_and_the_repeated_hour():
    berlin_10 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, to the microsecond
    assert schedule.previous_run("0 10 * * *", "Europe/Berlin", berlin_10) == berlin_10
    # 2026-10-25 01:15 UTC is 02:15 CET, after 02:30 CEST (00:30 UTC) of the same day.
    at = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert schedule.previous_run("30 2 * * *", "Europe/Berlin", at) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
