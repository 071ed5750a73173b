"""The weekly summary: each opted-in client's owner gets, on Monday from 08:00 in the client's
zone, an HTML + text email about the last full week (Monday to Sunday, local dates) with the
change against the week before.

Keyed by the summarised ISO week (`weekly-summary:<client id>:<year>-W<week>`), so a run that
is late (Tuesday), repeated, or the first after a gap of days sends exactly one summary, for
the last full week only. Counts come from DailyStats (computed first where missing); the
median response time is computed over the whole week, since daily medians cannot be combined.
"""

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.template.loader import render_to_string
from django.utils import timezone

from analytics import metrics
from analytics.daily import day_windows, report_broken, upsert_daily_stats
from analytics.models import DailyStats
from analytics.summary_format import WeekFigures, format_week, summary_rows
from analytics.zones import local_midnight, local_today, resolve_zones
from messaging.bulk import MessageSpec, describe_errors, schedule_messages
from messaging.models import Channel, Client, ScheduledMessage
from scheduling.context import JobContext

logger = logging.getLogger("analytics.weekly_summary")

SEND_FROM_LOCAL = time(8, 0)
SOURCE = "weekly-summary"


@dataclass(frozen=True)
class DueSummary:
    client: Client
    zone: ZoneInfo
    week_start: date  # first day of the summarised week (a Monday, but for a client's own schedule)
    given_key: str = ""  # a client schedule's occurrence key; else the ISO week's

    @property
    def key(self) -> str:
        if self.given_key:
            return self.given_key
        year, week, _ = self.week_start.isocalendar()
        return f"weekly-summary:{self.client.pk}:{year}-W{week:02d}"

    @property
    def previous_start(self) -> date:
        return self.week_start - timedelta(days=7)

    @property
    def days(self) -> list[date]:
        """Both weeks: the one before, then the summarised one."""
        return [self.previous_start + timedelta(days=n) for n in range(14)]

    def __str__(self) -> str:
        return f"client {self.client.pk} week of {self.week_start}"


def summary_week(now: datetime, zone: ZoneInfo) -> date | None:
    """Monday of the last full local week when its summary is due (this Monday 08:00 local
    has passed), else None. Only the latest week is ever due: after a gap, older weeks are
    not sent late."""
    today = local_today(now, zone)
    this_monday = today - timedelta(days=today.weekday())
    if now < datetime.combine(this_monday, SEND_FROM_LOCAL, tzinfo=zone):
        return None
    return this_monday - timedelta(days=7)


def find_due_summaries(now: datetime, ctx: JobContext | None = None) -> list[DueSummary]:
    # A client with its own weekly-summary schedule gets it then (schedules), not on Monday.
    own_time = Client.objects.filter(schedules__kind="weekly-summary", schedules__enabled=True).values("pk")
    clients = Client.objects.filter(weekly_summary_enabled=True).exclude(owner_email="").exclude(pk__in=own_time)
    zones = resolve_zones(clients)
    report_broken(zones, ctx)
    by_id = {client.pk: client for client in clients}
    due = []
    for client_id, zone in zones.zones.items():
        week_start = summary_week(now, zone)
        if week_start is not None:
            due.append(DueSummary(by_id[client_id], zone, week_start))
    sent = set(
        ScheduledMessage.objects.filter(idempotency_key__in=[d.key for d in due]).values_list(
            "idempotency_key", flat=True
        )
    )
    return [d for d in due if d.key not in sent]


class DayCounts(NamedTuple):
    """The DailyStats counters a summary adds up (plain tuples: 14 per client, read by the thousand)."""

    leads_created: int
    inbound_messages: int
    outbound_messages: int
    missed_calls: int
    calls_texted_back: int

    @classmethod
    def of(cls, row: DailyStats) -> "DayCounts":
        return cls(*(getattr(row, name) for name in cls._fields))


DayRows = dict[tuple[int, date], DayCounts]


def _stats_rows(due: list[DueSummary]) -> DayRows:
    if not due:
        return {}
    rows = (
        DailyStats.objects.filter(
            client_id__in=[d.client.pk for d in due],
            date__gte=min(d.previous_start for d in due),
            date__lte=max(d.days[-1] for d in due),
        )
        .order_by()
        .values_list("client_id", "date", *DayCounts._fields)
    )
    return {(client_id, day): DayCounts(*counts) for client_id, day, *counts in rows}


def load_week_stats(due: list[DueSummary], now: datetime) -> tuple[DayRows, dict[tuple[int, date], int]]:
    """The DailyStats counters of both weeks for every due client, aggregating the days still missing
    first (so a summary never shows zeros for want of aggregation), and the weeks' medians.
    The medians of the missing days and of the weeks come from one pass over the messages."""
    rows = _stats_rows(due)
    weeks = _week_windows(due)
    missing = {d.client.pk: [day for day in d.days if (d.client.pk, day) not in rows] for d in due}
    missing = {client_id: days for client_id, days in missing.items() if days}
    if not missing:
        return rows, metrics.median_first_response(weeks)
    days = day_windows(missing, {d.client.pk: d.zone for d in due})
    day_medians, week_medians = metrics.median_first_response_sets([days, weeks])
    written = upsert_daily_stats(days, now, medians=day_medians)
    logger.info("weekly_summary_backfilled", extra={"clients": len(missing), "days": len(written)})
    rows.update(((row.client_id, row.date), DayCounts.of(row)) for row in written)
    return rows, week_medians


