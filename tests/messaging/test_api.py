"""The enqueue API over HTTP: DRF token / staff session auth, real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import include, path
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.test import APIClient
from rest_framework.views import APIView

from messaging.models import Client, DeliveryAttempt, Lead, Outcome, ScheduledMessage, Status
from messaging.services import schedule_message
from tests.conftest import manage_py, subprocess_env
from tests.users import MESSAGE_OPERATOR, grant

pytestmark = pytest.mark.django_db

SECRET_IN_THE_EXCEPTION = "postgres://app:hunter2@db.internal/prod"


class ExplodingView(APIView):
    """A DRF view with a bug: its exception text holds a secret that must never be answered."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request: Request) -> None:
        raise RuntimeError(f"could not connect to {SECRET_IN_THE_EXCEPTION}")


def exploding_page(request: HttpRequest) -> None:
    raise RuntimeError(f"could not connect to {SECRET_IN_THE_EXCEPTION}")


# The project's URLs plus endpoints that fail, for tests marked `pytest.mark.urls(__name__)`.
urlpatterns = [
    path("api/test-explode/", ExplodingView.as_view()),
    path("api/test-explode-page/", exploding_page),
    path("test-explode-page/", exploding_page),
    path("", include("config.urls")),
]

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
ALICE = "+14155550123"


def make_user(*, staff: bool = True, name: str = "operator", perms: tuple[str, ...] = MESSAGE_OPERATOR) -> User:
    """A user with every ScheduledMessage permission unless told otherwise."""
    return grant(User.objects.create_user(username=name, password="pw-for-tests", is_staff=staff), *perms)


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
    errors = response.json()["fields"]
    assert list(errors) == [field]
    assert says in " ".join(errors[field])
    assert says in response.json()["error"]
    assert not ScheduledMessage.objects.exists()


def test_lead_of_another_client_is_refused(api):
    lead = make_lead(make_client("Acme"))
    other = make_client("Bravo")

    response = api.post("/api/messages/", sms(client=other.pk, lead=lead.pk), format="json")

    assert response.status_code == 400
    assert "belongs to client" in response.json()["fields"]["lead"][0]


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
    assert "use one of" in response.json()["fields"][name][0]


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

    # The user's and their groups' permissions, then count + page; client and lead ids need no join.
    with django_assert_num_queries(2 + 2):
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
    assert response.json() == {"error": "No message with id 00000000-0000-0000-0000-000000000000.", "fields": {}}


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
    assert response.json() == {"error": "Only pending messages can be cancelled; this one is sent.", "fields": {}}
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
    assert response.json() == {
        "error": "Only failed or undelivered messages can be retried; this one is pending.",
        "fields": {},
    }


def test_retry_an_unknown_message_is_404(api):
    response = api.post("/api/messages/00000000-0000-0000-0000-000000000000/retry/")

    assert response.status_code == 404


# -- Auth -----------------------------------------------------------------------------------


def test_no_credentials_is_401_asking_for_a_token():
    response = APIClient().get("/api/messages/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Authentication credentials were not provided.", "fields": {}}


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


# -- Unknown fields ---------------------------------------------------------------------------


def test_a_misspelt_field_is_400_suggesting_the_known_one(api):
    response = api.post("/api/messages/", sms(sendAt="2026-12-24T09:00:00-05:00"), format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"sendAt": ["Unknown field 'sendAt'; did you mean 'send_at'?"]}
    assert "did you mean 'send_at'?" in response.json()["error"]
    assert not ScheduledMessage.objects.exists()


def test_an_unknown_field_unlike_any_known_one_lists_the_fields(api):
    response = api.post("/api/messages/", sms(priority="high"), format="json")

    assert response.status_code == 400
    (reason,) = response.json()["fields"]["priority"]
    assert reason.startswith("Unknown field 'priority'; the fields are: channel, to, body, subject, html, send_at")


def test_unknown_fields_are_named_with_the_other_errors_at_once(api):
    response = api.post("/api/messages/", sms(channel="fax", idempotencyKey="k-1", colour="red"), format="json")

    assert response.status_code == 400
    fields = response.json()["fields"]
    assert set(fields) == {"channel", "idempotencyKey", "colour"}
    assert fields["idempotencyKey"] == ["Unknown field 'idempotencyKey'; did you mean 'idempotency_key'?"]


# -- Size limits ----------------------------------------------------------------------------


def email_payload(**fields) -> dict:
    return {"channel": "email", "to": "bob@example.com", "subject": "Hello", "body": "Hi", **fields}


def test_sms_body_of_1600_characters_is_queued(api):
    assert api.post("/api/messages/", sms(body="x" * 1600), format="json").status_code == 201


