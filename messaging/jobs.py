"""Messaging's jobs. Each adapts a domain function (which takes `now` and plain arguments) to
a run: it reads the time once, isolates items through the context, and counts outcomes."""

import argparse
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

from django.utils import timezone

from messaging.automations import agent_check, follow_ups, missed_calls
from messaging.automations.notify import OwnerUnreachable
from messaging.models import Client
from scheduling.context import JobContext
from scheduling.registry import CliOption, register

T = TypeVar("T")
SKIPPED_UNREACHABLE = "skipped_owner_unreachable"


class OwnerGate:
    """One run's view of unreachable owners. An owner found unreachable is one failed item,
    the first time (recorded on the client); while its contact stays the same, its items are
    counted as skipped_owner_unreachable, neither sent nor failed, so the run stays green.
    A changed contact is tried again at the next tick."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.unreachable: set[int] = set()
        ctx.data.setdefault(SKIPPED_UNREACHABLE, 0)

    def reachable(self, items: Iterable[T], client_of: Callable[[T], Client]) -> Iterator[T]:
        # Lazy: an owner found unreachable by one item skips that client's later items.
        for item in items:
            client = client_of(item)
            if client.pk in self.unreachable or client.owner_known_unreachable:
                self.ctx.add(SKIPPED_UNREACHABLE)
                continue
            yield item

    def notify(self, client: Client, send: Callable[[], bool]) -> bool:
        """send(), with an unreachable owner failing this item only the first time it is seen."""
        try:
            return send()
        except OwnerUnreachable as exc:
            self.unreachable.add(client.pk)
            if exc.first_time:
                raise
            self.ctx.add(SKIPPED_UNREACHABLE)  # found out by another run meanwhile
            return False


def worker_count(text: str) -> int:
    """--workers: a whole number, 0 or more."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (0 = one per CPU core)")
    return count


@register(
    "process-scheduled",
    schedule="* * * * *",
    grace=timedelta(minutes=3),
    max_runtime=timedelta(minutes=4),
    # Claiming is SKIP LOCKED, so overlapping runs (crontab + HTTP, several hosts) share
    # the queue instead of waiting on each other.
    allow_concurrent=True,
    cli_options=(
        CliOption(
            "--workers",
            type=worker_count,
            help="Processes to send from (default DELIVERY_WORKERS; 0 = one per CPU core; 1 = this process).",
        ),
    ),
)
def process_scheduled(ctx: JobContext) -> None:
    """Deliver due scheduled SMS and email."""
    # Imported here: the provider SDKs cost ~0.1 s to import, which every other cron command
    # (started every few minutes) would otherwise pay.
    from messaging.delivery.sending import deliver_due_messages

    # The command asks for --workers (None: the DELIVERY_WORKERS setting). Runs started in a
    # web process (HTTP, "Run now") send from it alone: forking a threaded server is unsafe.
    deliver_due_messages(ctx, workers=ctx.options.get("workers", 1))


# Grace: one missed tick is normal under load; two in a row is worth an alert.
# Max runtime: below the interval, so a slow run leaves the rest to the next tick.
@register("check-missed-calls", schedule="*/5 * * * *", grace=timedelta(minutes=10), max_runtime=timedelta(minutes=4))
def check_missed_calls(ctx: JobContext, now: datetime | None = None) -> None:
    """Text back missed calls from the client's number and notify the owner."""
    now = now or timezone.now()

    def work(call: missed_calls.Call, facts: missed_calls.CallFacts) -> None:
        outcome = missed_calls.handle_missed_call(call, facts, now)
        if outcome in (missed_calls.TEXTED, missed_calls.ALREADY_HANDLED):
            ctx.add(outcome)
        else:
            ctx.add("skipped")
            ctx.add(f"skipped_{outcome}")
        ctx.log.info("missed_call_handled", extra={"call_id": call.pk, "client_id": call.client_id, "outcome": outcome})

    ctx.data.setdefault("texted", 0)
    ctx.data.setdefault("skipped", 0)
    for calls in missed_calls.unhandled_call_batches(now, ctx.should_stop):
        facts = missed_calls.gather_call_facts(calls, now)
        ctx.each(calls, lambda call, facts=facts: work(call, facts))
        if facts.owner_unreachable:
            ctx.add("owner_unreachable", facts.owner_unreachable)


@register("agent-check", schedule="*/15 * * * *", grace=timedelta(minutes=20), max_runtime=timedelta(minutes=10))
def check_agent_stalls(ctx: JobContext, now: datetime | None = None) -> None:
    """Escalate conversations waiting on a reply past the client's threshold in business hours."""
    now = now or timezone.now()
    awaiting = agent_check.awaiting_conversations(now)
    ctx.add("checked", len(awaiting))
    stalls = agent_check.sort_stalls(awaiting, now)
    for conversation, exc in stalls.errors:
        ctx.item_failed(f"conversation {conversation.pk}", exc)
    if stalls.held:
        ctx.add("held_until_business_hours", stalls.held)

    owners = OwnerGate(ctx)

    def work(conversation: agent_check.Conversation) -> None:
        if owners.notify(conversation.client, lambda: agent_check.escalate_stall(conversation, now)):
            ctx.add("escalated")
            ctx.log.info(
                "agent_stall_escalated", extra={"conversation_id": conversation.pk, "client_id": conversation.client_id}
            )

    ctx.each(owners.reachable(stalls.stalled, lambda conversation: conversation.client), work)
    ctx.data.setdefault("escalated", 0)


@register("follow-ups", schedule="*/30 * * * *", grace=timedelta(minutes=40), max_runtime=timedelta(minutes=20))
def send_follow_up_reminders(ctx: JobContext, now: datetime | None = None) -> None:
    """Remind owners of follow-ups that came due and of qualified leads idle for 7+ days."""
    now = now or timezone.now()

    owners = OwnerGate(ctx)

    def work(reminder: follow_ups.Reminder) -> None:
        if owners.notify(reminder.lead.client, lambda: follow_ups.send_reminder(reminder, now)):
            ctx.add("follow_ups" if reminder.kind == follow_ups.FOLLOW_UP else "re_engagements")

    ctx.data.setdefault("follow_ups", 0)
    ctx.data.setdefault("re_engagements", 0)
    ctx.each(owners.reachable(follow_ups.pending_reminders(now), lambda reminder: reminder.lead.client), work)
