"""Who may do what with messages: view to read, add to enqueue, change to cancel or retry,
on the /scheduled/ pages and the API alike (session or token). Superusers pass."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import ScheduledMessage, Status
from tests.users import staff_user

pytestmark = pytest.mark.django_db

VIEW = "messaging.view_scheduledmessage"
ADD = "messaging.add_scheduledmessage"
CHANGE = "messaging.change_scheduledmessage"
NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def message(status: str = Status.PENDING) -> ScheduledMessage:
    return ScheduledMessage.objects.create(
        channel="sms", to="+14155550123", body="See you at 9", send_at=NOW, next_attempt_at=NOW, status=status
    )


def token_api(user: User) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def enqueue(api: APIClient):
    return api.post("/api/messages/", {"channel": "sms", "to": "+14155550123", "body": "Hi"}, format="json")


# --- pages ------------------------------------------------------------------------------
def test_view_only_staff_sees_the_queue_and_the_message_without_cancel_or_retry(client):
    client.force_login(staff_user("viewer", VIEW))
    pending, failed = message(), message(Status.FAILED)
    queue = client.get("/scheduled/")
    assert queue.status_code == 200 and str(pending.pk) in queue.content.decode()
    for shown in (queue, client.get(f"/scheduled/{pending.pk}/"), client.get(f"/scheduled/{failed.pk}/")):
        assert shown.status_code == 200
        html = shown.content.decode()
        assert "/cancel/" not in html and "/retry/" not in html


def test_view_only_staff_cannot_cancel_or_retry_on_the_pages(client):
    client.force_login(staff_user("viewer", VIEW))
    pending, failed = message(), message(Status.FAILED)
    assert client.post(f"/scheduled/{pending.pk}/cancel/").status_code == 403
    assert client.post(f"/scheduled/{failed.pk}/retry/").status_code == 403
    assert ScheduledMessage.objects.get(pk=pending.pk).status == Status.PENDING
    assert ScheduledMessage.objects.get(pk=failed.pk).status == Status.FAILED


def test_staff_without_view_permission_gets_403_not_a_login_loop(client):
    client.force_login(staff_user("stranger"))
    pending = message()
    for path in ("/scheduled/", f"/scheduled/{pending.pk}/"):
        assert client.get(path).status_code == 403


def test_staff_with_change_sees_and_uses_cancel(client):
    client.force_login(staff_user("operator", VIEW, CHANGE))
    pending = message()
    assert f"/scheduled/{pending.pk}/cancel/" in client.get(f"/scheduled/{pending.pk}/").content.decode()
    assert client.post(f"/scheduled/{pending.pk}/cancel/").status_code == 302
    assert ScheduledMessage.objects.get(pk=pending.pk).status == Status.CANCELLED


# --- API --------------------------------------------------------------------------------
def test_view_only_token_reads_but_cannot_enqueue_cancel_or_retry():
    api = token_api(staff_user("viewer", VIEW))
    pending, failed = message(), message(Status.FAILED)
    assert api.get("/api/messages/").status_code == 200
    assert api.get(f"/api/messages/{pending.pk}/").status_code == 200
    refused = enqueue(api)
    assert refused.status_code == 403 and set(refused.json()) == {"error", "fields"}
    assert api.post(f"/api/messages/{pending.pk}/cancel/").status_code == 403
    assert api.post(f"/api/messages/{failed.pk}/retry/").status_code == 403
    assert ScheduledMessage.objects.count() == 2
    assert ScheduledMessage.objects.get(pk=pending.pk).status == Status.PENDING
    assert ScheduledMessage.objects.get(pk=failed.pk).status == Status.FAILED


def test_staff_without_view_permission_cannot_list_or_read():
    # DRF's own DjangoModelPermissions lets any authenticated user GET.
    api = token_api(staff_user("stranger"))
    pending = message()
    assert api.get("/api/messages/").status_code == 403
    assert api.get(f"/api/messages/{pending.pk}/").status_code == 403


def test_add_permission_enqueues_but_does_not_cancel():
    api = token_api(staff_user("sender", ADD))
    assert enqueue(api).status_code == 201
    queued = ScheduledMessage.objects.get()
    assert api.post(f"/api/messages/{queued.pk}/cancel/").status_code == 403
    assert ScheduledMessage.objects.get(pk=queued.pk).status == Status.PENDING


def test_change_permission_cancels_and_retries():
    api = token_api(staff_user("fixer", CHANGE))
    pending, failed = message(), message(Status.FAILED)
    assert api.post(f"/api/messages/{pending.pk}/cancel/").status_code == 200
    assert api.post(f"/api/messages/{failed.pk}/retry/").status_code == 200
    assert enqueue(api).status_code == 403


def test_view_only_session_is_checked_as_a_token_is():
    api = APIClient()
    api.force_login(staff_user("viewer", VIEW))
    assert api.get("/api/messages/").status_code == 200
    assert enqueue(api).status_code == 403


def test_superuser_passes_without_explicit_permissions():
    api = token_api(User.objects.create_superuser("root", password="pw-for-tests"))
    assert enqueue(api).status_code == 201
    assert api.post(f"/api/messages/{ScheduledMessage.objects.get().pk}/cancel/").status_code == 200
