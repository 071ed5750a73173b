"""Provider webhooks over HTTP with real signatures: Twilio (RequestValidator) and Resend (Svix)."""

import base64
import itertools
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client as HttpClient
from twilio.request_validator import RequestValidator

from messaging.conversations import receive_inbound_sms
from messaging.models import (
    Client,
    Conversation,
    EmailSuppression,
    Lead,
    Message,
    OptOut,
    PendingReport,
    ScheduledMessage,
    Status,
)
from messaging.web.webhooks import SignatureError, verify_svix_signature
from tests.messaging.webhook_client import (
    ALICE,
    SHARED_NUMBER,
    SVIX_SECRET,
    TWILIO_TOKEN,
    post_resend,
    post_twilio,
    resend_event,
    svix_signature,
    twilio_status,
    use_webhook_secrets,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
CLIENT_NUMBER = "+14155550199"


@pytest.fixture(autouse=True)
def webhook_secrets(settings):
    use_webhook_secrets(settings)


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


_inbound_sids = itertools.count(1)


def text_in(body: str, to: str = CLIENT_NUMBER, sender: str = ALICE, sid: str | None = None):
    params = {"MessageSid": sid or f"SMin{next(_inbound_sids)}", "From": sender, "To": to, "Body": body}
    return post_twilio("/webhooks/twilio/inbound/", params)


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


def test_svix_signature_made_by_the_standard_webhooks_library_is_accepted():
    # An outside signer: the Standard Webhooks reference library (what Svix implements).
    from standardwebhooks.webhooks import Webhook

    body = '{"type":"email.delivered"}'
    signature = Webhook(SVIX_SECRET).sign("msg_1", NOW, body)

    verify(body.encode(), signatures=signature)


def test_svix_signature_refused_by_the_standard_webhooks_library_is_refused_too():
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    body, ts = b'{"a":1}', str(int(NOW.timestamp()))
    forged = Webhook(base64.b64encode(b"another-key").decode()).sign("msg_1", NOW, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": ts, "webhook-signature": forged}
    with pytest.raises(WebhookVerificationError):
        Webhook(SVIX_SECRET).verify(body, headers)
    with pytest.raises(SignatureError):
        verify(body, signatures=forged)


@pytest.mark.parametrize("header", ["garbage", "v1", "v1,not base64!", "v1,"])
def test_resend_malformed_signature_header_is_401_not_an_error(header):
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"), signature=header)

    assert response.status_code == 401
    assert status_of(message) == Status.SENT


def test_resend_with_a_secret_that_is_not_base64_is_503_naming_the_setting(settings):
    settings.RESEND_WEBHOOK_SECRET = "whsec_not base64!"

    response = post_resend(resend_event("email.delivered"))

    assert response.status_code == 503
    assert b"RESEND_WEBHOOK_SECRET" in response.content


# -- Resend events --------------------------------------------------------------------------


def test_resend_delivered_marks_the_email_delivered():
    message = make_message(channel="email", provider_id="em_1")

    response = post_resend(resend_event("email.delivered"))

    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (Status.DELIVERED, NOW)


def test_resend_event_signed_by_the_standard_webhooks_library_is_applied():
    from standardwebhooks.webhooks import Webhook

    message = make_message(channel="email", provider_id="em_1")
    body = '{"type": "email.delivered", "data": {"email_id": "em_1"}}'
    signature = Webhook(SVIX_SECRET).sign("msg_9", NOW, body)

    response = HttpClient().post(
        "/webhooks/resend/",
        body,
        content_type="application/json",
        HTTP_SVIX_ID="msg_9",
        HTTP_SVIX_TIMESTAMP=str(int(NOW.timestamp())),
        HTTP_SVIX_SIGNATURE=signature,
    )

    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (Status.DELIVERED, NOW)


def test_resend_bounce_marks_the_email_undelivered():
    message = make_message(channel="email", provider_id="em_1")

    post_resend(resend_event("email.bounced", bounce={"type": "Permanent", "message": "mailbox does not exist"}))

    message.refresh_from_db()
    assert (message.status, message.last_error_code) == (Status.UNDELIVERED, "bounced")
    assert "mailbox does not exist" in message.last_error


def test_a_bounced_address_is_suppressed():
    make_message(channel="email", provider_id="em_1")

    post_resend(
        resend_event(
            "email.bounced", to=["Bob@Example.com"], bounce={"type": "Permanent", "message": "mailbox does not exist"}
        )
    )

    suppression = EmailSuppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.provider_message_id) == (
        "bob@example.com",
        "bounced",
        "em_1",
    )
    assert "mailbox does not exist" in suppression.detail


@pytest.mark.parametrize("kind", ["Transient", "Undetermined", None])
def test_a_bounce_that_is_not_permanent_suppresses_nothing(kind):
    message = make_message(channel="email", provider_id="em_1")
    bounce = {"type": kind, "message": "mailbox full"} if kind else {}

    post_resend(resend_event("email.bounced", to=["bob@example.com"], bounce=bounce))

    assert not EmailSuppression.objects.exists()
    assert status_of(message) == Status.UNDELIVERED


def test_a_complaint_suppresses_the_address():
    make_message(status=Status.DELIVERED, channel="email", provider_id="em_1")

    post_resend(resend_event("email.complained", to=["bob@example.com"]))

    assert list(EmailSuppression.objects.values_list("email", "reason")) == [("bob@example.com", "complained")]


def test_a_bounce_of_an_email_not_recorded_yet_suppresses_its_address_at_once():
    post_resend(
        resend_event("email.bounced", email_id="em_early", to=["bob@example.com"], bounce={"type": "Permanent"})
    )

    assert EmailSuppression.objects.filter(email="bob@example.com", reason="bounced").exists()


def test_a_bounce_without_recipients_suppresses_the_known_messages_address():
    make_message(channel="email", provider_id="em_1")

    post_resend(resend_event("email.bounced", bounce={"type": "Permanent"}))

    assert EmailSuppression.objects.filter(email="bob@example.com").exists()


def test_an_address_suppressed_twice_keeps_its_first_reason():
    post_resend(resend_event("email.bounced", email_id="em_1", to=["bob@example.com"], bounce={"type": "Permanent"}))

    post_resend(resend_event("email.complained", email_id="em_2", to=["bob@example.com"]))

    assert list(EmailSuppression.objects.values_list("reason", "provider_message_id")) == [("bounced", "em_1")]


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


def test_resend_event_for_an_unknown_email_is_acknowledged_and_kept():
    response = post_resend(resend_event("email.delivered", email_id="em_not_recorded_yet"))

    assert response.status_code == 200
    report = PendingReport.objects.get()
    assert (report.channel, report.provider_message_id, report.target, report.event) == (
        "email",
        "em_not_recorded_yet",
        Status.DELIVERED,
        "email.delivered",
    )
    assert (report.occurred_at, report.received_at) == (NOW, NOW)


def test_resend_event_of_another_type_is_not_kept():
    post_resend(resend_event("email.opened", email_id="em_not_recorded_yet"))

    assert not PendingReport.objects.exists()


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


def test_twilio_report_for_a_message_still_sending_is_kept_for_its_send():
    # The worker has not recorded the send: the message has no provider id yet.
    message = make_message(status=Status.SENDING, provider_id="")

    response = twilio_status(sid="SM123", status="undelivered", ErrorCode="30003")

    assert response.status_code == 200
    assert status_of(message) == Status.SENDING
    report = PendingReport.objects.get()
    assert (report.channel, report.provider_message_id, report.target, report.error_code) == (
        "sms",
        "SM123",
        Status.UNDELIVERED,
        "30003",
    )


def test_twilio_repeated_report_before_the_send_is_kept_once():
    twilio_status(sid="SMearly", status="delivered")

    twilio_status(sid="SMearly", status="delivered")

    assert PendingReport.objects.count() == 1


def test_twilio_repeated_report_leaves_the_first_outcome():
    message = make_message()
    twilio_status(status="delivered")

    twilio_status(status="undelivered", ErrorCode="30005")

    assert status_of(message) == Status.DELIVERED


def test_twilio_unknown_sid_is_acknowledged_and_kept():
    assert twilio_status(sid="SMnot_recorded_yet").status_code == 200

    assert PendingReport.objects.filter(provider_message_id="SMnot_recorded_yet").exists()


@pytest.mark.parametrize("twilio_state", ["queued", "sending", "sent"])
def test_twilio_progress_status_of_an_unknown_sid_is_not_kept(twilio_state):
    twilio_status(sid="SMnot_recorded_yet", status=twilio_state)

    assert not PendingReport.objects.exists()


def test_twilio_report_for_a_message_already_final_is_not_kept():
    make_message(status=Status.DELIVERED)

    twilio_status(status="undelivered")

    assert not PendingReport.objects.exists()


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


def test_owner_replying_to_a_notification_does_not_wait_for_a_reply():
    client = Client.objects.create(name="Acme", owner_phone="+14155550100", sms_from_number="+14155550999")

    receive_inbound_sms(sender="+14155550100", recipient="+14155550999", body="ok thanks", now=NOW)
    conversation = Conversation.objects.get(client=client)
    assert conversation.last_message_direction != "in"
