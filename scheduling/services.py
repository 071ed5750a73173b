"""Scheduling operations: keep Job rows in step with the registry, watch, prune, report."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from scheduling import alerts, locks, registry, run_totals, schedule
from scheduling.models import Health, Job, JobRun, RunStatus


def ensure_job(spec: registry.JobSpec) -> Job:
    job, created = Job.objects.get_or_create(name=spec.name, defaults={"description": spec.description[:200]})
    return job


def sync_jobs() -> list[Job]:
    """One Job row per registered job (created on first sight), in registry order."""
    specs = registry.all_jobs()
    existing = {job.name: job for job in Job.objects.filter(name__in=[s.name for s in specs])}
    missing = [Job(name=s.name, description=s.description[:200]) for s in specs if s.name not in existing]
    if missing:
        Job.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {job.name: job for job in Job.objects.filter(name__in=[s.name for s in specs])}
    return [existing[s.name] for s in specs]


def check_overdue_jobs(now: datetime, jobs: list[Job] | None = None) -> list[str]:
    """Alert (once per incident) for every enabled job that missed its schedule + grace."""
    alerted = []
    for job in sync_jobs() if jobs is None else jobs:
        if job.is_overdue(now) and alerts.notify_overdue(job, now):
            alerted.append(job.name)
    return alerted


def reap_abandoned_runs(now: datetime) -> list[int]:
    """Mark `abandoned` the runs left `running` by a process that died.

    A live run holds its job's lock for its whole life, so a running row whose lock nobody
    holds belongs to a dead process. The conditional update keeps a run that finished in the
    meantime as it is.
    """
    reaped = []
    for run in JobRun.objects.filter(status=RunStatus.RUNNING).select_related("job"):
        spec = registry.get(run.job.name)
        if spec is not None and spec.allow_concurrent:
            # No lock to ask; a run past twice its maximum run time is presumed dead.
            if run.started_at + 2 * spec.max_runtime > now:
                continue
        elif locks.is_held(run.job.name):
            continue
        duration = int((now - run.started_at).total_seconds() * 1000)
        updated = JobRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.ABANDONED,
            finished_at=now,
            duration_ms=max(duration, 0),
            error="abandoned: the process running it died (its lock was no longer held)",
        )
        if updated:
            reaped.append(run.pk)
    return reaped


def prune_runs(now: datetime, batch_size: int = 5000) -> int:
    """Delete runs older than CRON_RUN_RETENTION_DAYS, a batch at a time (short locks).

    Each batch is first folded into RunTotal in the same transaction, so the run totals
    /metrics reports never go down.
    """
    cutoff = now - timedelta(days=settings.CRON_RUN_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(
            # A run still marked running is the watchdog's to settle (abandoned), not prune's.
            JobRun.objects.filter(started_at__lt=cutoff)
            .exclude(status=RunStatus.RUNNING)
            .order_by("started_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        with transaction.atomic():
            batch = JobRun.objects.filter(pk__in=ids)
            run_totals.fold_runs(batch)
            deleted += batch.delete()[0]


def run_rates(since: datetime) -> dict[int, dict[str, Any]]:
    """Per job id, of its finished, non-skipped runs since `since`: the share that succeeded,
    and apart from it, the number and share that were partial (a partial run is not a success).
    """
    counted = ~Q(runs__status__in=[RunStatus.SKIPPED, RunStatus.RUNNING])
    recent = Q(runs__started_at__gte=since)
    rows = Job.objects.annotate(
        total=Count("runs", filter=counted & recent),
        good=Count("runs", filter=Q(runs__status=RunStatus.SUCCEEDED) & recent),
        partial=Count("runs", filter=Q(runs__status=RunStatus.PARTIAL) & recent),
    ).values_list("pk", "total", "good", "partial")
    return {
        pk: {
            "success": round(good / total, 4) if total else None,
            "partial": round(partial / total, 4) if total else None,
            "partial_runs": partial,
        }
        for pk, total, good, partial in rows
    }


def job_overview(now: datetime | None = None) -> list[dict[str, Any]]:
    """Every job's schedule, last outcome, next run and health: for status, API, dashboard."""
    now = now or timezone.now()
    jobs = sync_jobs()
    rates = run_rates(now - timedelta(days=7))
    overview = []
    for job in jobs:
        next_run = job.next_run_at(now) if job.enabled else None
        rate = rates.get(job.pk) or {"success": None, "partial": None, "partial_runs": 0}
        overview.append(
            {
                "name": job.name,
                "description": job.description,
                "schedule": job.cron,
                "schedule_text": schedule.describe(job.cron),
                "timezone": job.tz,
                "enabled": job.enabled,
                "last_run_at": job.last_run_at,
                "last_status": job.last_status or None,
                "last_success_at": job.last_success_at,
                "next_run_at": next_run,
                "overdue": job.is_overdue(now),
                "health": job.health(now),
                "success_rate_7d": rate["success"],
                "partial_rate_7d": rate["partial"],
                "partial_runs_7d": rate["partial_runs"],
                "consecutive_partials": job.consecutive_partials,
            }
        )
    return overview


def is_healthy(overview: list[dict[str, Any]]) -> bool:
    """False when a job is failing or overdue; a degraded job (a few partial runs) is shown, not an outage."""
    return all(entry["health"] in (Health.OK, Health.DEGRADED, Health.DISABLED) for entry in overview)
