"""Missed-call text-back, agent check, follow-ups: registered on import.

Each job reads the time once and hands it to a plain function in its own module, so tests can
call the same function with a frozen time.
"""

from datetime import timedelta

from django.utils import timezone

from messaging.agent_check import check_agent_stalls
from messaging.follow_ups import send_follow_up_reminders
from messaging.missed_calls import check_missed_calls
from scheduling.context import JobContext
from scheduling.registry import register


# Grace: one missed tick is normal under load; two in a row is worth an alert.
# Max runtime: below the interval, so a slow run leaves the rest to the next tick.
@register("check-missed-calls", schedule="*/5 * * * *", grace=timedelta(minutes=10), max_runtime=timedelta(minutes=4))
def check_missed_calls_job(ctx: JobContext) -> None:
    """Text back missed calls from the client's number and notify the owner."""
    check_missed_calls(ctx, timezone.now())


@register("agent-check", schedule="*/15 * * * *", grace=timedelta(minutes=20), max_runtime=timedelta(minutes=10))
def agent_check_job(ctx: JobContext) -> None:
    """Escalate conversations waiting on a reply past the client's threshold in business hours."""
    check_agent_stalls(ctx, timezone.now())


@register("follow-ups", schedule="*/30 * * * *", grace=timedelta(minutes=40), max_runtime=timedelta(minutes=20))
def follow_ups_job(ctx: JobContext) -> None:
    """Remind owners of follow-ups that came due and of qualified leads idle for 7+ days."""
    send_follow_up_reminders(ctx, timezone.now())
