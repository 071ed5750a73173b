"""Reads of the delivery queue that the /scheduled/ pages (and anything else listing the
queue) share: filtering, counts per status, one message with its attempts."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from messaging.models import Channel, DeliveryAttempt, ScheduledMessage, Status
from messaging.services import normalize_recipient


@dataclass(frozen=True)
class QueueFilters:
    """What the queue page may narrow by; None (or "") means "any"."""

    status: str = ""
    channel: str = ""
    client_id: int | None = None
    sent_from: date | None = None  # send_at on or after this day (current timezone)
    sent_to: date | None = None  # send_at on or before this day (current timezone)
    recipient: str = ""


def _start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def recipient_condition(text: str) -> Q:
    """A full phone number or address matches `to` exactly (the index serves it, and
    "+1 (415) 555-0123" finds "+14155550123"); anything else is a substring search."""
    text = text.strip()
    for channel in (Channel.SMS, Channel.EMAIL):
        try:
            return Q(to=normalize_recipient(channel, text))
        except ValidationError:
            continue
    return Q(to__icontains=text)


def queue_without_status(filters: QueueFilters) -> QuerySet[ScheduledMessage]:
    """The queue narrowed by every filter except status (what the per-status counts count)."""
    qs = ScheduledMessage.objects.all()
    if filters.channel:
        qs = qs.filter(channel=filters.channel)
    if filters.client_id is not None:
        qs = qs.filter(client_id=filters.client_id)
    if filters.sent_from is not None:
        qs = qs.filter(send_at__gte=_start_of_day(filters.sent_from))
    if filters.sent_to is not None:
        qs = qs.filter(send_at__lt=_start_of_day(filters.sent_to + timedelta(days=1)))
    if filters.recipient.strip():
        qs = qs.filter(recipient_condition(filters.recipient))
    return qs


def filter_queue(filters: QueueFilters) -> QuerySet[ScheduledMessage]:
    """The queue narrowed by every filter, newest send time first, client joined."""
    qs = queue_without_status(filters)
    if filters.status:
        qs = qs.filter(status=filters.status)
    # The id breaks ties so a page boundary never repeats or skips a row.
    # lead__client: the quiet hours of a waiting SMS (messaging.waiting), without a query per row.
    return qs.select_related("client", "lead__client").order_by("-send_at", "-id")


def count_by_status(filters: QueueFilters) -> dict[str, int]:
    """Messages per status (and "all") under the non-status filters, in one aggregate query."""
    per_status = {value: Count("pk", filter=Q(status=value)) for value in Status.values}
    return queue_without_status(filters).aggregate(all=Count("pk"), **per_status)


def get_message(message_id: uuid.UUID) -> ScheduledMessage:
    """One message with its client, lead and lead's client joined; Http404 when there is none."""
    return get_object_or_404(ScheduledMessage.objects.select_related("client", "lead__client"), pk=message_id)


def attempts_of(message: ScheduledMessage) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(message=message).order_by("started_at", "id")
