"""Claiming due messages: short transactions with FOR UPDATE SKIP LOCKED, so any number of
workers on any number of hosts take disjoint sets and each message goes out once."""

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from messaging.delivery.suppressions import SUPPRESSED_CODE, SUPPRESSED_ERROR, suppressed_emails
from messaging.models import Channel, DeliveryAttempt, Outcome, ScheduledMessage, Status, transition
from messaging.optouts import opt_outs_for
from messaging.quiet_hours import next_allowed_time, window_for

HOST = socket.gethostname()


def worker_name() -> str:
    """Who claims: host and process id, asked each time (a delivery worker is a forked child)."""
    return f"{HOST}:{os.getpid()}"[:100]


@dataclass
class Claim:
    ready: list[ScheduledMessage] = field(default_factory=list)  # marked sending: send these
    deferred: int = 0  # SMS outside the recipient's daytime window: moved to its opening
    opted_out: int = 0  # SMS to an opted-out number: failed without a provider call
    suppressed: int = 0  # email to a suppressed address (bounced, complained): failed likewise
    token: uuid.UUID | None = None  # this claim's token, written on every ready message


def quiet_until(message: ScheduledMessage, now: datetime) -> datetime | None:
    """When an SMS to a lead must wait for the lead's local daytime, the time it opens (UTC);
    None when it may go now. Claiming and the pages (messaging.waiting) both ask this."""
    if message.channel != Channel.SMS or message.lead is None:
        return None
    start, end = window_for(message.lead.client)
    return next_allowed_time(now, message.lead.tz, start, end)


def claim_due_messages(now: datetime, limit: int, lease: timedelta, exclude: Q | None = None) -> Claim:
    """Take up to `limit` due messages: mark the sendable ones `sending` under a lease.

    The lease is set on the database clock (a host whose clock runs ahead cannot take live
    leases) and the claim writes a token of its own that every later write checks. Each ready
    message carries `send_by`, a local monotonic time before which its send must start: it
    is taken before the transaction, so it never outlasts the lease. `exclude` leaves out
    messages this run must not send (a provider or sender it stopped using).

    Opted-out SMS fail here and SMS in the recipient's quiet hours move to the window's
    opening, both without a provider call and without using an attempt.
    """
    claim = Claim(token=uuid.uuid4())
    send_by = monotonic() + lease.total_seconds()
    with transaction.atomic():
        due = ScheduledMessage.objects.filter(status=Status.PENDING, next_attempt_at__lte=now, send_at__lte=now)
        if exclude is not None:
            due = due.exclude(exclude)
        batch = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead__client", "client")
            # next_attempt_at starts equal to send_at and only moves later (backoff, quiet
            # hours), so it alone orders the queue: messages deferred to later never sit at
            # the head of the index to be skipped by every claim.
            .order_by("next_attempt_at")[:limit]
        )
        opt_outs = opt_outs_for(m.to for m in batch if m.channel == Channel.SMS)
        suppressed = suppressed_emails(m.to for m in batch if m.channel == Channel.EMAIL)
        ready_ids = []
        for message in batch:
            if message.channel == Channel.SMS and opt_outs.blocks(message.to, message.client_id):
                _fail_unsendable(message, now, Outcome.OPTED_OUT, "opted_out", "the recipient opted out of SMS")
                claim.opted_out += 1
            elif message.channel == Channel.EMAIL and message.to in suppressed:
                _fail_unsendable(message, now, Outcome.SUPPRESSED, SUPPRESSED_CODE, SUPPRESSED_ERROR)
                claim.suppressed += 1
            elif (opening := quiet_until(message, now)) is not None:
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
            claimed_at=Now(),
            claimed_by=worker_name(),
            claim_token=claim.token,
            lease_expires_at=Now() + lease,
        )
    for message in claim.ready:
        message.status, message.attempts = Status.SENDING, message.attempts + 1
        message.claimed_at, message.claimed_by, message.claim_token = now, worker_name(), claim.token
        message.send_by = send_by
    return claim


def _fail_unsendable(message: ScheduledMessage, now: datetime, outcome: str, code: str, why: str) -> None:
    """Fail a message that must not go to its recipient, without a provider call."""
    transition(message.pk, Status.FAILED, expect=[Status.PENDING], last_error_code=code, last_error=why)
    DeliveryAttempt.objects.create(
        message=message, started_at=now, outcome=outcome, error_code=code, worker=worker_name()
    )


def release(messages: list[ScheduledMessage]) -> int:
    """Give back claimed messages that were not sent (deadline, shutdown, a provider this run
    stopped using), attempt unused; only those still under the claim that took them."""
    if not messages:
        return 0
    return transition(
        [m.pk for m in messages],
        Status.PENDING,
        expect=[Status.SENDING],
        where={"claim_token__in": {m.claim_token for m in messages}},
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        claim_token=None,
    )
