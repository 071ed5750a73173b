"""Delivery reports: Twilio status callbacks and Resend events move a `sent` message on to
`delivered` or `undelivered`, and no report is lost because it arrived early.

Why reports arrive early. The provider is called outside any transaction and `sent` is
recorded with the provider's id afterwards, a group at a time (outcomes.record_many: one
commit per group). A fast callback can reach the webhook before that commit; a crashed
worker's send stays `sending`, without its id, until lease recovery finds it. The report
then names an id that no committed message carries. Answering with an error would not help
(Twilio does not retry status callbacks; Svix would retry into the same state for a while),
so the report is kept, as a PendingReport row, and answered 200.

When a kept report is applied.
- `apply_pending_reports(sent)`: by whoever records a send as `sent` (record_many, lease
  recovery), in the same transaction as that write.
- `apply_stored_reports(now)`: by every process-scheduled run, for reports whose message is
  now known and past `sending` (recorded by a path that does not call the first one, or the
  SQLite case below); it also expires reports older than DELIVERY_REPORT_RETENTION_HOURS
  (default 72): one for an email this platform never sent (Resend reports every email of the
  account) would otherwise be kept for ever.

The race, and how it is closed. The webhook runs under READ COMMITTED, so it does not see
the worker's uncommitted `sent` + id and stores the report. The worker's transaction must
then see that report. Without coordination there is a gap: the webhook looks the message up
(before the worker commits), the worker looks for stored reports (none yet), the webhook
inserts; both commit, and the report sits next to a `sent` message until the next run. A
re-check by the webhook after inserting narrows the gap but does not close it (the worker may
still be uncommitted at the re-check), and a row lock cannot close it: the webhook cannot find
the row by an id that is not committed yet.

So both sides take a transaction-scoped PostgreSQL advisory lock on (channel, provider id)
before they read: the webhook around "look the message up, then apply or store", the worker
around "look for stored reports, apply them, delete them", after its `sent` write. Whoever
comes second waits for the first to commit and then reads afresh (READ COMMITTED takes a new
snapshot per statement): the worker finds the stored report, or the webhook finds the message
`sent` and applies the report itself. The worker holds these locks from `apply_pending_reports`
until its commit, so a webhook waits at most that long; worker groups hold disjoint ids and
take them in sorted order, so nothing deadlocks. The two-key advisory lock space is apart from
the job locks' one-key space (scheduling/locks.py). SQLite (the demo) has no advisory locks:
there a report that slips through the gap is applied by the next run.

Several reports for one message are applied in the order they occurred (Resend's event time;
for Twilio, which sends none, the time the report reached us), each as it would have been had
it arrived after the send was recorded: the first delivered/undelivered one moves the message
out of `sent`, later ones change nothing (both states are final), except that a complaint
after delivery is recorded on the delivered message. A message thus ends in the same state
whether or not its reports overtook the worker. A repeated identical report is stored once.

Bounces and complaints also put the recipient on the email suppression list
(`messaging.delivery.suppressions`), whether or not the message is known yet.
"""

import logging
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When

from messaging.delivery.suppressions import suppress_emails
from messaging.models import Channel, PendingReport, ScheduledMessage, Status, SuppressionReason, transition

logger = logging.getLogger("messaging.delivery.reports")

RETENTION_SETTING = "DELIVERY_REPORT_RETENTION_HOURS"
DEFAULT_RETENTION_HOURS = 72
SWEEP_BATCH = 500  # provider ids resolved per run; the rest wait for the next run
NOT_SENT_YET = (Status.PENDING, Status.SENDING)
COMPLAINED = "email.complained"
_LOCK_CLASS = 0x52505254  # "RPRT": the first key of every delivery-report advisory lock

RESEND_EVENTS: dict[str, tuple[str, str]] = {
    "email.delivered": (Status.DELIVERED, ""),
    "email.bounced": (Status.UNDELIVERED, "bounced"),
    "email.complained": (Status.UNDELIVERED, "complained"),
    "email.failed": (Status.UNDELIVERED, "failed"),  # Resend could not send it at all
    "email.suppressed": (Status.UNDELIVERED, "suppressed"),  # on Resend's own suppression list
}


def retention() -> timedelta:
    return timedelta(hours=getattr(settings, RETENTION_SETTING, DEFAULT_RETENTION_HOURS))


