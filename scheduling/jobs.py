"""The jobs scheduling owns: watching the other jobs, and pruning old runs."""

from datetime import timedelta

from django.utils import timezone

from scheduling.context import JobContext
from scheduling.registry import register
from scheduling.services import check_overdue_jobs, prune_runs, reap_abandoned_runs, sync_jobs


@register(
    "watchdog",
    schedule="*/5 * * * *",
    grace=timedelta(minutes=10),
    max_runtime=timedelta(minutes=2),
    guarded=False,  # an overloaded machine is when jobs most need watching
)
def watchdog(ctx: JobContext) -> None:
    """Alert on overdue jobs; mark runs left by dead processes as abandoned."""
    now = timezone.now()
    jobs = sync_jobs()
    abandoned = reap_abandoned_runs(now)
    overdue = check_overdue_jobs(now, jobs)
    ctx.item_succeeded(len(jobs))
    ctx.data.update({"abandoned": len(abandoned), "overdue_alerts": len(overdue)})
    if abandoned or overdue:
        ctx.log.warning("watchdog_findings", extra={"abandoned_runs": abandoned, "overdue_jobs": overdue})


@register("prune", schedule="17 3 * * *", grace=timedelta(hours=2), max_runtime=timedelta(minutes=30))
def prune(ctx: JobContext) -> None:
    """Delete job runs older than CRON_RUN_RETENTION_DAYS."""
    deleted = prune_runs(timezone.now())
    ctx.item_succeeded(deleted)
    ctx.data["deleted"] = deleted