def _figures(rows: DayRows, client_id: int, start: date, median: int | None) -> WeekFigures:
    week = [rows[key] for n in range(7) if (key := (client_id, start + timedelta(days=n))) in rows]
    return WeekFigures(
        leads=sum(r.leads_created for r in week),
        inbound=sum(r.inbound_messages for r in week),
        outbound=sum(r.outbound_messages for r in week),
        missed_calls=sum(r.missed_calls for r in week),
        texted_back=sum(r.calls_texted_back for r in week),
        median_response_seconds=median,
    )


def _week_windows(due: list[DueSummary]) -> list[metrics.Window]:
    return [
        metrics.Window(d.client.pk, start, local_midnight(start, d.zone), local_midnight(end, d.zone))
        for d in due
        for start, end in ((d.previous_start, d.week_start), (d.week_start, d.week_start + timedelta(days=7)))
    ]


def render_summary(client: Client, week_start: date, current: WeekFigures, previous: WeekFigures) -> dict[str, str]:
    """Subject, text and html of one summary."""
    week = format_week(week_start, week_start + timedelta(days=6))
    context = {"client": client, "week": week, "rows": summary_rows(current, previous)}
    return {
        "subject": f"Weekly summary for {client.name}: {week}",
        "body": render_to_string("emails/weekly_summary.txt", context),
        "html": render_to_string("emails/weekly_summary.html", context),
    }


def _summary_spec(item: DueSummary, rows: DayRows, medians: dict, now: datetime) -> MessageSpec:
    client_id = item.client.pk
    current = _figures(rows, client_id, item.week_start, medians.get((client_id, item.week_start)))
    previous = _figures(rows, client_id, item.previous_start, medians.get((client_id, item.previous_start)))
    return MessageSpec(
        channel=Channel.EMAIL,
        to=item.client.owner_email,
        client=item.client,
        idempotency_key=item.key,
        send_at=now,
        **render_summary(item.client, item.week_start, current, previous),
    )


def _failed(item: DueSummary, error: Exception | str, ctx: JobContext | None, failures: list[str] | None) -> None:
    """One client's failure never stops the others' summaries."""
    if failures is not None:
        failures.append(f"{item}: {error}")
    if ctx is not None:
        ctx.item_failed(item, error)
    else:
        logger.warning("weekly_summary_failed", extra={"item": str(item), "error": str(error)})


def _render_all(
    due: list[DueSummary],
    rows: DayRows,
    medians: dict,
    now: datetime,
    ctx: JobContext | None,
    failures: list[str] | None = None,
) -> list[tuple[DueSummary, MessageSpec]]:
    """Each due summary rendered; one that fails to render is that client's failed item.
    Near the deadline the rest are left for the next run (counted as `deferred`)."""
    rendered = []
    for item in due:
        if ctx is not None and ctx.should_stop():
            ctx.add("deferred")
            continue
        try:
            rendered.append((item, _summary_spec(item, rows, medians, now)))
        except Exception as exc:
            logger.exception("weekly_summary_render_failed", extra={"item": str(item)})
            _failed(item, exc, ctx, failures)
    return rendered


def send_weekly_summaries(now: datetime | None = None, ctx: JobContext | None = None) -> list[ScheduledMessage]:
    """Queue every due summary not queued yet; returns the messages queued by this call.

    A fixed number of queries whatever the number of clients: the due clients, their stats
    (and the days still to aggregate), the medians, then one INSERT per batch of summaries."""
    now = now or timezone.now()
    return queue_summaries(find_due_summaries(now, ctx), now, ctx)


def queue_summaries(
    due: list[DueSummary], now: datetime, ctx: JobContext | None = None, failures: list[str] | None = None
) -> list[ScheduledMessage]:
    """Render and queue `due` (the Monday job's, or one client schedule's occurrence); each
    failure is the client's failed item in `ctx` and, when given, a line in `failures`."""
    log = ctx.log if ctx is not None else logger
    if not due:
        return []
    rows, medians = load_week_stats(due, now)
    rendered = _render_all(due, rows, medians, now, ctx, failures)
    result = schedule_messages([spec for _, spec in rendered], source=SOURCE, now=now)
    for index, (item, _) in enumerate(rendered):
        if index in result.errors:
            _failed(item, describe_errors(result.errors[index]), ctx, failures)
        elif ctx is not None:
            ctx.item_succeeded()
    log.info("weekly_summaries_queued", extra={"queued": len(result.created), "due": len(due)})
    if ctx is not None:
        ctx.add("summaries_queued", len(result.created))
    return result.created


def process_weekly_summaries() -> None:
    """Queue the weekly summary of every client that is due one (public entry point)."""
    send_weekly_summaries()