# -- Locking --------------------------------------------------------------------------------


def _lock_key(channel: str, provider_id: str) -> int:
    """A signed 32-bit key for (channel, provider id); a collision only serialises two ids."""
    key = zlib.crc32(f"{channel}:{provider_id}".encode())
    return key - 2**32 if key >= 2**31 else key


def lock_reports(keys: Iterable[tuple[str, str]]) -> None:
    """Take the advisory locks of these (channel, provider id) pairs until the transaction
    ends, in sorted order, in one query. A no-op outside PostgreSQL."""
    if connection.vendor != "postgresql":
        return
    lock_keys = sorted({_lock_key(channel, provider_id) for channel, provider_id in keys})
    if not lock_keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::integer, k) FROM unnest(%s::integer[]) AS k", [_LOCK_CLASS, lock_keys]
        )


# -- Applying -------------------------------------------------------------------------------


def _per_message(values: dict[uuid.UUID, object], field: str) -> Case:
    """One UPDATE that sets `field` to a value of each message's own."""
    return Case(
        *(When(pk=pk, then=Value(value)) for pk, value in values.items()),
        default=F(field),
        output_field=ScheduledMessage._meta.get_field(field),
    )


def _replay(statuses: dict[uuid.UUID, str], reports: dict[uuid.UUID, list[PendingReport]]) -> int:
    """Apply each message's reports in the order they occurred, as the module docstring says;
    at most three UPDATEs whatever the number of messages. Returns the rows changed."""
    moves: dict[str, dict[uuid.UUID, PendingReport]] = {Status.DELIVERED: {}, Status.UNDELIVERED: {}}
    complaints: dict[uuid.UUID, PendingReport] = {}
    for message_id, status in statuses.items():
        for report in sorted(reports.get(message_id, ()), key=lambda r: (r.occurred_at, r.received_at)):
            if status == Status.SENT and report.target in moves:
                status = report.target
                moves[status][message_id] = report
            elif status == Status.DELIVERED and report.event == COMPLAINED:
                complaints[message_id] = report
    changed = 0
    if delivered := moves[Status.DELIVERED]:
        changed += transition(
            list(delivered),
            Status.DELIVERED,
            expect=[Status.SENT],
            delivered_at=_per_message({pk: r.received_at for pk, r in delivered.items()}, "delivered_at"),
        )
    if undelivered := moves[Status.UNDELIVERED]:
        changed += transition(
            list(undelivered),
            Status.UNDELIVERED,
            expect=[Status.SENT],
            last_error_code=_per_message({pk: r.error_code for pk, r in undelivered.items()}, "last_error_code"),
            last_error=_per_message({pk: r.error for pk, r in undelivered.items()}, "last_error"),
        )
    if complaints:
        # Complaints usually follow "delivered", which no transition leaves: the message stays
        # delivered but shows the complaint, so an operator sees why a lead went quiet.
        changed += ScheduledMessage.objects.filter(pk__in=list(complaints), status=Status.DELIVERED).update(
            last_error_code=_per_message({pk: r.error_code for pk, r in complaints.items()}, "last_error_code"),
            last_error=_per_message({pk: r.error for pk, r in complaints.items()}, "last_error"),
        )
    return changed


def _stored_for(keys: set[tuple[str, str]]) -> list[PendingReport]:
    """The stored reports of these (channel, provider id) pairs, in one indexed query."""
    if not keys:
        return []
    rows = PendingReport.objects.filter(
        channel__in={channel for channel, _ in keys}, provider_message_id__in={pid for _, pid in keys}
    )
    return [r for r in rows if (r.channel, r.provider_message_id) in keys]


def _store(report: PendingReport) -> bool:
    """Keep the report unless an identical one is kept already; whether it was stored."""
    duplicate = PendingReport.objects.filter(
        channel=report.channel,
        provider_message_id=report.provider_message_id,
        event=report.event,
        error_code=report.error_code,
    ).exists()
    if not duplicate:
        report.save()
    return not duplicate


