"""The daily aggregation: one DailyStats row per client and local day, computed set-based.

Each hourly run recomputes every client's local yesterday (late provider webhooks still move
messages to delivered/undelivered during the next day) and fills any day of the last
ANALYTICS_BACKFILL_DAYS that has no row, so a run after a gap of days catches up exactly.
The number of queries does not depend on the number of clients: one to list clients, one to
find the rows already there, one per metric family, and the upsert in batches.
"""

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import COUNTER_FIELDS, DailyStats
from analytics.zones import ClientZones, day_bounds, local_today, resolve_zones
from messaging.models import Client
from scheduling.context import JobContext

logger = logging.getLogger("analytics.daily")

UPSERT_BATCH = 2000


def report_broken(zones: ClientZones, ctx: JobContext | None) -> None:
    """Count each client with a bad timezone as a failed item (the run becomes partial)."""
    for client, error in zones.broken:
        if ctx is not None:
            ctx.item_failed(f"client {client.pk}", error)
        else:
            logger.warning("client_bad_timezone", extra={"client_id": client.pk, "error": str(error)})


def days_to_compute(zones: Mapping[int, ZoneInfo], now: datetime, backfill_days: int) -> dict[int, list[date]]:
    """Per client: its local yesterday, and every earlier day of the back-fill window without
    a row. A day is only ever computed once it has ended in the client's zone."""
    yesterdays = {client_id: local_today(now, zone) - timedelta(days=1) for client_id, zone in zones.items()}
    if not yesterdays:
        return {}
    span = max(1, backfill_days)
    first = min(yesterdays.values()) - timedelta(days=span - 1)
    existing = set(
        DailyStats.objects.filter(date__gte=first, date__lte=max(yesterdays.values()))
        .order_by()
        .values_list("client_id", "date")
    )
    targets: dict[int, list[date]] = {}
    for client_id, yesterday in yesterdays.items():
        window = [yesterday - timedelta(days=back) for back in range(span - 1, 0, -1)]
        targets[client_id] = [day for day in window if (client_id, day) not in existing] + [yesterday]
    return targets


def day_windows(targets: Mapping[int, Iterable[date]], zones: Mapping[int, ZoneInfo]) -> list[metrics.Window]:
    """One window per (client id, local date): the day's bounds in UTC, in the client's zone."""
    return [
        metrics.Window(client_id, day, *day_bounds(day, zones[client_id]))
        for client_id, days in targets.items()
        for day in days
    ]


def compute_daily_stats(
    targets: Mapping[int, Iterable[date]], zones: Mapping[int, ZoneInfo], now: datetime | None = None
) -> int:
    """Compute and upsert DailyStats for the given (client id -> local dates); returns rows written."""
    return len(upsert_daily_stats(day_windows(targets, zones), now))


def upsert_daily_stats(
    windows: list[metrics.Window], now: datetime | None = None, medians: Mapping[metrics.Key, int] | None = None
) -> list[DailyStats]:
    """Compute and upsert the DailyStats of day windows; returns the rows written. `medians`,
    when the caller computed them with other windows in one pass, saves that query."""
    now = now or timezone.now()
    if not windows:
        return []
    families = [
        metrics.count_leads(windows),
        metrics.count_messages(windows),
        metrics.count_scheduled(windows),
        metrics.count_calls(windows),
    ]
    if medians is None:
        medians = metrics.median_first_response(windows)
    rows = []
    for window in windows:
        key = (window.client_id, window.label)
        values: dict[str, int] = dict.fromkeys(COUNTER_FIELDS, 0)
        for family in families:
            values.update(family.get(key, {}))
        rows.append(
            DailyStats(
                client_id=window.client_id,
                date=window.label,
                median_first_response_seconds=medians.get(key),
                computed_at=now,
                **values,
            )
        )
    # One row order for every writer: `daily` and `weekly-summary` (same minute) may upsert
    # the same rows, and opposite orders could deadlock.
    rows.sort(key=lambda row: (row.client_id, row.date))
    with transaction.atomic():
        DailyStats.objects.bulk_create(
            rows,
            batch_size=UPSERT_BATCH,
            update_conflicts=True,
            unique_fields=["client", "date"],
            update_fields=[*COUNTER_FIELDS, "median_first_response_seconds", "computed_at"],
        )
    return rows


def run_daily_analytics_job(now: datetime | None = None, ctx: JobContext | None = None) -> dict:
    """Upsert every client's local yesterday and back-fill missing days; returns counts.

    A client whose stored timezone is invalid is reported as a failed item (through `ctx`
    when given) and the others are computed all the same.
    """
    now = now or timezone.now()
    zones = resolve_zones(Client.objects.only("id", "name", "timezone").order_by())
    report_broken(zones, ctx)
    targets = days_to_compute(zones.zones, now, settings.ANALYTICS_BACKFILL_DAYS)
    written = compute_daily_stats(targets, zones.zones, now)
    backfilled = sum(len(days) - 1 for days in targets.values())
    if ctx is not None and targets:
        ctx.item_succeeded(len(targets))
    result = {
        "clients": len(targets),
        "clients_failed": len(zones.broken),
        "days_computed": written,
        "days_backfilled": backfilled,
    }
    (ctx.log if ctx is not None else logger).info("daily_stats_computed", extra=result)
    return result
