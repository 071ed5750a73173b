"""Quiet hours: SMS to a lead waits for the recipient's local daytime window."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_window(text: str) -> tuple[time, time]:
    """ "08:00-21:00" -> (08:00, 21:00); ValueError with a readable message otherwise."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError as exc:
        raise ValueError(f"quiet-hours window {text!r} must look like 08:00-21:00") from exc
    return start, end


def next_allowed_time(now: datetime, tz: str, start: time, end: time) -> datetime | None:
    """None when `now` is inside the local window [start, end); else the UTC time it opens."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    current = local.time()
    inside = start <= current < end if start < end else (current >= start or current < end)
    if inside:
        return None
    day = local.date() if current < start else local.date() + timedelta(days=1)
    # Build the local opening time as a wall-clock time, then convert once to UTC.
    opening = datetime.combine(day, start, tzinfo=zone)
    return opening.astimezone(UTC)
