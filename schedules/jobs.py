"""The job that fires client schedules: `process-schedules`, every minute."""

from datetime import timedelta

from django.utils import timezone

from schedules.services import due_schedules, refire_stale, tick_schedule
from scheduling.context import JobContext
from scheduling.registry import register


@register("process-schedules", schedule="* * * * *", grace=timedelta(minutes=5), max_runtime=timedelta(minutes=5))
def process_schedules(ctx: JobContext) -> None:
    """Fire each client schedule's due occurrence once; record the ones found too late as missed."""
    now = timezone.now()
    ctx.add("refired", refire_stale(now))
    for item in due_schedules(now):
        if ctx.should_stop():
            ctx.add("deferred")
            continue
        try:
            result = tick_schedule(item, now)
        except Exception as exc:  # one schedule's error is its own failed item
            ctx.log.exception("schedule_tick_error", extra={"schedule": item.pk})
            ctx.item_failed(item, exc)
            continue
        ctx.add("fired", result.fired)
        ctx.add("missed", result.missed)
        if result.failed:
            last = item.executions.order_by("-id").first()
            ctx.item_failed(item, last.error if last else "failed")
        else:
            ctx.item_succeeded()
        ctx.between_units()
