"""Usage alerts: email a client's owner when month-to-date SMS reach 80% and 100% of the
monthly allowance, once per threshold per month of the client's calendar."""

import logging
from datetime import date, datetime
from logging import Logger, LoggerAdapter

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from analytics import metrics
from analytics.models import UsageAlert
from analytics.zones import local_midnight, local_today, resolve_zones
from messaging.automations.notify import notify_owner
from messaging.models import Client
from scheduling.context import JobContext

logger = logging.getLogger("analytics.usage_alerts")

THRESHOLDS = (80, 100)
SOURCE = "usage-alert"


def alert_key(client_id: int, month: date, threshold: int) -> str:
    return f"usage-alert:{client_id}:{month:%Y-%m}:{threshold}"


def thresholds_reached(sms_count: int, allowance: int) -> list[int]:
    return [t for t in THRESHOLDS if sms_count * 100 >= t * allowance]


def _send_alert(client: Client, month: date, threshold: int, sms_count: int, log: Logger | LoggerAdapter) -> UsageAlert:
    """Notify the owner (email or SMS, as the client chose) and remember the threshold.

    The lower thresholds reached in the same step are remembered with it, so an owner who
    jumps from 70% to 100% between two runs gets one message, not two. An owner who cannot
    be reached (no contact yet) is not marked as told: the alert goes out once they can be.
    OwnerUnreachable then propagates and the client counts as failed for this run."""
    context = {
        "client": client,
        "month": month,
        "threshold": threshold,
        "sms_count": sms_count,
        "allowance": client.monthly_sms_allowance,
    }
    with transaction.atomic():
        message, _ = notify_owner(
            client,
            subject=f"{client.name}: {threshold}% of your monthly SMS allowance used",
            body=render_to_string("emails/usage_alert.txt", context),
            idempotency_key=alert_key(client.pk, month, threshold),
            source=SOURCE,
            now=timezone.now(),
        )
        rows = [
            UsageAlert(
                client=client,
                month=month,
                threshold=reached,
                sms_count=sms_count,
                allowance=client.monthly_sms_allowance,
                message=message if reached == threshold else None,
            )
            for reached in THRESHOLDS
            if reached <= threshold
        ]
        UsageAlert.objects.bulk_create(rows, ignore_conflicts=True)
    log.info(
        "usage_alert_sent",
        extra={"client_id": client.pk, "month": f"{month:%Y-%m}", "threshold": threshold, "sms_count": sms_count},
    )
    return rows[-1]


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
    recorded = []
    for client_id, count in candidates.items():
        client, month = clients[client_id], months[client_id]
        reached = thresholds_reached(count, client.monthly_sms_allowance)
        new = [t for t in reached if (client_id, month, t) not in already]
        if not new:
            continue
        try:
            recorded.append(_send_alert(client, month, max(new), count, log))
        except Exception as exc:  # one client's bad data never stops the others' alerts
            if ctx is None:
                logger.exception("usage_alert_failed", extra={"client_id": client_id})
            else:
                ctx.item_failed(f"usage alert for client {client_id}", exc)
    if ctx is not None and recorded:
        ctx.add("usage_alerts", len(recorded))
    return recorded
