"""Messaging's jobs: delivery of the queue here; the jobs users buy it for in business_jobs."""

from datetime import timedelta

from messaging import business_jobs  # noqa: F401  (registers its jobs on import)
from scheduling.context import JobContext
from scheduling.registry import register


@register(
    "process-scheduled",
    schedule="* * * * *",
    grace=timedelta(minutes=3),
    max_runtime=timedelta(minutes=4),
    # Claiming is SKIP LOCKED, so overlapping runs (crontab + HTTP, several hosts) share
    # the queue instead of waiting on each other.
    allow_concurrent=True,
)
def process_scheduled(ctx: JobContext) -> None:
    """Deliver due scheduled SMS and email."""
    # Imported here: the provider SDKs cost ~0.1 s to import, which every other cron command
    # (started every few minutes) would otherwise pay.
    from messaging.delivery import deliver_due_messages

    deliver_due_messages(ctx)
