"""Schedule arithmetic: pure functions over a cron expression and an IANA timezone.

Cron fields are evaluated in the job's zone (cronsim handles DST: a 02:30 job runs once on
both transition days), and every result is converted to UTC at once. Timedeltas are only ever
added to UTC datetimes, since "+ 1 hour" in a local zone is ambiguous across a transition.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor, FormatException, Options
from cronsim import CronSim, CronSimError


class ScheduleError(ValueError):
    pass


def validate_timezone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown timezone {tz!r}: use an IANA name such as Europe/Berlin") from exc


def validate(expr: str, tz: str) -> None:
    """Raise ScheduleError with a readable reason for a bad expression or zone."""
    zone = validate_timezone(tz)
    fields = expr.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"{len(fields)} fields given, 5 expected (minute hour day-of-month month day-of-week): {expr!r}"
        )
    try:
        next(CronSim(expr, datetime.now(zone)))
    except (CronSimError, StopIteration) as exc:
        raise ScheduleError(f"invalid cron expression {expr!r}: {exc}") from exc


def next_run(expr: str, tz: str, after: datetime) -> datetime:
    """The first scheduled time strictly after `after`, in UTC."""
    after_utc = after.astimezone(UTC)
    # Inside the repeated hour of a fall-back day cronsim may yield the first occurrence of
    # a wall-clock time, which is earlier than `after`: skip to the first one really later.
    for candidate in CronSim(expr, after.astimezone(ZoneInfo(tz))):
        if candidate.astimezone(UTC) > after_utc:
            return candidate.astimezone(UTC)
    raise ScheduleError(f"{expr!r} never runs")  # pragma: no cover - cronsim iterates forever


def next_runs(expr: str, tz: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` scheduled times strictly after `after`, in UTC."""
    runs: list[datetime] = []
    for _ in range(count):
        after = next_run(expr, tz, after)
        runs.append(after)
    return runs


def shortest_gap(expr: str, tz: str, after: datetime, sample: int = 50) -> timedelta:
    """The shortest time between two runs over the next `sample` of them."""
    runs = next_runs(expr, tz, after, sample)
    return min((b - a for a, b in zip(runs, runs[1:], strict=False)), default=timedelta(days=1))


def slots_between(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every scheduled time in [start, end), in UTC."""
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    slots: list[datetime] = []
    for candidate in CronSim(expr, (start_utc - timedelta(microseconds=1)).astimezone(ZoneInfo(tz))):
        at = candidate.astimezone(UTC)
        if at >= end_utc:
            return slots
        # On a fall-back day cronsim may repeat a wall-clock time: count each instant once, in order.
        if at >= start_utc and (not slots or at > slots[-1]):
            slots.append(at)
    return slots  # pragma: no cover - cronsim iterates forever


def previous_run(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The latest scheduled time at or before `at_or_before`, in UTC."""
    limit = at_or_before.astimezone(UTC)
    # Start just after the instant: cronsim's reverse walk is exclusive of its start.
    start = (limit + timedelta(microseconds=1)).astimezone(ZoneInfo(tz))
    for candidate in CronSim(expr, start, reverse=True):
        found = candidate.astimezone(UTC)
        if found <= limit:
            break
    else:  # pragma: no cover - cronsim iterates forever
        raise ScheduleError(f"{expr!r} never ran")
    # Walking back by wall-clock time can step over a slot in the repeated hour of a fall-back
    # day (02:30 CEST, before a 02:15 CET "now"): walk forward to the last one really before.
    while (following := next_run(expr, tz, found)) <= limit:
        found = following
    return found


def is_due(expr: str, tz: str, now: datetime) -> bool:
    """Whether a scheduled time falls in the minute that contains `now`."""
    return slot_in_minute(expr, tz, now) is not None


def slot_in_minute(expr: str, tz: str, now: datetime) -> datetime | None:
    """The scheduled time in the minute containing `now` (UTC), or None when none falls in it."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    slot = next_run(expr, tz, minute - timedelta(microseconds=1))
    return slot if slot < minute + timedelta(minutes=1) else None


def describe(expr: str) -> str:
    """The expression as people say it: "Every 30 minutes", "At 03:17", "At 08:00, only on
    Monday" (cron-descriptor, 24-hour clock). An expression cronsim rejects is returned as
    written; one cron-descriptor cannot read (e.g. "@daily") falls back to cronsim's words."""
    try:
        words = CronSim(expr, datetime.now(UTC)).explain()
    except (CronSimError, AttributeError):
        return expr
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(expr, options).get_description()
    except (FormatException, ValueError, KeyError, IndexError):
        return words