def apply_delivery_report(report: PendingReport) -> str:
    """One report as it arrives (the unsaved row). Returns "applied", "stored" (its message is
    unknown or not recorded `sent` yet: kept for later), "ignored" (already final: a repeat or
    a late report) or "unknown" (no provider id: nothing could ever match it)."""
    channel, provider_id = report.channel, report.provider_message_id
    log: dict[str, Any] = {"channel": channel, "provider_message_id": provider_id, "report": report.event}
    if not provider_id:  # an empty id would match every message not sent yet
        logger.info("delivery_report_without_id", extra=log)
        return "unknown"
    with transaction.atomic():
        lock_reports([(channel, provider_id)])
        found = (
            ScheduledMessage.objects.filter(channel=channel, provider_message_id=provider_id)
            .values_list("pk", "status")
            .first()
        )
        if found is None or found[1] in NOT_SENT_YET:
            stored = _store(report)
            log.update(message_id=str(found[0]) if found else None, duplicate=not stored)
            logger.info("delivery_report_stored", extra=log)
            return "stored"
        message_id, status = found
        kept = _stored_for({(channel, provider_id)})  # normally none: see apply_stored_reports
        changed = _replay({message_id: status}, {message_id: [*kept, report]})
        if kept:
            PendingReport.objects.filter(pk__in=[r.pk for r in kept]).delete()
    outcome = "applied" if changed else "ignored"
    log.update(message_id=str(message_id), status=status)
    logger.info(f"delivery_report_{outcome}", extra=log)
    return outcome


def apply_pending_reports(sent: Iterable[tuple[str, str, uuid.UUID]]) -> int:
    """Apply the stored reports of messages just recorded `sent`: (channel, provider message
    id, message id) each. Call it inside the transaction that writes `sent`, after that write
    and as late as possible before the commit (it holds the ids' report locks until then).

    A constant number of queries for any number of messages: 2 when nothing is stored (lock,
    look-up), at most 6 otherwise. Returns the message rows changed.
    """
    owners = {(channel, pid): message_id for channel, pid, message_id in sent if pid}
    if not owners:
        return 0
    with transaction.atomic(savepoint=False):
        lock_reports(owners)
        kept = _stored_for(set(owners))
        if not kept:
            return 0
        by_message: dict[uuid.UUID, list[PendingReport]] = defaultdict(list)
        for report in kept:
            by_message[owners[(report.channel, report.provider_message_id)]].append(report)
        changed = _replay(dict.fromkeys(by_message, Status.SENT), by_message)
        PendingReport.objects.filter(pk__in=[r.pk for r in kept]).delete()
    logger.info("pending_reports_applied", extra={"reports": len(kept), "changed": changed})
    return changed


def apply_stored_reports(now: datetime) -> Counter:
    """The next run's sweep: apply stored reports whose message is now known and past
    `sending` (up to SWEEP_BATCH provider ids), then expire those older than the retention.
    Counts: reports_applied (message rows changed), reports_resolved (stored reports used up,
    applied or moot), reports_expired."""
    counts: Counter = Counter()
    known = ScheduledMessage.objects.filter(
        channel=OuterRef("channel"), provider_message_id=OuterRef("provider_message_id")
    ).exclude(status__in=NOT_SENT_YET)
    keys = set(
        PendingReport.objects.filter(Exists(known))
        .order_by()
        .values_list("channel", "provider_message_id")
        .distinct()[:SWEEP_BATCH]
    )
    if keys:
        with transaction.atomic():
            lock_reports(keys)  # then read: a webhook may have applied one meanwhile
            messages = ScheduledMessage.objects.filter(
                channel__in={c for c, _ in keys}, provider_message_id__in={p for _, p in keys}
            ).exclude(status__in=NOT_SENT_YET)
            owners: dict[tuple[str, str], uuid.UUID] = {}
            statuses: dict[uuid.UUID, str] = {}
            for pk, channel, pid, status in messages.values_list("pk", "channel", "provider_message_id", "status"):
                if (channel, pid) in keys and (channel, pid) not in owners:
                    owners[(channel, pid)], statuses[pk] = pk, status
            kept = _stored_for(set(owners))
            by_message: dict[uuid.UUID, list[PendingReport]] = defaultdict(list)
            for report in kept:
                by_message[owners[(report.channel, report.provider_message_id)]].append(report)
            counts["reports_applied"] = _replay(statuses, by_message)
            counts["reports_resolved"] = PendingReport.objects.filter(pk__in=[r.pk for r in kept]).delete()[0]
    counts["reports_expired"] = PendingReport.objects.filter(received_at__lt=now - retention()).delete()[0]
    if counts["reports_expired"]:
        logger.warning("delivery_reports_expired", extra={"count": counts["reports_expired"]})
    return +counts  # only the non-zero counts


