"""Provider webhooks over HTTP with real signatures: Twilio (RequestValidator) and Resend (Svix)."""

import base64
import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client as HttpClient
from twilio.request_validator import RequestValidator

from messaging.models import Client, Conversation, Lead, Message, OptOut, ScheduledMessage, Status
from messaging.web.webhooks import SignatureError, verify_svix_signature

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
TWILIO_TOKEN = "twilio-auth-token-for-tests"
SVIX_KEY = b"resend-signing-key-for-tests-32b"
SVIX_SECRET = "whsec_" + base64.b64encode(SVIX_KEY).decode()
ALICE = "+14155550123"
CLIENT_NUMBER = "+14155550199"
SHARED_NUMBER = "+14155550100"


@pytest.fixture(autouse=True)
def webhook_secrets(settings):
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.RESEND_WEBHOOK_SECRET = SVIX_SECRET
    settings.PUBLIC_BASE_URL = ""


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def make_message(status: str = Status.SENT, channel: str = "sms", provider_id: str = "SM123") -> ScheduledMessage:
    to = ALICE if channel == "sms" else "bob@example.com"
    return ScheduledMessage.objects.create(
        channel=channel, to=to, subject="Hi", body="See you at 9", status=status, provider_message_id=provider_id
    )


def make_client(number: str = CLIENT_NUMBER) -> Client:
    return Client.objects.create(name="Acme Dental", sms_from_number=number)


def post_twilio(path: str, params: dict, *, url: str | None = None, signature: str | None = None):
    signed_url = url or f"http://testserver{path}"
    if signature is None:
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(signed_url, params)
    return HttpClient().post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def twilio_status(sid: str = "SM123", status: str = "delivered", **extra: str):
    params = {"MessageSid": sid, "MessageStatus": status, "To": ALICE, "From": SHARED_NUMBER, **extra}
    return post_twilio("/webhooks/twilio/status/", params)


_inbound_sids = itertools.count(1)


def text_in(body: str, to: str = CLIENT_NUMBER, sender: str = ALICE, sid: str | None = None):
    params = {"MessageSid": sid or f"SMin{next(_inbound_sids)}", "From": sender, "To": to, "Body": body}
    return post_twilio("/webhooks/twilio/inbound/", params)


def svix_signature(msg_id: str, timestamp: str, body: bytes, key: bytes = SVIX_KEY) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def post_resend(event: dict, *, sent_at: datetime = NOW, key: bytes = SVIX_KEY, signature: str | None = None):
    body = json.dumps(event).encode()
    timestamp = str(int(sent_at.timestamp()))
    headers = {
        "HTTP_SVIX_ID": "msg_1",
        "HTTP_SVIX_TIMESTAMP": timestamp,
        "HTTP_SVIX_SIGNATURE": signature or svix_signature("msg_1", timestamp, body, key),
    }
    return HttpClient().post("/webhooks/resend/", body, content_type="application/json", **headers)


def resend_event(event_type: str, email_id: str = "em_1", **data) -> dict:
    return {"type": event_type, "created_at": NOW.isoformat(), "data": {"email_id": email_id, **data}}


def status_of(message: ScheduledMessage) -> str:
    message.refresh_from_db()
    return message.status


# -- Svix verification ----------------------------------------------------------------------


def verify(body: bytes = b'{"a":1}', *, timestamp: datetime = NOW, signatures: str | None = None, now=NOW):
    ts = str(int(timestamp.timestamp()))
    verify_svix_signature(
        secret=SVIX_SECRET,
        msg_id="msg_1",
        timestamp=ts,
        signatures=signatures if signatures is not None else svix_signature("msg_1", ts, body),
        body=body,
        now=now,
    )


def test_svix_signature_over_id_timestamp_and_body_is_accepted():
    verify()


def test_svix_signature_accepts_any_valid_entry_of_a_rotated_list():
    ts = str(int(NOW.timestamp()))
    good = svix_signature("msg_1", ts, b'{"a":1}')
    verify(signatures=f"v1,b2xkLXNpZ25hdHVyZQ== {good}")


def test_svix_signature_of_another_body_is_refused():
    ts = str(int(NOW.timestamp()))
    with pytest.raises(SignatureError, match="no valid v1 signature"):
        verify(b'{"a":2}', signatures=svix_signature("msg_1", ts, b'{"a":1}'))


def test_svix_signature_with_another_key_is_refused():
    ts = str(int(NOW.timestamp()))
    with pytest.raises(SignatureError):
        verify(signatures=svix_signature("msg_1", ts, b'{"a":1}', key=b"another-key"))


def test_svix_signature_of_another_version_is_refused():
    ts = str(int(NOW.timestamp()))
    with pytest.raises(SignatureError):
        verify(signatures=svix_signature("msg_1", ts, b'{"a":1}').replace("v1,", "v2,"))


