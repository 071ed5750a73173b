"""The notifications page (marks what it shows as read) and each user's preferences."""

from django.apps import apps
from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from notifications.models import Event, Notification
from notifications.services import preferences_of

PAGE_SIZE = 100


@staff_member_required
@require_http_methods(["GET"])
def inbox(request: HttpRequest) -> HttpResponse:
    shown = list(Notification.objects.filter(user=request.user)[:PAGE_SIZE])
    unread = [n.pk for n in shown if n.read_at is None]
    response = render(request, "notifications/inbox.html", {"notifications": shown, "unread_ids": set(unread)})
    Notification.objects.filter(pk__in=unread).update(read_at=timezone.now())
    return response


@staff_member_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    prefs = preferences_of(request.user)
    # Read through the app registry: notifications is told about jobs, it does not import them.
    job_names = list(apps.get_model("scheduling", "Job").objects.order_by("name").values_list("name", flat=True))
    if request.method == "POST":
        chosen = {
            channel: [e for e in request.POST.getlist(channel) if e in Event.values] for channel in ("in_app", "email")
        }
        prefs.in_app, prefs.email = chosen["in_app"], chosen["email"]
        prefs.jobs = [name for name in request.POST.getlist("jobs") if name in job_names]
        prefs.save()
        flash.success(request, "Saved your notification preferences.")
        return redirect("notification-preferences")
    rows = [(value, label, value in prefs.in_app, value in prefs.email) for value, label in Event.choices]
    return render(
        request,
        "notifications/preferences.html",
        {"rows": rows, "job_names": job_names, "chosen_jobs": set(prefs.jobs), "has_email": bool(request.user.email)},
    )
