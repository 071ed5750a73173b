"""The /scheduled/ pages: the delivery queue for staff, server-rendered.

Views parse the request, call one selector or service, and render; the reads live in
`messaging.selectors`, the state changes in `messaging.services`. A staff login is needed
(else the admin login page); then reading needs messaging.view_scheduledmessage and
cancel/retry messaging.change_scheduledmessage, or the answer is 403.
"""

import logging
import uuid
from functools import cached_property

from django import forms
from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from messaging import selectors
from messaging.delivery.suppressions import suppression_of
from messaging.models import Channel, Client, ScheduledMessage, Status
from messaging.services import cancel_message, retry_message
from messaging.waiting import annotate_waiting, why_waiting

logger = logging.getLogger("messaging.web.pages")

PAGE_SIZE = 50
VIEW = "messaging.view_scheduledmessage"
CHANGE = "messaging.change_scheduledmessage"


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "any status"), *Status.choices], required=False)
    channel = forms.ChoiceField(choices=[("", "any channel"), *Channel.choices], required=False)
    client = forms.TypedChoiceField(coerce=int, empty_value=None, required=False)
    date_from = forms.DateField(required=False, label="send from", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="send to", widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(
        required=False,
        max_length=254,
        label="recipient",
        widget=forms.TextInput(attrs={"placeholder": "+14155550123, name@example.com or part of one"}),
    )

    def __init__(self, data: object, *, clients: list[tuple[int, str]]) -> None:
        super().__init__(data)
        self.fields["client"].choices = [("", "any client"), *clients]

    def to_filters(self) -> selectors.QueueFilters:
        """The valid part of the query string; an invalid field is shown as an error and ignored."""
        self.is_valid()
        data = self.cleaned_data
        return selectors.QueueFilters(
            status=data.get("status") or "",
            channel=data.get("channel") or "",
            client_id=data.get("client"),
            sent_from=data.get("date_from"),
            sent_to=data.get("date_to"),
            recipient=data.get("q") or "",
        )


class KnownCountPaginator(Paginator):
    """A Paginator told its total (already counted per status), so it runs no COUNT(*) of its own."""

    def __init__(self, object_list: object, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


@staff_member_required
@permission_required(VIEW, raise_exception=True)
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    clients = list(Client.objects.order_by("name").values_list("pk", "name"))
    form = QueueFilterForm(request.GET, clients=clients)
    filters = form.to_filters()
    counts = selectors.count_by_status(filters)
    total = counts[filters.status] if filters.status else counts["all"]
    page = KnownCountPaginator(selectors.filter_queue(filters), PAGE_SIZE, count=total).get_page(
        request.GET.get("page")
    )
    status_tabs = [("", "All", counts["all"])] + [(value, label, counts[value]) for value, label in Status.choices]
    rows = annotate_waiting(page.object_list, timezone.now())
    return render(
        request,
        "messaging/queue.html",
        {"form": form, "filters": filters, "counts": counts, "status_tabs": status_tabs, "page": page, "rows": rows},
    )


@staff_member_required
@permission_required(VIEW, raise_exception=True)
@require_GET
def message_detail(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    message = selectors.get_message(message_id)
    attempts = list(selectors.attempts_of(message))
    return render(
        request,
        "messaging/message_detail.html",
        {
            "message": message,
            "attempts": attempts,
            "suppression": suppression_of(message),
            "waiting": why_waiting(message, timezone.now()),
        },
    )


@staff_member_required
@permission_required(CHANGE, raise_exception=True)
@require_GET
def cancel_confirm(request: HttpRequest, message_id: uuid.UUID) -> HttpResponse:
    """The question before a cancel, naming the message; the answer POSTs to `cancel`."""
    message = selectors.get_message(message_id)
    return render(request, "messaging/cancel_confirm.html", {"message": message, "next": _safe_next(request)})


@staff_member_required
@permission_required(CHANGE, raise_exception=True)
@require_POST
def cancel(request: HttpRequest, message_id: uuid.UUID) -> HttpResponseRedirect:
    message = selectors.get_message(message_id)
    if cancel_message(message):
        _log_action(request, "message_cancelled_by_operator", message)
        flash.success(request, f"Cancelled {message.label}.")
    else:
        flash.error(request, f"{message.label} can no longer be cancelled: it is {message.status}.")
    return _back(request, message)


@staff_member_required
@permission_required(CHANGE, raise_exception=True)
@require_POST
def retry(request: HttpRequest, message_id: uuid.UUID) -> HttpResponseRedirect:
    message = selectors.get_message(message_id)
    if retry_message(message):
        _log_action(request, "message_retried_by_operator", message)
        flash.success(request, f"Queued {message.label} again: it goes out on the next delivery run.")
    else:
        flash.error(request, f"{message.label} cannot be retried: it is {message.status}.")
    return _back(request, message)


def _log_action(request: HttpRequest, event: str, message: ScheduledMessage) -> None:
    logger.info(event, extra={"message_id": str(message.pk), "user": request.user.get_username()})


def _safe_next(request: HttpRequest) -> str:
    """The `next` the request carries (form or query string) if it stays on this site, else ""."""
    target = request.POST.get("next", "") or request.GET.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return ""


def _back(request: HttpRequest, message: ScheduledMessage) -> HttpResponseRedirect:
    """To the page the button was on (the list keeps its filters), never off this site."""
    return redirect(_safe_next(request) or reverse("scheduled-detail", args=[message.pk]))
