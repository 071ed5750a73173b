"""Campaigns' job: adapts the tick (which takes `now`) to a run."""

from datetime import datetime, timedelta

from campaigns.tick import process_campaigns
from scheduling.context import JobContext
from scheduling.registry import register


@register(
    "process-campaigns",
    schedule="* * * * *",
    grace=timedelta(minutes=3),
    max_runtime=timedelta(minutes=4),
    # Room is claimed under each campaign's row lock, so overlapping ticks (cron and an HTTP
    # trigger, two hosts) are safe; the second waits on the first's short transactions.
    allow_concurrent=True,
)
def tick_campaigns(ctx: JobContext, now: datetime | None = None) -> None:
    """Launch campaign messages within each campaign's caps and send window."""
    # No `now`: the tick judges the caps on the database's clock (one clock for every host).
    result = process_campaigns(now, should_stop=ctx.should_stop)
    ctx.item_succeeded(result.visited - len(result.errors))
    for campaign_id, error in result.errors:
        ctx.item_failed(f"campaign {campaign_id}", error)
    for name in ("launched", "skipped", "failed", "completed", "outside_window", "deferred"):
        ctx.data[name if name != "failed" else "recipients_failed"] = getattr(result, name)
    ctx.log.info("campaigns_ticked", extra={"launched": result.launched, "visited": result.visited})