def test_sms_body_over_1600_characters_is_400(api):
    response = api.post("/api/messages/", sms(body="x" * 1601), format="json")

    assert response.status_code == 400
    (reason,) = response.json()["fields"]["body"]
    assert "at most 1,600 characters" in reason and "this one is 1,601" in reason
    assert not ScheduledMessage.objects.exists()


def test_an_emoji_counts_as_two_sms_characters_as_at_twilio(api):
    response = api.post("/api/messages/", sms(body="x" * 1599 + "\N{GRINNING FACE}"), format="json")

    assert response.status_code == 400
    assert "this one is 1,601" in response.json()["fields"]["body"][0]


@pytest.mark.parametrize("field", ["html", "body"])
def test_email_part_over_256_kib_is_400(api, field):
    response = api.post("/api/messages/", email_payload(**{field: "x" * (256 * 1024 + 1)}), format="json")

    assert response.status_code == 400
    assert "at most 256 KiB" in response.json()["fields"][field][0]
    assert not ScheduledMessage.objects.exists()


def test_email_size_is_counted_in_utf8_bytes(api):
    html = "\N{LATIN SMALL LETTER E WITH ACUTE}" * (128 * 1024 + 1)  # 2 bytes each: one byte over

    response = api.post("/api/messages/", email_payload(html=html), format="json")

    assert response.status_code == 400
    assert "262,146 bytes" in response.json()["fields"]["html"][0]


def test_email_part_of_256_kib_is_queued(api):
    response = api.post("/api/messages/", email_payload(html="x" * 256 * 1024), format="json")

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"channel": "sms", "to": ALICE, "body": "x" * 1601}, "body"),
        ({"channel": "email", "to": "bob@example.com", "subject": "S" * 301, "body": "Hi"}, "subject"),
        ({"channel": "sms", "to": ALICE, "subject": "S" * 301, "body": "Hi"}, "subject"),
        ({"channel": "email", "to": "bob@example.com", "subject": "Hi", "body": "x" * 262_145}, "body"),
        ({"channel": "email", "to": "bob@example.com", "subject": "Hi", "body": "Hi", "html": "x" * 262_145}, "html"),
        ({"channel": "sms", "to": ALICE, "body": "Hi", "send_at": NOW + timedelta(days=366)}, "send_at"),
    ],
    ids=["sms-body", "email-subject", "sms-subject", "email-body", "email-html", "send-at-past-horizon"],
)
def test_schedule_message_itself_refuses_what_the_api_refuses(fields, field):
    # Jobs call the service directly: the limits hold for them too, naming the field.
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError) as refused:
        schedule_message(**fields, source="test")

    assert list(refused.value.message_dict) == [field]
    assert not ScheduledMessage.objects.exists()


def test_schedule_message_names_a_bad_recipient_as_to():
    with pytest.raises(ValidationError) as refused:
        schedule_message(channel="sms", to="555-not-a-number", body="Hi")

    assert "phone number" in refused.value.message_dict["to"][0]


# -- Horizon --------------------------------------------------------------------------------


def test_send_at_a_year_ahead_is_queued(api):
    with time_machine.travel(NOW, tick=False):
        response = api.post("/api/messages/", sms(send_at="2027-11-28T15:00:00Z"), format="json")

    assert response.status_code == 201


def test_send_at_past_the_horizon_is_400(api):
    with time_machine.travel(NOW, tick=False):
        response = api.post("/api/messages/", sms(send_at="2027-11-28T15:00:01Z"), format="json")

    assert response.status_code == 400
    (reason,) = response.json()["fields"]["send_at"]
    assert "more than 365 days ahead" in reason and "2027-11-28T15:00:00+00:00" in reason
    assert not ScheduledMessage.objects.exists()


def test_horizon_follows_the_setting(api, settings):
    settings.ENQUEUE_HORIZON_DAYS = 7

    with time_machine.travel(NOW, tick=False):
        response = api.post("/api/messages/", sms(send_at="2026-12-06T09:00:00-05:00"), format="json")

    assert response.status_code == 400
    assert "more than 7 days ahead" in response.json()["fields"]["send_at"][0]


def test_a_horizon_under_one_day_refuses_to_start():
    env = subprocess_env(ENQUEUE_HORIZON_DAYS="0")
    proc = manage_py("check", env=env, timeout=60)

    assert proc.returncode != 0
    assert "ENQUEUE_HORIZON_DAYS=0 must be 1 or more: fix it in .env." in proc.stderr