# -- Twilio ---------------------------------------------------------------------------------


def apply_twilio_status(sid: str, message_status: str, error_code: str, now: datetime) -> str:
    """A Twilio status callback; queued/sending/sent and anything unknown change nothing."""
    message_status = message_status.lower()
    report = PendingReport(
        channel=Channel.SMS,
        provider_message_id=sid,
        event=f"twilio:{message_status}"[:40],
        occurred_at=now,  # Twilio's callback carries no event time
        received_at=now,
    )
    if message_status == "delivered":
        report.target = Status.DELIVERED
    elif message_status in ("undelivered", "failed"):
        detail = f" (error {error_code})" if error_code else ""
        report.target = Status.UNDELIVERED
        report.error_code = (error_code or message_status)[:32]
        report.error = f"Twilio reported the message {message_status}{detail}"
    else:
        logger.debug("twilio_status_no_change", extra={"provider_message_id": sid, "provider_status": message_status})
        return "no_change"
    return apply_delivery_report(report)


# -- Resend ---------------------------------------------------------------------------------


def apply_resend_event(event: dict[str, Any], now: datetime) -> str:
    """One Resend event; types other than those in RESEND_EVENTS are acknowledged."""
    event_type = event.get("type", "")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    email_id = str(data.get("email_id") or "")
    if event_type not in RESEND_EVENTS:
        logger.debug("resend_event_ignored", extra={"type": event_type, "provider_message_id": email_id})
        return "no_change"
    target, code = RESEND_EVENTS[event_type]
    error = "" if target == Status.DELIVERED else resend_error_text(event_type, data)
    suppress_recipients(event_type, data, email_id, error)
    report = PendingReport(
        channel=Channel.EMAIL,
        provider_message_id=email_id,
        target=target,
        event=event_type,
        error_code=code,
        error=error,
        occurred_at=event_time(event, now),
        received_at=now,
    )
    outcome = apply_delivery_report(report)
    if event_type == COMPLAINED:
        logger.warning("email_complaint", extra={"provider_message_id": email_id, "outcome": outcome})
    return outcome


def suppress_recipients(event_type: str, data: dict[str, Any], email_id: str, error: str) -> list[str]:
    """A complaint or a permanent bounce puts the recipients on the suppression list. A
    transient or undetermined bounce does not: the next email may well arrive."""
    if event_type == COMPLAINED:
        reason = SuppressionReason.COMPLAINED
    elif event_type == "email.bounced" and str(_bounce(data).get("type", "")).lower() == "permanent":
        reason = SuppressionReason.BOUNCED
    else:
        return []
    addresses = _recipients(data)
    if not addresses and email_id:  # not in the event: the message's own recipient, if known
        addresses = list(
            ScheduledMessage.objects.filter(channel=Channel.EMAIL, provider_message_id=email_id).values_list(
                "to", flat=True
            )[:1]
        )
    return suppress_emails(addresses, reason, detail=error, provider_message_id=email_id)


def event_time(event: dict[str, Any], now: datetime) -> datetime:
    """When Resend says the event happened (its `created_at`); `now` when it does not say."""
    try:
        when = datetime.fromisoformat(str(event.get("created_at")))
    except ValueError:
        return now
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _recipients(data: dict[str, Any]) -> list[str]:
    """The event's `to`: a list of addresses (a single string is taken too)."""
    to = data.get("to")
    if isinstance(to, str):
        return [to]
    return [address for address in to if isinstance(address, str)] if isinstance(to, list) else []


def _bounce(data: dict[str, Any]) -> dict[str, Any]:
    return data.get("bounce") if isinstance(data.get("bounce"), dict) else {}


def resend_error_text(event_type: str, data: dict[str, Any]) -> str:
    if event_type == COMPLAINED:
        return "The recipient marked this email as spam."
    if event_type == "email.failed":
        return "Resend could not send this email."
    if event_type == "email.suppressed":
        return "Resend did not send this email: the address is on Resend's suppression list."
    bounce = _bounce(data)
    kind = " / ".join(str(part) for part in (bounce.get("type"), bounce.get("subType")) if part)
    reason = str(bounce.get("message") or "")
    return "Resend reported a bounce" + (f" ({kind})" if kind else "") + (f": {reason}" if reason else ".")
