"""The `weekly-summary` kind of client schedule: the client's summary at a time of its choosing.

A client with an enabled weekly-summary schedule gets its summary at each occurrence instead of
Monday 08:00 (the `weekly-summary` job leaves it out), covering the seven local days before the
occurrence, queued under the occurrence's key (`schedule:<id>:<occurrence UTC>`).
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from analytics.weekly_summary import DueSummary, queue_summaries
from schedules.models import ClientSchedule, Kind
from schedules.services import handles


@handles(Kind.WEEKLY_SUMMARY)
def summary_occurrence(item: ClientSchedule, occurrence: datetime, key: str) -> str:
    client = item.client
    if not client.owner_email:
        raise ValueError(f"client {client.pk} has no owner email to send its weekly summary to")
    zone = ZoneInfo(item.tz)
    week_start = occurrence.astimezone(zone).date() - timedelta(days=7)
    failures: list[str] = []
    queued = queue_summaries([DueSummary(client, zone, week_start, given_key=key)], occurrence, failures=failures)
    if failures:
        raise RuntimeError("; ".join(failures))
    return f"summary of {week_start} to {week_start + timedelta(days=6)} queued" if queued else "already queued"
