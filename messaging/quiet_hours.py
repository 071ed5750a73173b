"""Quiet hours: SMS to a lead waits for the recipient's local daytime window.

The window is the client's own (`quiet_hours_start`/`quiet_hours_end`) when both are set,
else the `QUIET_HOURS` setting. Openings are wall-clock times in the recipient's zone, so on
a DST change day an opening may happen twice (fall back) or not at all (spring forward): the
next opening is always the first moment after `now` at which the local clock is at or past it.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from django.conf import settings

# Zones never skip more than a day (Samoa, 2011): openings up to two days ahead cover every gap.
DAYS_AHEAD = 3


class HasWindow(Protocol):
    quiet_hours_start: time | None
    quiet_hours_end: time | None


def parse_window(text: str) -> tuple[time, time]:
    """ "08:00-21:00" -> (08:00, 21:00); ValueError with a readable message otherwise."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError as exc:
        raise ValueError(f"quiet-hours window {text!r} must look like 08:00-21:00 (start-end, 24-hour)") from exc
    if start == end:
        raise ValueError(f"quiet-hours window {text!r} is empty: start and end must differ")
    return start, end


def default_window() -> tuple[time, time]:
    return parse_window(settings.QUIET_HOURS)


def window_for(client: HasWindow | None) -> tuple[time, time]:
    """The client's own window when it set one (both ends), else the QUIET_HOURS default."""
    if client is not None and client.quiet_hours_start is not None and client.quiet_hours_end is not None:
        return client.quiet_hours_start, client.quiet_hours_end
    return default_window()


def _inside(local: time, start: time, end: time) -> bool:
    return start <= local < end if start < end else (local >= start or local < end)


def _openings(day: date, start: time, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the local clock reaches `start` on `day`: one usually, two on a
    fall-back day (the wall time happens twice), and the end of the gap on a spring-forward day
    where the wall time does not exist."""
    wall = datetime.combine(day, start)
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return found or [_end_of_gap(wall, zone)]


def _end_of_gap(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant whose local time is past a wall time skipped by a spring-forward jump."""
    low, high = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    # Local time only moves forward between the two readings: bisect to the second.
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def next_allowed_time(now: datetime, tz: str, start: time, end: time) -> datetime | None:
    """None when `now` is inside the local window [start, end); else the UTC time it opens,
    always later than `now`."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    if _inside(local.time(), start, end):
        return None
    candidates = [
        opening
        for offset in range(DAYS_AHEAD)
        for opening in _openings(local.date() + timedelta(days=offset), start, zone)
        if opening > now
    ]
    return min(candidates)
