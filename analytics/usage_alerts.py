"""Usage alerts: email a client's owner when month-to-date SMS reach 80% and 100% of the
monthly allowance, once per threshold per month of the client's calendar."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from logging import Logger, LoggerAdapter

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from analytics import metrics
from analytics.models import UsageAlert
from analytics.zones import local_midnight, local_today, resolve_zones
from messaging.automations.notify import OwnerUnreachable, owner_message_spec
from messaging.bulk import MessageSpec, describe_errors, schedule_messages
from messaging.jobs import SKIPPED_UNREACHABLE
from messaging.models import Client, ScheduledMessage
from scheduling.context import JobContext

logger = logging.getLogger("analytics.usage_alerts")

THRESHOLDS = (80, 100)
SOURCE = "usage-alert"


def alert_key(client_id: int, month: date, threshold: int) -> str:
    return f"usage-alert:{client_id}:{month:%Y-%m}:{threshold}"


def thresholds_reached(sms_count: int, allowance: int) -> list[int]:
    return [t for t in THRESHOLDS if sms_count * 100 >= t * allowance]


@dataclass(frozen=True)
class DueAlert:
    client: Client
    month: date
    threshold: int  # the highest threshold newly reached: the one the owner is told about
    sms_count: int

    @property
    def key(self) -> str:
        return alert_key(self.client.pk, self.month, self.threshold)

    def __str__(self) -> str:
        return f"usage alert for client {self.client.pk}"


def _alert_spec(alert: DueAlert, now: datetime) -> MessageSpec:
    """The owner's message (email or SMS, as the client chose). Raises OwnerUnreachable when
    the owner has no contact yet: the alert is then not marked as told, and goes out once
    they can be reached."""
    client = alert.client
    context = {
        "client": client,
        "month": alert.month,
        "threshold": alert.threshold,
        "sms_count": alert.sms_count,
        "allowance": client.monthly_sms_allowance,
    }
    return owner_message_spec(
        client,
        subject=f"{client.name}: {alert.threshold}% of your monthly SMS allowance used",
        body=render_to_string("emails/usage_alert.txt", context),
        idempotency_key=alert.key,
        now=now,
    )


def _alert_rows(alert: DueAlert, message: ScheduledMessage | None) -> list[UsageAlert]:
    """The thresholds to remember: the one told about, and the lower ones reached in the same
    step, so an owner who jumps from 70% to 100% between two runs gets one message, not two."""
    return [
        UsageAlert(
            client=alert.client,
            month=alert.month,
            threshold=reached,
            sms_count=alert.sms_count,
            allowance=alert.client.monthly_sms_allowance,
            message=message if reached == alert.threshold else None,
        )
        for reached in THRESHOLDS
        if reached <= alert.threshold
    ]


def _send_alerts(
    due: list[DueAlert], now: datetime, failed: Callable[[DueAlert, Exception | str], None]
) -> list[UsageAlert]:
    """Queue every owner's message and remember the thresholds, all in one transaction and a
    fixed number of queries; an owner who cannot be reached or whose contact is invalid is
    `failed` and not remembered."""
    specs: list[tuple[DueAlert, MessageSpec]] = []
    for alert in due:
        try:
            specs.append((alert, _alert_spec(alert, now)))
        except Exception as exc:  # one client's bad data never stops the others' alerts
            failed(alert, exc)
    if not specs:
        return []
    with transaction.atomic():
        result = schedule_messages([spec for _, spec in specs], source=SOURCE, now=now)
        messages = {m.idempotency_key: m for m in result.created}
        if result.existing_keys:  # queued by an earlier run that did not record its alert
            messages.update(ScheduledMessage.objects.in_bulk(list(result.existing_keys), field_name="idempotency_key"))
        recorded, rows = [], []
        for index, (alert, _) in enumerate(specs):
            if index in result.errors:
                failed(alert, describe_errors(result.errors[index]))
                continue
            told = _alert_rows(alert, messages.get(alert.key))
            rows.extend(told)
            recorded.append(told[-1])
        UsageAlert.objects.bulk_create(rows, ignore_conflicts=True)
    return recorded


def check_all_client_alerts(now: datetime | None = None, ctx: JobContext | None = None) -> list[UsageAlert]:
    """Alert every client that crossed a threshold this month and was not told yet; returns
    the alerts recorded now. One client's failure (e.g. an invalid owner email) is counted
    in `ctx` and the others are alerted all the same. Clients with an allowance of 0 (no
    allowance set) and clients with an invalid timezone (which the aggregation reports) are
    skipped."""
    now = now or timezone.now()
    log: Logger | LoggerAdapter = ctx.log if ctx is not None else logger
    clients = {c.pk: c for c in Client.objects.filter(monthly_sms_allowance__gt=0)}
    zones = resolve_zones(clients.values()).zones
    months = {client_id: local_today(now, zone).replace(day=1) for client_id, zone in zones.items()}
    windows = [
        metrics.Window(client_id, month, local_midnight(month, zones[client_id]), now)
        for client_id, month in months.items()
    ]
    counts = metrics.count_sms_sent(windows)
    candidates = {
        client_id: count
        for (client_id, _), count in counts.items()
        if thresholds_reached(count, clients[client_id].monthly_sms_allowance)
    }
    already = set(
        UsageAlert.objects.filter(client_id__in=list(candidates), month__in=set(months.values()))
        .order_by()
        .values_list("client_id", "month", "threshold")
    )
    due = []
    for client_id, count in candidates.items():
        client, month = clients[client_id], months[client_id]
        new = [
            t for t in thresholds_reached(count, client.monthly_sms_allowance) if (client_id, month, t) not in already
        ]
        if new:
            due.append(DueAlert(client, month, max(new), count))

    def failed(alert: DueAlert, error: Exception | str) -> None:
        if isinstance(error, OwnerUnreachable) and not error.first_time:
            # Reported once, when it was found out; skipped until the contact changes.
            if ctx is not None:
                ctx.add(SKIPPED_UNREACHABLE)
            return
        if ctx is None:
            logger.warning("usage_alert_failed", extra={"client_id": alert.client.pk, "error": str(error)})
        else:
            ctx.item_failed(alert, error)

    recorded = _send_alerts(due, now, failed)
    for alert in recorded:
        log.info(
            "usage_alert_sent",
            extra={
                "client_id": alert.client_id,
                "month": f"{alert.month:%Y-%m}",
                "threshold": alert.threshold,
                "sms_count": alert.sms_count,
            },
        )
    if ctx is not None and recorded:
        ctx.add("usage_alerts", len(recorded))
    return recorded