# -- Idempotency conflicts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"body": "See you at 10"}, "body"),
        ({"to": "+14155550199"}, "to"),
        ({"channel": "email", "to": "bob@example.com", "subject": "Hi"}, "channel"),
        ({"send_at": "2026-11-29T10:00:00-05:00"}, "send_at"),
    ],
    ids=["body", "recipient", "channel", "send-at"],
)
def test_same_key_for_a_different_message_is_409_naming_what_differs(api, change, field):
    first = api.post(
        "/api/messages/", sms(idempotency_key="reminder:42", send_at="2026-11-29T09:00:00-05:00"), format="json"
    )
    second = api.post(
        "/api/messages/",
        {**sms(idempotency_key="reminder:42", send_at="2026-11-29T09:00:00-05:00"), **change},
        format="json",
    )

    assert (first.status_code, second.status_code) == (201, 409)
    body = second.json()
    assert field in body["fields"]
    assert body["error"].startswith(f"idempotency_key 'reminder:42' is already used by message {first.json()['id']}")
    assert "use a new key" in body["error"]
    assert ScheduledMessage.objects.count() == 1


def test_idempotency_conflict_says_what_the_queued_message_has(api):
    api.post("/api/messages/", sms(idempotency_key="reminder:42"), format="json")

    response = api.post("/api/messages/", sms(idempotency_key="reminder:42", to="+14155550199"), format="json")

    assert response.json()["fields"] == {"to": [f"Differs from the queued message, which has {ALICE}."]}


def test_same_key_with_the_recipient_written_another_way_is_the_same_message(api):
    first = api.post("/api/messages/", sms(idempotency_key="reminder:42", to="(415) 555-0123"), format="json")
    second = api.post("/api/messages/", sms(idempotency_key="reminder:42", to=ALICE), format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]


def test_same_key_and_send_at_in_another_offset_is_the_same_message(api):
    first = api.post("/api/messages/", sms(idempotency_key="k", send_at="2026-11-29T09:00:00-05:00"), format="json")
    second = api.post("/api/messages/", sms(idempotency_key="k", send_at="2026-11-29T14:00:00Z"), format="json")

    assert (first.status_code, second.status_code) == (201, 200)


def test_same_key_without_send_at_retried_later_is_the_same_message(api):
    with time_machine.travel(NOW, tick=False):
        first = api.post("/api/messages/", sms(idempotency_key="k"), format="json")
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        second = api.post("/api/messages/", sms(idempotency_key="k"), format="json")

    assert (first.status_code, second.status_code) == (201, 200)


def test_jobs_reusing_a_key_with_another_text_still_get_the_queued_message():
    # A job re-run may render its text differently for the same event: it must send nothing.
    first, _ = schedule_message(channel="sms", to=ALICE, body="text back", idempotency_key="missed-call:42")
    again, created = schedule_message(channel="sms", to=ALICE, body="text back!", idempotency_key="missed-call:42")

    assert (again.pk, created) == (first.pk, False)


# -- limit and offset -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("limit", "abc"), ("limit", "0"), ("limit", "-5"), ("limit", "501"), ("offset", "-1"), ("offset", "2.5")],
)
def test_a_bad_page_parameter_is_400_naming_it(api, name, value):
    response = api.get("/api/messages/", {name: value})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == [name]
    assert f"{name} must be a whole number" in response.json()["fields"][name][0]


def test_limit_of_500_is_the_largest_page(api):
    make_message()

    response = api.get("/api/messages/", {"limit": 500})

    assert response.status_code == 200 and len(response.json()["results"]) == 1


# -- Every error under /api/ is JSON --------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize(
    "url", ["/api/messages/not-a-uuid/", "/api/messages/not-a-uuid/cancel/", "/api/no-such-thing/"]
)
def test_a_url_that_matches_nothing_under_api_is_json_404(api, debug, url):
    response = api.get(url)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": f"Not found: nothing at {url}; check the URL and the id.", "fields": {}}


def test_a_page_outside_api_keeps_its_html_404(api, debug):
    response = api.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("url", ["/api/test-explode/", "/api/test-explode-page/"], ids=["drf-view", "django-view"])
def test_an_unhandled_exception_under_api_is_json_500_without_its_text(debug, url):
    response = APIClient(raise_request_exception=False).get(url)

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "Internal server error: it has been logged; try again later or tell the operators.",
        "fields": {},
    }
    assert b"hunter2" not in response.content and b"Traceback" not in response.content


@pytest.mark.urls(__name__)
def test_an_unhandled_exception_outside_api_keeps_its_html_page(debug):
    response = APIClient(raise_request_exception=False).get("/test-explode-page/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_a_body_over_the_upload_limit_is_json_413(api, settings, debug):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api.post("/api/messages/", sms(body="x" * 1200), format="json")

    assert response.status_code == 413
    assert response.json()["error"].startswith("The request body is ")
    assert "the limit is 1,000 bytes" in response.json()["error"]
    assert not ScheduledMessage.objects.exists()


def test_malformed_json_is_json_400(api):
    response = api.post("/api/messages/", data='{"channel": "sms",', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("JSON parse error")
    assert response.json()["fields"] == {}


def test_a_json_list_instead_of_an_object_is_400(api):
    response = api.post("/api/messages/", data=[sms()], format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "Invalid data. Expected a dictionary, but got list."
