"""Schedule arithmetic: pure functions over a cron expression and an IANA timezone.

Cron fields are evaluated in the job's zone (cronsim handles DST: a 02:30 job runs once on
both transition days), and every result is converted to UTC at once. Timedeltas are only ever
added to UTC datetimes, since "+ 1 hour" in a local zone is ambiguous across a transition.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    local = after.astimezone(ZoneInfo(tz))
    return next(CronSim(expr, local)).astimezone(UTC)


def previous_run(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The latest scheduled time at or before `at_or_before`, in UTC."""
    local = at_or_before.astimezone(ZoneInfo(tz))
    return next(CronSim(expr, local, reverse=True)).astimezone(UTC)


def is_due(expr: str, tz: str, now: datetime) -> bool:
    """Whether a scheduled time falls in the minute that contains `now`."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return next_run(expr, tz, minute - timedelta(microseconds=1)) < minute + timedelta(minutes=1)


def describe(expr: str) -> str:
    """The expression in words, e.g. "every 5 minutes"."""
    try:
        return CronSim(expr, datetime.now(UTC)).explain()
    except (CronSimError, AttributeError):
        return expr