def test_svix_timestamp_older_than_five_minutes_is_refused():
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        verify(timestamp=NOW - timedelta(minutes=5, seconds=1))


def test_svix_timestamp_in_the_future_is_refused():
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        verify(timestamp=NOW + timedelta(minutes=6))


def test_svix_missing_headers_are_refused():
    with pytest.raises(SignatureError, match="missing"):
        verify(signatures="")


# -- Resend events --------------------------------------------------------------------------


def test_resend_delivered_marks_the_email_delivered():
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"))

    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (Status.DELIVERED, NOW)


def test_resend_bounce_marks_the_email_undelivered():
    message = make_message(channel="email", provider_id="em_1")

    post_resend(resend_event("email.bounced", bounce={"type": "Permanent", "message": "mailbox does not exist"}))

    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, "bounced")
    assert "mailbox does not exist" in message.last_error


@pytest.mark.parametrize("event", ["email.failed", "email.suppressed"])
def test_resend_failed_or_suppressed_email_is_undelivered_with_the_reason(event):
    message = make_message(channel="email", provider_id="em_1")

    post_resend(resend_event(event))

    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, event.split(".")[1])


def test_resend_complaint_on_a_sent_email_marks_it_undelivered():
    message = make_message(channel="email", provider_id="em_1")

    post_resend(resend_event("email.complained"))

    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, "complained")


def test_resend_complaint_after_delivery_keeps_delivered_but_records_it():
    message = make_message(status=Status.DELIVERED, channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.complained"))

    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.DELIVERED, "complained")


def test_resend_event_for_an_unknown_email_is_acknowledged():
    response = post_resend(resend_event("email.delivered", email_id="em_nobody_knows"))

    assert response.status_code == 200


def test_resend_event_of_another_type_changes_nothing():
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.opened"))

    assert response.status_code == 200
    assert status_of(message) == Status.SENT


def test_resend_bad_signature_is_401_and_changes_nothing():
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"), key=b"not-the-secret")

    assert response.status_code == 401
    assert status_of(message) == Status.SENT


def test_resend_stale_timestamp_is_401_and_changes_nothing():
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"), sent_at=NOW - timedelta(minutes=10))

    assert response.status_code == 401
    assert b"5 minutes" in response.content
    assert status_of(message) == Status.SENT


def test_resend_without_a_configured_secret_is_503(settings):
    settings.RESEND_WEBHOOK_SECRET = ""
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"))

    assert response.status_code == 503
    assert response.content == b"webhook secret not configured: set RESEND_WEBHOOK_SECRET"
    assert status_of(message) == Status.SENT


def test_resend_event_never_moves_an_sms_with_the_same_id():
    message = make_message(channel="sms", provider_id="em_1")

    post_resend(resend_event("email.delivered"))

    assert status_of(message) == Status.SENT


# -- Twilio status callbacks ----------------------------------------------------------------


def test_twilio_delivered_marks_the_sms_delivered():
    message = make_message()

    response = twilio_status(status="delivered")

    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (Status.DELIVERED, NOW)


@pytest.mark.parametrize("twilio_state", ["undelivered", "failed"])
def test_twilio_undelivered_or_failed_marks_the_sms_undelivered_with_the_error_code(twilio_state):
    message = make_message()

    twilio_status(status=twilio_state, ErrorCode="30003")

    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, "30003")


@pytest.mark.parametrize("twilio_state", ["queued", "sending", "sent"])
def test_twilio_progress_statuses_change_nothing(twilio_state):
    message = make_message()

    assert twilio_status(status=twilio_state).status_code == 200
    assert status_of(message) == Status.SENT


def test_twilio_report_before_the_worker_marked_it_sent_is_accepted_and_changes_nothing():
    message = make_message(status=Status.SENDING)

    response = twilio_status(status="delivered")

    assert response.status_code == 200
    assert status_of(message) == Status.SENDING


def test_twilio_repeated_report_leaves_the_first_outcome():
    message = make_message()
    twilio_status(status="delivered")

    twilio_status(status="undelivered", ErrorCode="30005")

    assert status_of(message) == Status.DELIVERED


def test_twilio_unknown_sid_is_acknowledged():
    assert twilio_status(sid="SMnobodyknows").status_code == 200


def test_twilio_missing_signature_is_403():
    message = make_message()

    response = HttpClient().post("/webhooks/twilio/status/", {"MessageSid": "SM123", "MessageStatus": "delivered"})

    assert response.status_code == 403
    assert status_of(message) == Status.SENT


def test_twilio_signature_over_other_params_is_403():
    message = make_message()
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(
        "http://testserver/webhooks/twilio/status/", {"MessageSid": "SM123", "MessageStatus": "sent"}
    )

    response = post_twilio(
        "/webhooks/twilio/status/", {"MessageSid": "SM123", "MessageStatus": "delivered"}, signature=signed
    )

    assert response.status_code == 403
    assert status_of(message) == Status.SENT


