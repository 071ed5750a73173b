"""Analytics jobs: daily stats with usage alerts, weekly summaries (registered on import)."""

from datetime import timedelta

from django.utils import timezone

from analytics.daily import run_daily_analytics_job
from analytics.usage_alerts import check_all_client_alerts
from analytics.weekly_summary import send_weekly_summaries
from scheduling.context import JobContext
from scheduling.registry import register


@register("daily", schedule="0 * * * *", grace=timedelta(minutes=30), max_runtime=timedelta(minutes=20))
def daily(ctx: JobContext) -> None:
    """Upsert each client's daily stats for its local yesterday (back-filling gaps), then usage alerts."""
    now = timezone.now()
    ctx.data.update(run_daily_analytics_job(now=now, ctx=ctx))
    check_all_client_alerts(now=now, ctx=ctx)


@register("weekly-summary", schedule="0 * * * *", grace=timedelta(minutes=30), max_runtime=timedelta(minutes=20))
def weekly_summary(ctx: JobContext) -> None:
    """Email each opted-in client its weekly summary, Monday from 08:00 in the client's zone."""
    send_weekly_summaries(now=timezone.now(), ctx=ctx)
