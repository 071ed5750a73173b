"""Provider layer against the fake Twilio/Resend server, real SDKs in between."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from messaging.delivery.providers import (
    EmailPayload,
    PermanentError,
    TransientError,
    get_email_provider,
    get_sms_provider,
)
from messaging.delivery.providers.base import parse_retry_after
from messaging.delivery.providers.console import ConsoleEmailProvider, ConsoleSmsProvider
from messaging.delivery.ratelimit import PACE_SHARE, LocalBucket, bucket_for
from tests.fakes.providers import FAKE_FROM_NUMBER, unused_port_url

ALICE = "+15550000001"
BOB = "+15550000002"


def payload(to: str = "alice@example.test", key: str = "msg-1") -> EmailPayload:
    return EmailPayload(
        to=to,
        subject="Your appointment",
        html="<p>See you at 9</p>",
        text="See you at 9",
        idempotency_key=key,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- Twilio -----------------------------------------------------------------


def test_send_sms_returns_sid_and_fake_records_the_request(provider_settings, fake_providers):
    result = get_sms_provider().send_sms(ALICE, "Reminder: 9:00", status_callback="https://app.test/hooks/twilio")

    [sent] = fake_providers.sms_sent()
    assert result.provider_id == sent["sid"]
    assert result.provider_id.startswith("SM") and len(result.provider_id) == 34
    assert (sent["to"], sent["from"], sent["body"]) == (
        ALICE,
        FAKE_FROM_NUMBER,
        "Reminder: 9:00",
    )
    assert sent["status_callback"] == "https://app.test/hooks/twilio"


def test_send_sms_invalid_number_is_permanent_with_code_21211(provider_settings, fake_providers):
    fake_providers.fail_next(1, "twilio_21211")

    with pytest.raises(PermanentError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert exc.value.code == "21211"
    assert exc.value.http_status == 400


def test_send_sms_to_unsubscribed_number_is_permanent_with_code_21610(provider_settings, fake_providers):
    fake_providers.fail_next(1, "twilio_21610")

    with pytest.raises(PermanentError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert exc.value.code == "21610"


def test_send_sms_server_error_is_transient(provider_settings, fake_providers):
    fake_providers.fail_next(1, "500")

    with pytest.raises(TransientError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert exc.value.http_status == 500


def test_send_sms_rate_limited_is_transient_with_retry_after(provider_settings, fake_providers):
    fake_providers.fail_next(1, "429", retry_after="7")

    with pytest.raises(TransientError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert exc.value.retry_after == 7
    assert exc.value.may_have_sent is False


def test_send_sms_timeout_is_transient_and_bounded_by_client_timeout(provider_settings, fake_providers):
    fake_providers.fail_next(1, "timeout", delay=10)
    started = time.monotonic()

    with pytest.raises(TransientError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert time.monotonic() - started < provider_settings.PROVIDER_TIMEOUT_SECONDS + 1
    # The fake accepted the message before stalling: a retry could duplicate.
    assert exc.value.may_have_sent is True


def test_send_sms_connection_refused_is_transient_and_not_sent(provider_settings):
    provider_settings.TWILIO_API_BASE_URL = unused_port_url()

    with pytest.raises(TransientError) as exc:
        get_sms_provider().send_sms(ALICE, "hi")

    assert exc.value.may_have_sent is False


def test_fault_for_one_recipient_leaves_other_recipients_alone(provider_settings, fake_providers):
    fake_providers.set_fault("twilio_21211", to=BOB)
    provider = get_sms_provider()

    provider.send_sms(ALICE, "hi")
    with pytest.raises(PermanentError):
        provider.send_sms(BOB, "hi")
    provider.send_sms(ALICE, "again")

    assert [m["to"] for m in fake_providers.sms_sent()] == [ALICE, ALICE]


def test_send_sms_from_several_threads_records_every_message(provider_settings, fake_providers):
    provider = get_sms_provider()

    with ThreadPoolExecutor(max_workers=4) as pool:
        sids = list(pool.map(lambda i: provider.send_sms(ALICE, f"m{i}").provider_id, range(20)))

    assert len(set(sids)) == 20
    assert sorted(m["sid"] for m in fake_providers.sms_sent()) == sorted(sids)


def test_find_sent_returns_message_sent_before_a_crash(provider_settings, fake_providers):
    since = datetime.now(UTC) - timedelta(minutes=5)
    preloaded = fake_providers.preload_sms(ALICE, date_created=since + timedelta(seconds=30))

    found = get_sms_provider().find_sent(ALICE, since)

    assert [r.provider_id for r in found] == [preloaded["sid"]]


def test_find_sent_ignores_other_numbers_and_older_messages(provider_settings, fake_providers):
    since = datetime.now(UTC) - timedelta(minutes=5)
    fake_providers.preload_sms(BOB, date_created=since + timedelta(seconds=30))
    fake_providers.preload_sms(ALICE, date_created=since - timedelta(hours=1))

    assert get_sms_provider().find_sent(ALICE, since) == []


def test_find_sent_finds_a_message_still_queued_at_twilio(provider_settings, fake_providers):
    # A queued message has no date_sent yet: a DateSent filter would miss it (and it would
    # be sent twice), so the lookup filters on date_created itself.
    since = datetime.now(UTC) - timedelta(minutes=5)
    queued = fake_providers.preload_sms(ALICE, date_created=since + timedelta(seconds=1), status="queued")

    found = get_sms_provider().find_sent(ALICE, since)

    [listing] = fake_providers.requests_to("sms_list")
    assert listing.query["To"] == ALICE and "DateSent>" not in listing.query
    assert [r.provider_id for r in found] == [queued["sid"]]


# -- Resend -----------------------------------------------------------------


def test_send_email_sends_fields_and_idempotency_key(provider_settings, fake_providers):
    result = get_email_provider().send_email(payload(key="msg-42"))

    [sent] = fake_providers.emails_sent()
    assert result.provider_id == sent["id"]
    assert sent["idempotency_key"] == "msg-42"
    assert sent["from"] == provider_settings.RESEND_FROM_EMAIL
    assert sent["to"] == ["alice@example.test"]
    assert (sent["subject"], sent["html"], sent["text"]) == (
        "Your appointment",
        "<p>See you at 9</p>",
        "See you at 9",
    )


def test_send_email_twice_with_same_key_is_sent_once(provider_settings, fake_providers):
    provider = get_email_provider()

    first = provider.send_email(payload(key="msg-7"))
    second = provider.send_email(payload(key="msg-7"))

    assert first.provider_id == second.provider_id
    assert len(fake_providers.emails_sent()) == 1
    assert len(fake_providers.replayed()) == 1


def test_send_email_without_idempotency_key_is_refused(provider_settings, fake_providers):
    with pytest.raises(ValueError):
        get_email_provider().send_email(payload(key=""))

    assert fake_providers.requests == []


def test_send_email_validation_error_is_permanent(provider_settings, fake_providers):
    fake_providers.fail_next(1, "resend_422")

    with pytest.raises(PermanentError) as exc:
        get_email_provider().send_email(payload())

    assert (exc.value.http_status, exc.value.code) == (422, "validation_error")


def test_send_email_rate_limited_is_transient_with_retry_after(provider_settings, fake_providers):
    fake_providers.fail_next(1, "429", retry_after="3")

    with pytest.raises(TransientError) as exc:
        get_email_provider().send_email(payload())

    assert exc.value.retry_after == 3


def test_send_email_concurrent_idempotent_request_is_transient(provider_settings, fake_providers):
    fake_providers.fail_next(1, "resend_409_concurrent")

    with pytest.raises(TransientError) as exc:
        get_email_provider().send_email(payload())

    assert exc.value.code == "concurrent_idempotent_requests"


def test_send_email_server_error_is_transient(provider_settings, fake_providers):
    fake_providers.fail_next(1, "500")

    with pytest.raises(TransientError) as exc:
        get_email_provider().send_email(payload())

    assert exc.value.http_status == 500


def test_send_email_connection_refused_is_transient_and_not_sent(provider_settings):
    provider_settings.RESEND_API_URL = unused_port_url()

    with pytest.raises(TransientError) as exc:
        get_email_provider().send_email(payload())

    assert exc.value.may_have_sent is False


def test_send_email_retried_after_timeout_is_not_sent_twice(provider_settings, fake_providers):
    fake_providers.fail_next(1, "timeout", delay=10)
    provider = get_email_provider()
    with pytest.raises(TransientError):
        provider.send_email(payload(key="msg-9"))

    provider.send_email(payload(key="msg-9"))

    assert len(fake_providers.emails_sent()) == 1
    assert len(fake_providers.replayed()) == 1


def test_send_batch_returns_one_result_per_email_in_order_from_one_call(provider_settings, fake_providers):
    emails = [payload(to=f"client{i}@example.test", key=f"m{i}") for i in range(3)]

    results = get_email_provider().send_batch(emails, idempotency_key="batch-1")

    sent = fake_providers.emails_sent()
    assert [r.provider_id for r in results] == [e["id"] for e in sent]
    assert [e["to"] for e in sent] == [[f"client{i}@example.test"] for i in range(3)]
    assert len(fake_providers.requests) == 1
    assert fake_providers.requests[0].headers["idempotency-key"] == "batch-1"


# -- console and selection -----------------------------------------------------


def test_console_sms_prints_summary_without_body(capsys):
    result = ConsoleSmsProvider().send_sms(ALICE, "secret appointment details")

    out = capsys.readouterr().out
    assert result.provider_id.startswith("console-")
    assert ALICE in out and "length=26" in out
    assert "secret" not in out


def test_console_email_prints_summary_without_content(capsys):
    result = ConsoleEmailProvider().send_email(payload())

    out = capsys.readouterr().out
    assert result.provider_id.startswith("console-")
    assert "alice@example.test" in out
    assert "See you" not in out and "appointment" not in out


def test_console_sms_find_sent_finds_nothing():
    assert ConsoleSmsProvider().find_sent(ALICE, datetime.now(UTC)) == []


def test_get_sms_provider_rejects_unknown_value(settings):
    settings.SMS_PROVIDER = "carrier-pigeon"

    with pytest.raises(ImproperlyConfigured, match="SMS_PROVIDER='carrier-pigeon'"):
        get_sms_provider()


def test_get_sms_provider_names_the_missing_twilio_setting(settings):
    settings.SMS_PROVIDER = "twilio"
    settings.TWILIO_ACCOUNT_SID = ""

    with pytest.raises(ImproperlyConfigured, match="TWILIO_ACCOUNT_SID is not set"):
        get_sms_provider()


def test_get_email_provider_returns_one_cached_instance(settings):
    settings.EMAIL_PROVIDER = "console"

    assert get_email_provider() is get_email_provider()


def test_changing_a_provider_setting_drops_the_cached_provider(settings):
    settings.SMS_PROVIDER = "console"
    first = get_sms_provider()

    settings.PROVIDER_TIMEOUT_SECONDS = 3

    assert get_sms_provider() is not first


# -- rate limiting and Retry-After ---------------------------------------------


def test_local_bucket_spaces_requests_evenly():
    clock = FakeClock()
    bucket = LocalBucket("t", 4, clock=clock, sleep=clock.sleep)

    assert [bucket.acquire() for _ in range(3)] == [True, True, True]
    assert clock.sleeps == pytest.approx([0.25 / PACE_SHARE] * 2)  # a little under the rate


def test_local_bucket_is_full_again_after_an_idle_spell():
    clock = FakeClock()
    bucket = LocalBucket("t", 2, clock=clock, sleep=clock.sleep)
    bucket.acquire()

    clock.now += 5.0

    assert bucket.acquire() and clock.sleeps == []


def test_local_bucket_refuses_a_slot_past_the_callers_deadline_and_keeps_it():
    clock = FakeClock()
    bucket = LocalBucket("t", 1, clock=clock, sleep=clock.sleep)
    bucket.acquire()

    assert bucket.acquire(until=clock.now + 0.5) is False  # the next slot is 1 s away
    assert clock.sleeps == [] and bucket.reserve() == pytest.approx(clock.now + 1.0 / PACE_SHARE)  # nobody took it


def test_local_bucket_pause_holds_every_caller_until_it_ends():
    clock = FakeClock()
    bucket = LocalBucket("t", 10, clock=clock, sleep=clock.sleep)

    bucket.pause(7)

    assert bucket.acquire() and clock.sleeps == [7.0]


def test_no_bucket_for_a_zero_rate():
    assert bucket_for("unpaced", 0) is None


def test_retry_after_accepts_an_http_date():
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()

    assert parse_retry_after("Tue, 01 Jan 2030 12:00:30 GMT", now=now) == 30
