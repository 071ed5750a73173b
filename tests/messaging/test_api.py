"""The enqueue API over HTTP: DRF token / staff session auth, real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import Client, DeliveryAttempt, Lead, Outcome, ScheduledMessage, Status
from messaging.services import schedule_message

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
ALICE = "+14155550123"


def make_user(*, staff: bool = True, name: str = "operator") -> User:
    return User.objects.create_user(username=name, password="pw-for-tests", is_staff=staff)


def token_client(user: User) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


@pytest.fixture
def api() -> APIClient:
    return token_client(make_user())


def make_client(name: str = "Acme Dental") -> Client:
    return Client.objects.create(name=name, timezone="America/New_York")


def make_lead(client: Client, phone: str = ALICE) -> Lead:
    return Lead.objects.create(client=client, name="Alice", phone=phone)


def make_message(**fields) -> ScheduledMessage:
    values = {"channel": "sms", "to": ALICE, "body": "See you at 9", "send_at": NOW, "next_attempt_at": NOW}
    values.update(fields)
    return ScheduledMessage.objects.create(**values)


def sms(**fields) -> dict:
    return {"channel": "sms", "to": "(415) 555-0123", "body": "See you at 9", **fields}


# -- Enqueue ------------------------------------------------------------------------------


def test_enqueue_sms_answers_201_with_the_queued_message(api):
    response = api.post("/api/messages/", sms(send_at="2026-11-29T09:00:00-05:00"), format="json")

    assert response.status_code == 201
    body = response.json()
    message = ScheduledMessage.objects.get()
    assert body["id"] == str(message.pk)
    assert (body["channel"], body["to"], body["status"], body["source"]) == ("sms", ALICE, "pending", "api")
    assert message.send_at == datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    assert body["send_at"] == "2026-11-29T14:00:00Z"
    assert set(body) >= {"attempts", "max_attempts", "next_attempt_at", "provider_message_id", "delivered_at"}


def test_enqueue_email_keeps_subject_and_html(api):
    payload = {"channel": "email", "to": "Bob@Example.com", "body": "Hi", "subject": "Hello", "html": "<p>Hi</p>"}

    response = api.post("/api/messages/", payload, format="json")

    assert response.status_code == 201
    message = ScheduledMessage.objects.get()
    assert (message.to, message.subject, message.html) == ("bob@example.com", "Hello", "<p>Hi</p>")


def test_enqueue_without_send_at_is_due_now(api):
    with time_machine.travel(NOW, tick=False):
        response = api.post("/api/messages/", sms(), format="json")

    assert response.status_code == 201
    message = ScheduledMessage.objects.get()
    assert message.send_at == message.next_attempt_at == NOW


def test_enqueue_links_client_and_lead(api):
    client = make_client()
    lead = make_lead(client)

    response = api.post("/api/messages/", sms(client=client.pk, lead=lead.pk), format="json")

    assert response.status_code == 201
    assert (response.json()["client"], response.json()["lead"]) == (client.pk, lead.pk)


def test_enqueue_for_a_lead_alone_goes_out_as_the_leads_client(api):
    lead = make_lead(make_client())

    response = api.post("/api/messages/", sms(lead=lead.pk), format="json")

    assert response.status_code == 201
    assert ScheduledMessage.objects.get().client_id == lead.client_id


def test_same_idempotency_key_answers_200_with_the_existing_message(api):
    first = api.post("/api/messages/", sms(idempotency_key="reminder:42"), format="json")
    second = api.post("/api/messages/", sms(idempotency_key="reminder:42"), format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert ScheduledMessage.objects.count() == 1


def test_api_keys_never_collide_with_the_keys_jobs_derive(api):
    job_message, _ = schedule_message(channel="sms", to=ALICE, body="text back", idempotency_key="missed-call:42")

    response = api.post("/api/messages/", sms(idempotency_key="missed-call:42"), format="json")

    assert response.status_code == 201 and response.json()["id"] != str(job_message.pk)
    assert response.json()["idempotency_key"] == "api:missed-call:42"


def test_blank_idempotency_key_is_no_key(api):
    api.post("/api/messages/", sms(idempotency_key=""), format="json")
    api.post("/api/messages/", sms(idempotency_key=""), format="json")

    assert list(ScheduledMessage.objects.values_list("idempotency_key", flat=True)) == [None, None]


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        (sms(to="555-not-a-number"), "to", "phone number"),
        ({"channel": "email", "to": "not-an-address", "body": "Hi", "subject": "Hi"}, "to", "email"),
        (sms(send_at="tomorrow at nine"), "send_at", "ISO 8601"),
        (sms(send_at="2026-11-29T09:00:00"), "send_at", "no timezone offset"),
        (sms(channel="fax"), "channel", "use 'sms' or 'email'"),
        ({"channel": "sms", "to": ALICE}, "body", "required"),
        (sms(body="   "), "body", "blank"),
        ({"channel": "email", "to": "bob@example.com", "body": "Hi"}, "subject", "needs a subject"),
        (sms(client=999_999), "client", "does not exist"),
        (sms(lead=999_999), "lead", "does not exist"),
    ],
    ids=[
        "bad-phone",
        "bad-email",
        "unparseable-send-at",
        "naive-send-at",
        "unknown-channel",
        "missing-body",
        "blank-body",
        "email-without-subject",
        "unknown-client",
        "unknown-lead",
    ],
)
def test_invalid_enqueue_answers_400_naming_the_field(api, payload, field, says):
    response = api.post("/api/messages/", payload, format="json")

    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert says in " ".join(errors[field])
    assert not ScheduledMessage.objects.exists()


def test_lead_of_another_client_is_refused(api):
    lead = make_lead(make_client("Acme"))
    other = make_client("Bravo")

    response = api.post("/api/messages/", sms(client=other.pk, lead=lead.pk), format="json")

    assert response.status_code == 400
    assert "belongs to client" in response.json()["lead"][0]


# -- List and detail ------------------------------------------------------------------------


def test_list_is_newest_send_at_first(api):
    old = make_message(send_at=NOW - timedelta(days=1))
    new = make_message(send_at=NOW + timedelta(days=1))
    middle = make_message(send_at=NOW)

    response = api.get("/api/messages/")

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == [str(new.pk), str(middle.pk), str(old.pk)]


def test_list_filters_by_status(api):
    failed = make_message(status=Status.FAILED)
    make_message(status=Status.PENDING)

    response = api.get("/api/messages/", {"status": "failed"})

    assert [m["id"] for m in response.json()["results"]] == [str(failed.pk)]


def test_list_filters_by_channel(api):
    email = make_message(channel="email", to="bob@example.com", subject="Hi")
    make_message(channel="sms")

    response = api.get("/api/messages/", {"channel": "email"})

    assert [m["id"] for m in response.json()["results"]] == [str(email.pk)]


@pytest.mark.parametrize(("name", "value"), [("status", "lost"), ("channel", "fax")])
def test_list_with_an_unknown_filter_value_answers_400(api, name, value):
    response = api.get("/api/messages/", {name: value})

    assert response.status_code == 400
    assert "use one of" in response.json()[name][0]


def test_list_pages_with_limit_and_offset(api):
    for hours in range(5):
        make_message(send_at=NOW + timedelta(hours=hours))

    page = api.get("/api/messages/", {"limit": 2, "offset": 2}).json()

    assert page["count"] == 5
    assert [m["send_at"] for m in page["results"]] == ["2026-11-28T17:00:00Z", "2026-11-28T16:00:00Z"]
    assert "offset=4" in page["next"]


def test_list_reads_a_page_in_two_queries(django_assert_num_queries):
    api = APIClient()
    api.force_authenticate(make_user())
    client = make_client()
    for _ in range(3):
        make_message(client=client, lead=make_lead(client))

    with django_assert_num_queries(2):  # count + page; client and lead ids need no join
        response = api.get("/api/messages/")

    assert len(response.json()["results"]) == 3


def test_detail_includes_delivery_attempts_oldest_first(api):
    message = make_message(status=Status.SENT)
    DeliveryAttempt.objects.create(
        message=message,
        started_at=NOW,
        duration_ms=1200,
        outcome=Outcome.TRANSIENT,
        http_status=503,
        error_code="503",
        error="Service Unavailable",
    )
    DeliveryAttempt.objects.create(message=message, started_at=NOW + timedelta(minutes=1), outcome=Outcome.SENT)

    response = api.get(f"/api/messages/{message.pk}/")

    assert response.status_code == 200
    attempts = response.json()["delivery_attempts"]
    assert [a["outcome"] for a in attempts] == ["transient", "sent"]
    assert attempts[0] == {
        "started_at": "2026-11-28T15:00:00Z",
        "duration_ms": 1200,
        "outcome": "transient",
        "http_status": 503,
        "error_code": "503",
        "error": "Service Unavailable",
    }


def test_detail_of_an_unknown_id_is_404(api):
    response = api.get("/api/messages/00000000-0000-0000-0000-000000000000/")

    assert response.status_code == 404


# -- Cancel and retry -----------------------------------------------------------------------


def test_cancel_a_pending_message_answers_200_cancelled(api):
    message = make_message()

    response = api.post(f"/api/messages/{message.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    message.refresh_from_db()
    assert message.status == Status.CANCELLED


def test_cancel_a_sent_message_answers_409_saying_why(api):
    message = make_message(status=Status.SENT)

    response = api.post(f"/api/messages/{message.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["detail"] == "Only pending messages can be cancelled; this one is sent."
    message.refresh_from_db()
    assert message.status == Status.SENT


def test_cancel_an_unknown_message_is_404(api):
    response = api.post("/api/messages/00000000-0000-0000-0000-000000000000/cancel/")

    assert response.status_code == 404


def test_retry_a_failed_message_queues_it_with_fresh_attempts(api):
    message = make_message(status=Status.FAILED, attempts=5, last_error="invalid number")

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        response = api.post(f"/api/messages/{message.pk}/retry/")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    assert response.json()["next_attempt_at"] == "2026-11-28T16:00:00Z"


def test_retry_a_pending_message_answers_409_saying_why(api):
    message = make_message()

    response = api.post(f"/api/messages/{message.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["detail"] == "Only failed or undelivered messages can be retried; this one is pending."


def test_retry_an_unknown_message_is_404(api):
    response = api.post("/api/messages/00000000-0000-0000-0000-000000000000/retry/")

    assert response.status_code == 404


# -- Auth -----------------------------------------------------------------------------------


def test_no_credentials_is_401_asking_for_a_token():
    response = APIClient().get("/api/messages/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_unknown_token_is_401():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")

    assert api.get("/api/messages/").status_code == 401


def test_token_of_a_non_staff_user_is_403():
    api = token_client(make_user(staff=False))

    response = api.post("/api/messages/", sms(), format="json")

    assert response.status_code == 403
    assert not ScheduledMessage.objects.exists()


def test_session_of_a_non_staff_user_is_403():
    api = APIClient()
    api.force_login(make_user(staff=False))

    assert api.get("/api/messages/").status_code == 403


def test_staff_session_may_enqueue():
    api = APIClient()
    api.force_login(make_user())

    assert api.post("/api/messages/", sms(), format="json").status_code == 201
