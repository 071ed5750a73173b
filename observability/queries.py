"""The message-queue reads /metrics needs: grouped counts, one query each, no rows loaded."""

from datetime import datetime

from django.db.models import Count, Min

from messaging.models import DeliveryAttempt, ScheduledMessage
from messaging.models.queue import Status


def message_counts() -> dict[tuple[str, str], int]:
    """(status, channel) -> messages in that state now."""
    rows = ScheduledMessage.objects.order_by().values("status", "channel").annotate(n=Count("pk"))
    return {(row["status"], row["channel"]): row["n"] for row in rows}


def oldest_due_since(now: datetime) -> datetime | None:
    """When the longest-waiting claimable message became due (what process-scheduled would
    take now: pending, send_at and next_attempt_at both past), or None if none is due.

    next_attempt_at starts equal to send_at and only ever moves later (backoff, quiet hours,
    a retry now), so the smallest one is when the oldest became due; PostgreSQL reads it
    from the head of the claim index (sched_claim_next) however long the backlog is.
    """
    due = ScheduledMessage.objects.filter(status=Status.PENDING, send_at__lte=now, next_attempt_at__lte=now)
    return due.aggregate(since=Min("next_attempt_at"))["since"]


def attempt_counts() -> dict[str, int]:
    """outcome -> provider calls recorded with that outcome (DeliveryAttempt).

    Not per channel: DeliveryAttempt has no channel of its own, and joining a million
    attempts to their messages costs four times the count (docs/performance.md).
    """
    rows = DeliveryAttempt.objects.order_by().values("outcome").annotate(n=Count("pk"))
    return {row["outcome"]: row["n"] for row in rows}
