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


def validate(expr: str, tz: str) -> None:
    """Raise ScheduleError with a readable reason for a bad expression or zone."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown timezone {tz!r}: use an IANA name such as Europe/Berlin") from exc
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


def previous_run(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The latest scheduled time at or before `at_or_before`, in UTC."""
    limit = at_or_before.astimezone(UTC)
    for candidate in CronSim(expr, at_or_before.astimezone(ZoneInfo(tz)), reverse=True):
        if candidate.astimezone(UTC) <= limit:
            return candidate.astimezone(UTC)
    raise ScheduleError(f"{expr!r} never ran")  # pragma: no cover


def is_due(expr: str, tz: str, now: datetime) -> bool:
    """Whether a scheduled time falls in the minute that contains `now`."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return next_run(expr, tz, minute - timedelta(microseconds=1)) < minute + timedelta(minutes=1)


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
