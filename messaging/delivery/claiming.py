"""Claiming due messages: short transactions with FOR UPDATE SKIP LOCKED, so any number of
workers on any number of hosts take disjoint sets and each message goes out once."""

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

from messaging.models import Channel, DeliveryAttempt, Outcome, ScheduledMessage, Status, transition
from messaging.optouts import opt_outs_for
from messaging.quiet_hours import next_allowed_time, parse_window

WORKER = f"{socket.gethostname()}:{os.getpid()}"[:100]


@dataclass
class Claim:
    ready: list[ScheduledMessage] = field(default_factory=list)  # marked sending: send these
    deferred: int = 0  # SMS outside the recipient's daytime window: moved to its opening
    opted_out: int = 0  # SMS to an opted-out number: failed without a provider call


def _default_window() -> tuple[time, time]:
    return parse_window(settings.QUIET_HOURS)


def _quiet_until(message: ScheduledMessage, now: datetime) -> datetime | None:
    """When an SMS to a lead must wait for the lead's local daytime, the time it opens."""
    if message.channel != Channel.SMS or message.lead is None:
        return None
    client = message.lead.client
    start, end = (client.quiet_hours_start, client.quiet_hours_end) if client else _default_window()
    return next_allowed_time(now, message.lead.tz, start, end)


def claim_due_messages(now: datetime, limit: int, lease: timedelta) -> Claim:
    """Take up to `limit` due messages: mark the sendable ones `sending` under a lease.

    Opted-out SMS fail here and SMS in the recipient's quiet hours move to the window's
    opening, both without a provider call and without using an attempt.
    """
    claim = Claim()
    with transaction.atomic():
        batch = list(
            ScheduledMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead__client", "client")
            # next_attempt_at starts equal to send_at and only moves later (backoff, quiet
            # hours), so it alone orders the queue: messages deferred to later never sit at
            # the head of the index to be skipped by every claim.
            .filter(status=Status.PENDING, next_attempt_at__lte=now, send_at__lte=now)
            .order_by("next_attempt_at")[:limit]
        )
        opt_outs = opt_outs_for(m.to for m in batch if m.channel == Channel.SMS)
        ready_ids = []
        for message in batch:
            if message.channel == Channel.SMS and opt_outs.blocks(message.to, message.client_id):
                _fail_opted_out(message, now)
                claim.opted_out += 1
            elif (opening := _quiet_until(message, now)) is not None:
                ScheduledMessage.objects.filter(pk=message.pk).update(next_attempt_at=opening)
                claim.deferred += 1
            else:
                ready_ids.append(message.pk)
                claim.ready.append(message)
        transition(
            ready_ids,
            Status.SENDING,
            expect=[Status.PENDING],
            attempts=F("attempts") + 1,
            claimed_at=now,
            claimed_by=WORKER,
            lease_expires_at=now + lease,
        )
    for message in claim.ready:
        message.status, message.attempts = Status.SENDING, message.attempts + 1
        message.claimed_at, message.claimed_by, message.lease_expires_at = now, WORKER, now + lease
    return claim


def _fail_opted_out(message: ScheduledMessage, now: datetime) -> None:
    transition(
        message.pk,
        Status.FAILED,
        expect=[Status.PENDING],
        last_error_code="opted_out",
        last_error="the recipient opted out of SMS",
    )
    DeliveryAttempt.objects.create(
        message=message, started_at=now, outcome=Outcome.OPTED_OUT, error_code="opted_out", worker=WORKER
    )


def release(messages: list[ScheduledMessage]) -> int:
    """Give back claimed messages that were not sent (deadline, shutdown), attempt unused."""
    return transition(
        [m.pk for m in messages],
        Status.PENDING,
        expect=[Status.SENDING],
        where={"claimed_by": WORKER},
        attempts=F("attempts") - 1,
        lease_expires_at=None,
    )