def test_twilio_signature_is_checked_against_the_public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://app.example.test/"
    message = make_message()
    params = {"MessageSid": "SM123", "MessageStatus": "delivered"}

    response = post_twilio("/webhooks/twilio/status/", params, url="https://app.example.test/webhooks/twilio/status/")

    assert response.status_code == 200
    assert status_of(message) == Status.DELIVERED


def test_twilio_signature_over_the_internal_url_is_403_behind_a_public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://app.example.test"

    assert twilio_status().status_code == 403


def test_twilio_without_an_auth_token_is_503(settings):
    settings.TWILIO_AUTH_TOKEN = ""

    response = HttpClient().post("/webhooks/twilio/status/", {"MessageSid": "SM123"}, HTTP_X_TWILIO_SIGNATURE="x")

    assert response.status_code == 503


# -- Twilio inbound SMS ---------------------------------------------------------------------


def test_inbound_answers_empty_twiml():
    response = text_in("Hello?")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.endswith(b"<Response/>")


def test_inbound_stop_opts_the_sender_out_of_that_client():
    client = make_client()

    text_in("  stop ")

    opt_out = OptOut.objects.get()
    assert (opt_out.phone, opt_out.client, opt_out.source) == (ALICE, client, "inbound_stop")


def test_inbound_stop_to_the_shared_number_opts_out_of_every_client():
    make_client()

    text_in("UNSUBSCRIBE", to=SHARED_NUMBER)

    opt_out = OptOut.objects.get()
    assert (opt_out.phone, opt_out.client) == (ALICE, None)
    assert not Conversation.objects.exists()


def test_inbound_stop_then_start_removes_the_opt_out():
    make_client()
    text_in("STOP")

    text_in("Start")

    assert not OptOut.objects.exists()


def test_repeated_stop_keeps_one_opt_out():
    make_client()
    text_in("STOP")

    text_in("STOPALL")

    assert OptOut.objects.count() == 1


def test_inbound_message_opens_a_conversation_awaiting_a_reply():
    client = make_client()
    lead = Lead.objects.create(client=client, name="Alice", phone=ALICE)

    text_in("Can I move my appointment?")

    conversation = Conversation.objects.get()
    assert (conversation.client, conversation.lead, conversation.phone) == (client, lead, ALICE)
    assert (conversation.last_message_at, conversation.last_message_direction) == (NOW, "in")
    message = Message.objects.get()
    assert (message.direction, message.body, message.created_at) == ("in", "Can I move my appointment?", NOW)


def test_inbound_webhook_retried_by_twilio_is_recorded_once():
    make_client()

    first = text_in("Can I move my appointment?", sid="SMretried")
    again = text_in("Can I move my appointment?", sid="SMretried")

    assert (first.status_code, again.status_code) == (200, 200)
    assert Message.objects.count() == 1


def test_next_inbound_message_joins_the_same_conversation_and_clears_the_escalation():
    make_client()
    text_in("Hello?")
    Conversation.objects.update(escalated_for_message_at=NOW)

    with time_machine.travel(NOW + timedelta(minutes=30), tick=False):
        text_in("Anyone there?")

    conversation = Conversation.objects.get()
    assert conversation.messages.count() == 2
    assert conversation.last_message_at == NOW + timedelta(minutes=30)
    assert conversation.escalated_for_message_at is None


def test_inbound_stop_is_recorded_but_does_not_await_a_reply():
    make_client()

    text_in("STOP")

    conversation = Conversation.objects.get()
    assert conversation.messages.get().body == "STOP"
    assert (conversation.last_message_at, conversation.last_message_direction) == (None, "")


def test_inbound_from_a_short_code_is_acknowledged_and_recorded_nowhere():
    make_client()

    response = text_in("STOP", sender="12345")

    assert response.status_code == 200
    assert not OptOut.objects.exists() and not Conversation.objects.exists()


def test_inbound_with_a_bad_signature_is_403_and_records_nothing():
    make_client()
    params = {"MessageSid": "SMin1", "From": ALICE, "To": CLIENT_NUMBER, "Body": "STOP"}

    response = post_twilio("/webhooks/twilio/inbound/", params, signature="bm90LWEtc2lnbmF0dXJl")

    assert response.status_code == 403
    assert not OptOut.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db
def test_owner_replying_to_a_notification_does_not_wait_for_a_reply():
    from messaging.models import Client, Conversation
    from messaging.web.webhooks import receive_inbound_sms

    client = Client.objects.create(name="Acme", owner_phone="+14155550100", sms_from_number="+14155550999")
    from django.utils import timezone as tz

    receive_inbound_sms(sender="+14155550100", recipient="+14155550999", body="ok thanks", now=tz.now())
    conversation = Conversation.objects.get(client=client)
    assert conversation.last_message_direction != "in"
