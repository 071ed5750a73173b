"""How the weekly summary words its numbers: durations, and the change against the week before."""

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class WeekFigures:
    leads: int = 0
    inbound: int = 0
    outbound: int = 0
    missed_calls: int = 0
    texted_back: int = 0
    median_response_seconds: int | None = None


@dataclass(frozen=True)
class SummaryRow:
    label: str
    value: str
    change: str


def describe_change(current: int, previous: int) -> str:
    """'+12% vs previous week'; a previous week of zero has no percentage, so say it in words."""
    if previous == 0:
        return "no change vs previous week" if current == 0 else "up from 0 the previous week"
    percent = round((current - previous) * 100 / previous)
    if percent == 0:
        return "no change vs previous week"
    return f"{percent:+d}% vs previous week"


def format_duration(seconds: int | None) -> str:
    if seconds is None:
        return "no replies measured"
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def describe_duration_change(current: int | None, previous: int | None) -> str:
    if current is None:
        return ""
    if previous is None:
        return "no replies measured the previous week"
    words = describe_change(current, previous)
    if current == previous or previous == 0:
        return words
    return f"{words}, {'slower' if current > previous else 'faster'}"


def summary_rows(current: WeekFigures, previous: WeekFigures) -> list[SummaryRow]:
    counters = [
        ("New leads", current.leads, previous.leads),
        ("Messages received", current.inbound, previous.inbound),
        ("Messages sent", current.outbound, previous.outbound),
        ("Missed calls", current.missed_calls, previous.missed_calls),
        ("Missed calls texted back", current.texted_back, previous.texted_back),
    ]
    rows = [SummaryRow(label, str(now), describe_change(now, before)) for label, now, before in counters]
    rows.append(
        SummaryRow(
            "Median response time",
            format_duration(current.median_response_seconds),
            describe_duration_change(current.median_response_seconds, previous.median_response_seconds),
        )
    )
    return rows


def format_week(start: date, end: date) -> str:
    """'20–26 Oct 2025', '27 Oct – 2 Nov 2025', '29 Dec 2025 – 4 Jan 2026'."""
    if start.year != end.year:
        return f"{start.day} {start:%b %Y} – {end.day} {end:%b %Y}"
    if start.month != end.month:
        return f"{start.day} {start:%b} – {end.day} {end:%b %Y}"
    return f"{start.day}–{end.day} {end:%b %Y}"
