"""Execution figures of one job over a window: counts, rates, durations, missed slots.

Durations are percentiles computed by PostgreSQL (`percentile_cont`) over the job's runs in the
window, read through the (job, started_at) index; other databases (the SQLite demo) compute
them from the durations in Python, the same way (linear interpolation between ranks).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Q, Sum

from scheduling import schedule
from scheduling.models import Job, JobRun, RunStatus

WORKED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.ABANDONED)


def percentile(sorted_values: list[int], fraction: float) -> float | None:
    """percentile_cont over an already sorted list."""
    if not sorted_values:
        return None
    rank = fraction * (len(sorted_values) - 1)
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _durations(runs: Any) -> tuple[float | None, float | None]:
    finished = runs.filter(status__in=FINISHED, duration_ms__isnull=False)
    if connection.vendor == "postgresql":
        sql, params = finished.values("duration_ms").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),"
                " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)"
                f" FROM ({sql}) AS finished",
                params,
            )
            p50, p95 = cursor.fetchone()
        return p50, p95
    values = sorted(finished.values_list("duration_ms", flat=True))
    return percentile(values, 0.5), percentile(values, 0.95)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def missed_slots(job: Job, since: datetime, now: datetime) -> list[datetime]:
    """Scheduled slots in the window (those already past their grace) with no run recorded for
    them (a skipped run, e.g. disabled or overloaded, is recorded and shown apart: not missed)."""
    if not job.cron:
        return []
    start = max(since, job.created_at)
    expected = schedule.slots_between(job.cron, job.tz, start, now - job.grace)
    if not expected:
        return []
    taken = set(
        JobRun.objects.filter(job=job, planned_at__gte=expected[0], planned_at__lte=expected[-1]).values_list(
            "planned_at", flat=True
        )
    )
    return [slot for slot in expected if slot not in taken]


def job_stats(job: Job, days: int, now: datetime) -> dict[str, Any]:
    since = now - timedelta(days=days)
    runs = JobRun.objects.filter(job=job, started_at__gte=since, started_at__lte=now)
    by_status = dict(runs.values_list("status").annotate(n=Count("id")).order_by())
    totals = runs.aggregate(
        processed=Sum("processed"),
        max_ms=Max("duration_ms", filter=Q(status__in=FINISHED)),
    )
    finished = sum(by_status.get(status, 0) for status in FINISHED)
    p50, p95 = _durations(runs)
    last_failure = runs.filter(status__in=[RunStatus.FAILED, RunStatus.ABANDONED]).order_by("-started_at").first()
    missed = missed_slots(job, since, now)
    return {
        "job": job.name,
        "days": days,
        "since": since,
        "runs": sum(by_status.values()),
        "by_status": {status: by_status.get(status, 0) for status in RunStatus.values},
        "success_rate": round(by_status.get(RunStatus.SUCCEEDED, 0) / finished, 4) if finished else None,
        "partial_rate": round(by_status.get(RunStatus.PARTIAL, 0) / finished, 4) if finished else None,
        "duration_ms": {"p50": _ms(p50), "p95": _ms(p95), "max": totals["max_ms"]},
        "items_processed": totals["processed"] or 0,
        "last_failure": None
        if last_failure is None
        else {
            "run_id": last_failure.pk,
            "started_at": last_failure.started_at,
            "status": last_failure.status,
            "error": (last_failure.error.splitlines() or [""])[0][:500],
        },
        "missed_slots": len(missed),
        "missed_recent": missed[-10:],
    }
