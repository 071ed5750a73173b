"""Tell the staff users who asked: a row in the app, an email, or both.

Callers decide *when* (once per incident: scheduling.alerts moves a job's alert state with a
conditional UPDATE and calls this only when the state changed); this decides *whom*.
"""

import logging

from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction

from notifications.models import DEFAULT_EMAIL, DEFAULT_IN_APP, Notification, Preference

logger = logging.getLogger("notifications")


def preferences_of(user: object) -> Preference:
    prefs, _ = Preference.objects.get_or_create(
        user=user, defaults={"in_app": list(DEFAULT_IN_APP), "email": list(DEFAULT_EMAIL)}
    )
    return prefs


def notify(event: str, subject: str, body: str = "", *, job: str = "", link: str = "", perm: str = "") -> int:
    """Record `event` for every active staff user who wants it in the app, email those who
    want it by email; returns how many users heard of it. With `perm` ("app.view_model"),
    only users allowed to see what it is about (superusers always are)."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True)
    if perm:
        users = users.filter(pk__in=get_user_model().objects.with_perm(perm, include_superusers=True).values("pk"))
    users = list(users.select_related("notification_prefs"))
    rows, emails, told = [], [], set()
    for user in users:
        prefs = getattr(user, "notification_prefs", None) or preferences_of(user)
        if prefs.wants(event, job, "in_app"):
            rows.append(Notification(user=user, event=event, job=job, subject=subject[:200], body=body, link=link))
            told.add(user.pk)
        if prefs.wants(event, job, "email") and user.email:
            emails.append(user.email)
            told.add(user.pk)
    with transaction.atomic():
        Notification.objects.bulk_create(rows)
    if emails:
        try:
            send_mail(subject, body, None, emails)
        except Exception:  # a notification that cannot be mailed must not fail what raised it
            logger.exception("notification_email_failed", extra={"event": event, "job": job})
    logger.info("notified", extra={"event": event, "job": job, "in_app": len(rows), "emails": len(emails)})
    return len(told)


def unread_count(user: object) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
