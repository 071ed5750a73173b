"""A delivery run against the fake providers with send allowances on: waiting for a slot and
a provider's 429 never use an attempt, a pause past the run releases its claims, the Twilio
Messaging Service. Real SDKs, real PostgreSQL."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.checks import check_provider_settings
from messaging.delivery import shared_bucket
from messaging.delivery.pacing import buckets_for
from messaging.delivery.providers import TransientError, get_email_provider
from messaging.delivery.providers.base import EmailPayload
from messaging.delivery.reconcile import recover_expired_leases
from messaging.models import DeliveryAttempt, ScheduledMessage, Status
from scheduling.runner import run_job
from tests.fakes.providers import FAKE_ACCOUNT_SID, FAKE_FROM_NUMBER
from tests.messaging.factories import email, make_client, sms

pytestmark = pytest.mark.django_db

SERVICE_SID = "MG" + "1" * 32


@pytest.fixture
def paced(provider_settings):
    """Provider settings with allowances on; the shared rows (committed by the limiter's own
    connection) are deleted afterwards so the next test starts with a fresh allowance."""
    provider_settings.TWILIO_SEND_RATE = 10
    provider_settings.RESEND_SEND_RATE = 10
    yield provider_settings
    shared_bucket.database.execute("DELETE FROM messaging_ratebucket", {})


def deliver():
    result = run_job("process-scheduled", "manual")
    assert result.status in ("succeeded", "partial"), result.message
    return result


def peak_in_one_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def many_sms(count: int) -> list[ScheduledMessage]:
    return [sms(body=f"m{i}", to=f"+1415555{i:04d}") for i in range(count)]


def test_sends_wait_for_their_slot_and_keep_their_one_attempt(paced, fake_providers):
    paced.TWILIO_SEND_RATE = 5
    many_sms(8)

    started = time.monotonic()
    result = deliver()

    times = fake_providers.send_times("twilio")
    assert result.data["sent"] == 8 and len(times) == 8
    assert times[-1] - times[0] >= 7 / 5 - 0.1 and time.monotonic() - started >= 7 / 5 - 0.1
    # The fake shares this process (and its GIL) with the senders, so arrivals jitter by tens
    # of milliseconds here; the strict peak is checked across real processes
    # (test_delivery_pacing_processes.py).
    assert peak_in_one_second(times) <= 6
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}


def test_a_429_pauses_the_allowance_and_the_message_goes_after_it_without_an_attempt(paced, fake_providers):
    many_sms(3)
    fake_providers.fail_next(1, "429", service="twilio", retry_after="1")

    result = deliver()

    refused, *accepted = fake_providers.requests_to("sms_create")
    assert refused.status == 429 and [r.status for r in accepted] == [201] * 3
    assert accepted[0].timestamp - refused.timestamp >= 0.9  # nobody sent during the pause
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert set(DeliveryAttempt.objects.values_list("outcome", flat=True)) == {"sent"}
    assert result.data["rate_limited"] == 1 and result.status == "succeeded"


def test_a_pause_longer_than_the_run_releases_its_claims_and_ends_the_run(paced, fake_providers):
    many_sms(5)
    note = email()
    fake_providers.fail_next(1, "429", service="twilio", retry_after="240")

    started = time.monotonic()
    result = deliver()

    assert time.monotonic() - started < 10  # ended, not waiting four minutes
    assert result.status == "succeeded" and result.data["throttled"] == ["SMS"]
    assert len(fake_providers.requests_to("sms_create")) == 1
    texts = ScheduledMessage.objects.exclude(pk=note.pk)
    assert set(texts.values_list("status", "attempts")) == {(Status.PENDING, 0)}  # released, attempts unused
    assert ScheduledMessage.objects.get(pk=note.pk).status == Status.SENT  # email has its own allowance


def test_a_throttled_channel_is_sent_by_the_next_run_once_the_pause_ends(paced, fake_providers):
    many_sms(2)
    fake_providers.fail_next(1, "429", service="twilio", retry_after="240")
    deliver()
    shared_bucket.database.execute("UPDATE messaging_ratebucket SET next_slot = clock_timestamp()", {})

    result = deliver()

    assert result.data["sent"] == 2 and "throttled" not in result.data


def test_a_wait_longer_than_the_cap_pauses_at_most_the_cap_and_fails_the_run(paced, fake_providers):
    from messaging.delivery.pacing import MAX_PAUSE_SECONDS

    many_sms(2)
    fake_providers.fail_next(1, "429", service="twilio", retry_after="86400")  # a daily quota
    result = run_job("process-scheduled", "manual")
    assert result.status == "failed" and "asked to wait 86400 s" in result.message
    paused_for = shared_bucket.database.execute(
        "SELECT max(EXTRACT(EPOCH FROM next_slot - clock_timestamp())) FROM messaging_ratebucket", {}
    )
    assert paused_for[0] <= MAX_PAUSE_SECONDS + 1
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.PENDING, 0)}


def test_unpaced_429_stays_an_ordinary_retry(provider_settings, fake_providers):
    message = sms()
    fake_providers.fail_next(1, "429", service="twilio", retry_after="7")
    deliver()
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.PENDING, 1)


def test_resend_429_without_retry_after_waits_for_ratelimit_reset(provider_settings, fake_providers):
    fake_providers.set_rate_limit("resend", 1, retry_after=None)
    provider = get_email_provider()
    provider.send_email(EmailPayload("a@example.com", "s", "<p>x</p>", "x", "key-1"))

    with pytest.raises(TransientError) as refused:
        provider.send_email(EmailPayload("b@example.com", "s", "<p>x</p>", "x", "key-2"))

    assert refused.value.http_status == 429 and refused.value.retry_after == 1


# -- Twilio Messaging Service ----------------------------------------------------------------


def test_sms_go_through_the_messaging_service_when_one_is_set(paced, fake_providers):
    paced.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    pooled = sms(body="pooled")
    own = sms(body="own number", to="+14155550124", client=make_client(sms_from_number="+14155550999"))

    deliver()

    forms = {r.form["Body"]: r.form for r in fake_providers.requests_to("sms_create")}
    assert forms["pooled"]["MessagingServiceSid"] == SERVICE_SID and "From" not in forms["pooled"]
    assert forms["own number"]["From"] == "+14155550999" and "MessagingServiceSid" not in forms["own number"]
    assert {ScheduledMessage.objects.get(pk=m.pk).status for m in (pooled, own)} == {Status.SENT}


def test_the_messaging_service_has_its_own_allowance_and_counts_against_the_account(paced):
    paced.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    paced.TWILIO_MESSAGING_SERVICE_RATE = 30
    paced.TWILIO_SENDER_RATE = 1
    pooled, own = sms(), sms(client=make_client(sms_from_number="+14155550999"))

    # The narrower allowance first, the account's last (its slot taken right before the request).
    assert [(b.name, b.rate) for b in buckets_for(pooled)] == [
        (f"twilio:{FAKE_ACCOUNT_SID}:{SERVICE_SID}", 30),
        (f"twilio:{FAKE_ACCOUNT_SID}", 10),
    ]
    assert [(b.name, b.rate) for b in buckets_for(own)] == [
        (f"twilio:{FAKE_ACCOUNT_SID}:+14155550999", 1),
        (f"twilio:{FAKE_ACCOUNT_SID}", 10),
    ]


def test_a_sender_allowance_applies_only_when_set(paced):
    assert [b.name for b in buckets_for(sms())] == [f"twilio:{FAKE_ACCOUNT_SID}"]
    paced.TWILIO_SENDER_RATE = 1
    assert [b.name for b in buckets_for(sms())] == [
        f"twilio:{FAKE_ACCOUNT_SID}:{FAKE_FROM_NUMBER}",
        f"twilio:{FAKE_ACCOUNT_SID}",
    ]


def test_a_messaging_service_stands_in_for_the_from_number(settings):
    settings.SMS_PROVIDER, settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "twilio", "AC1", "token"
    settings.TWILIO_FROM_NUMBER = ""
    assert [e.msg for e in check_provider_settings()][0].startswith("SMS_PROVIDER=twilio but TWILIO_FROM_NUMBER")

    settings.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    assert check_provider_settings() == []


def test_a_crashed_messaging_service_send_is_found_at_twilio_whatever_number_the_pool_chose(
    provider_settings, fake_providers
):
    provider_settings.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    message = sms(body="Hello from the pool")
    now = timezone.now()
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING,
        attempts=1,
        claimed_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(minutes=5),
    )
    sent = fake_providers.preload_sms(
        message.to, "Hello from the pool", from_number="+14155550777", date_created=now - timedelta(minutes=9)
    )

    assert recover_expired_leases(now)["reconciled_sent"] == 1
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Status.SENT, sent["sid"])
    assert fake_providers.requests_to("sms_create") == []  # not sent twice


def test_email_waiting_for_its_allowance_does_not_hold_back_sms(paced, fake_providers):
    paced.RESEND_SEND_RATE, paced.TWILIO_SEND_RATE = 1, 50
    paced.DELIVERY_CONCURRENCY = 2
    for i in range(6):
        email(to=f"lead{i}@example.com")  # due first: claimed first
    many_sms(10)

    deliver()

    first_email = fake_providers.send_times("resend")[0]
    assert fake_providers.send_times("twilio")[-1] - first_email < 2.0  # not after the emails' 5 s
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}


def test_an_invalid_messaging_service_holds_the_sms_and_fails_the_run_saying_what_to_fix(
    provider_settings, fake_providers
):
    provider_settings.TWILIO_MESSAGING_SERVICE_SID = "XX" + "1" * 32  # not an MG... SID
    message = sms()

    result = run_job("process-scheduled", "manual")

    assert result.status == "failed" and "TWILIO_MESSAGING_SERVICE_SID" in result.message
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.PENDING, 0)


def test_a_limiter_that_cannot_reach_its_database_releases_unsent_and_fails_the_run(paced, fake_providers, monkeypatch):
    import psycopg

    many_sms(2)

    def unreachable():
        raise psycopg.OperationalError("connection refused (the limiter's database)")

    with monkeypatch.context() as patched:  # undone before the fixture cleans the allowances up
        patched.setattr(shared_bucket.database, "_conn", None)
        patched.setattr(shared_bucket.database, "_connect", unreachable)
        result = run_job("process-scheduled", "manual")
    assert result.status == "failed" and "send allowance could not be read" in result.message
    assert fake_providers.requests_to("sms_create") == []
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.PENDING, 0)}
