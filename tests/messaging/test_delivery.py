import threading
import uuid
from datetime import UTC, datetime, time, timedelta
from time import monotonic

import pytest
import time_machine
from django.utils import timezone

from messaging.delivery.claiming import release
from messaging.delivery.halts import Halts
from messaging.delivery.outcomes import backoff
from messaging.delivery.reconcile import recover_expired_leases
from messaging.delivery.sending import deliver_due_messages
from messaging.models import DeliveryAttempt, OptOut, ScheduledMessage, Status
from scheduling.context import JobContext
from scheduling.models import JobRun
from scheduling.runner import run_job
from scheduling.services import sync_jobs
from tests.messaging.factories import email, make_client, make_lead, sms

pytestmark = pytest.mark.django_db


def deliver():
    result = run_job("process-scheduled", "manual")
    assert result.status in ("succeeded", "partial"), result.message
    return result


def fresh(message: ScheduledMessage) -> ScheduledMessage:
    return ScheduledMessage.objects.get(pk=message.pk)


def expire_leases() -> None:
    """As if every lease ran out: leases are on the database's clock, which no test travels."""
    ScheduledMessage.objects.filter(status=Status.SENDING).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_sms_is_sent_once_with_its_sid_and_an_attempt_row(provider_settings, fake_providers):
    message = sms(body="See you at 9")
    result = deliver()
    message = fresh(message)
    sent = fake_providers.sms_sent()
    assert [(s["to"], s["body"]) for s in sent] == [("+14155550123", "See you at 9")]
    assert message.status == Status.SENT and message.provider_message_id == sent[0]["sid"]
    assert message.attempts == 1 and message.sent_at is not None
    assert list(message.delivery_attempts.values_list("outcome", "http_status")) == [("sent", 201)]
    assert result.data["sent"] == 1


def test_email_carries_the_message_uuid_as_idempotency_key(provider_settings, fake_providers):
    message = email(subject="Your quote", body="Attached")
    deliver()
    [sent] = fake_providers.emails_sent()
    assert sent["idempotency_key"] == str(message.pk)
    assert (sent["to"], sent["subject"], sent["html"], sent["text"]) == (
        ["lead@example.com"],
        "Your quote",
        "<p>Attached</p>",
        "Attached",
    )
    assert fresh(message).status == Status.SENT


def test_message_due_later_is_not_sent(provider_settings, fake_providers):
    later = sms(send_at=timezone.now() + timedelta(hours=1))
    deliver()
    assert fake_providers.sms_sent() == [] and fresh(later).status == Status.PENDING


def test_email_500_goes_back_to_pending_with_backoff(provider_settings, fake_providers):
    message = email()
    fake_providers.fail_next(1, "500", service="resend")
    before = timezone.now()
    deliver()
    message = fresh(message)
    assert (message.status, message.attempts) == (Status.PENDING, 1)
    assert message.last_error_code and "500" in message.last_error
    assert before + timedelta(seconds=15) <= message.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["transient"]


def test_429_retry_after_sets_the_next_attempt(provider_settings, fake_providers):
    message = sms()
    fake_providers.fail_next(1, "429", retry_after="7")
    before = timezone.now()
    deliver()
    message = fresh(message)
    assert message.status == Status.PENDING and message.attempts == 1
    assert before + timedelta(seconds=7) <= message.next_attempt_at <= timezone.now() + timedelta(seconds=7)


def test_invalid_number_fails_at_once(provider_settings, fake_providers):
    message = sms()
    fake_providers.fail_next(1, "twilio_21211")
    deliver()
    message = fresh(message)
    assert (message.status, message.attempts, message.last_error_code) == (Status.FAILED, 1, "21211")
    assert list(message.delivery_attempts.values_list("outcome", "http_status")) == [("permanent", 400)]


def test_unsubscribed_recipient_fails_and_is_opted_out(provider_settings, fake_providers):
    client = make_client()
    message = sms(client=client)
    fake_providers.fail_next(1, "twilio_21610")
    deliver()
    assert fresh(message).status == Status.FAILED
    assert OptOut.objects.filter(phone=message.to, client=client, source="twilio_21610").exists()


def test_validation_error_from_resend_fails_at_once(provider_settings, fake_providers):
    message = email()
    fake_providers.fail_next(1, "resend_422")
    deliver()
    assert (fresh(message).status, fresh(message).attempts) == (Status.FAILED, 1)


def test_opted_out_number_fails_without_calling_the_provider(provider_settings, fake_providers):
    client = make_client()
    OptOut.objects.create(phone="+14155550123", client=client, source="inbound_stop")
    message = sms(client=client)
    result = deliver()
    message = fresh(message)
    assert (message.status, message.last_error_code, message.attempts) == (Status.FAILED, "opted_out", 0)
    assert fake_providers.requests_to("sms_create") == []
    assert result.data["opted_out"] == 1


def test_global_opt_out_blocks_every_client(provider_settings, fake_providers):
    OptOut.objects.create(phone="+14155550123", client=None, source="manual")
    message = sms(client=make_client())
    deliver()
    assert fresh(message).status == Status.FAILED and fake_providers.requests_to("sms_create") == []


def test_sms_to_a_lead_waits_for_the_local_daytime_window(provider_settings, fake_providers):
    client = make_client(tz="America/New_York", quiet_hours_start=time(8), quiet_hours_end=time(21))
    lead = make_lead(client, tz="America/Los_Angeles")
    at_night_in_la = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # 02:00 in Los Angeles
    with time_machine.travel(at_night_in_la, tick=False):
        message = sms(to=lead.phone, lead=lead, client=client)
        deliver()
    message = fresh(message)
    assert message.status == Status.PENDING and message.attempts == 0
    assert message.next_attempt_at == datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # 08:00 PST
    assert fake_providers.requests_to("sms_create") == []
    with time_machine.travel(datetime(2026, 11, 28, 16, 0, 30, tzinfo=UTC), tick=False):
        deliver()
    assert fresh(message).status == Status.SENT


def test_transient_errors_until_max_attempts_then_failed(provider_settings, fake_providers):
    message = email(max_attempts=3)
    fake_providers.set_fault("500", service="resend")
    start = timezone.now()
    for minute in range(0, 300, 60):
        with time_machine.travel(start + timedelta(minutes=minute), tick=False):
            deliver()
    message = fresh(message)
    assert (message.status, message.attempts) == (Status.FAILED, 3)
    assert "gave up after 3 attempts" in message.last_error
    assert message.delivery_attempts.count() == 3


def test_sms_timeout_is_reconciled_not_resent(provider_settings, fake_providers):
    message = sms(body="Reminder: 3pm")
    fake_providers.fail_next(1, "timeout", delay=3)  # Twilio accepted it, the answer never came
    deliver()
    assert fresh(message).status == Status.SENDING  # unknown: not resent blindly
    expire_leases()
    deliver()
    message = fresh(message)
    assert message.status == Status.SENT
    assert len([s for s in fake_providers.sms_sent() if s["body"] == "Reminder: 3pm"]) == 1
    assert message.provider_message_id == fake_providers.sms_sent()[0]["sid"]
    assert "reconciled" in message.delivery_attempts.values_list("outcome", flat=True)


def test_expired_sms_lease_not_found_at_twilio_is_retried(provider_settings, fake_providers):
    message = sms()
    now = timezone.now()
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING,
        attempts=1,
        claimed_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(minutes=5),
    )
    counts = recover_expired_leases(now)
    assert counts["recovered_retrying"] == 1
    assert fresh(message).status == Status.PENDING
    assert fake_providers.requests_to("sms_list")  # Twilio was asked


def test_expired_sms_lease_found_at_twilio_is_marked_sent(provider_settings, fake_providers):
    message = sms(body="Hello from Acme")
    now = timezone.now()
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING,
        attempts=1,
        claimed_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(minutes=5),
    )
    preloaded = fake_providers.preload_sms(message.to, "Hello from Acme", date_created=now - timedelta(minutes=9))
    fake_providers.preload_sms(message.to, "Another text", date_created=now - timedelta(minutes=9))
    assert recover_expired_leases(now)["reconciled_sent"] == 1
    assert (fresh(message).status, fresh(message).provider_message_id) == (Status.SENT, preloaded["sid"])


def test_expired_email_lease_is_resent_with_the_same_key(provider_settings, fake_providers):
    message = email()
    deliver()  # sent once
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING, lease_expires_at=timezone.now() - timedelta(minutes=1)
    )  # as if the worker died before recording
    deliver()
    assert fresh(message).status == Status.SENT
    assert len(fake_providers.emails_sent()) == 1 and len(fake_providers.replayed()) == 1


def test_claimed_but_unsent_messages_are_released_when_the_deadline_nears(provider_settings, fake_providers, settings):
    settings.DELIVERY_CONCURRENCY = 1
    fake_providers.set_latency(0.3)
    messages = [sms(body=f"m{i}") for i in range(10)]
    job = sync_jobs()[0]
    run = JobRun.objects.create(job=job, trigger="manual")
    ctx = JobContext(job.name, run.pk, timedelta(seconds=1.2))  # stops taking work 0.12 s before the deadline
    deliver_due_messages(ctx)
    statuses = sorted(fresh(m).status for m in messages)
    assert "sending" not in statuses
    assert 1 <= statuses.count("sent") < 10 and statuses.count("pending") == 10 - statuses.count("sent")
    assert all(fresh(m).attempts == 0 for m in messages if fresh(m).status == Status.PENDING)
    assert ctx.data["released"] >= 1


def test_release_only_touches_this_workers_claims():
    message = sms()
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENDING, attempts=1, claimed_by="other-host:1")
    assert release([message]) == 0
    assert fresh(message).status == Status.SENDING


def test_backoff_grows_exponentially_within_jitter_and_is_capped():
    import random

    rng = random.Random(1)
    assert timedelta(seconds=15) <= backoff(1, rng=rng) <= timedelta(seconds=30)
    assert timedelta(seconds=120) <= backoff(4, rng=rng) <= timedelta(seconds=240)
    assert backoff(30, rng=rng) <= timedelta(hours=1)
    assert backoff(3, retry_after=7) == timedelta(seconds=7)


def test_delivery_queries_do_not_grow_per_message_beyond_the_writes(
    provider_settings, fake_providers, django_assert_max_num_queries
):
    for i in range(20):
        sms(body=f"n{i}")
    # Claim (select + update) per batch, then per message: one UPDATE + one attempt INSERT.
    with django_assert_max_num_queries(20 * 2 + 25):
        deliver()
    assert ScheduledMessage.objects.filter(status=Status.SENT).count() == 20
    assert DeliveryAttempt.objects.count() == 20


def test_sms_timeout_on_the_last_attempt_is_reconciled_not_failed_blindly(provider_settings, fake_providers):
    message = sms(max_attempts=1)
    fake_providers.fail_next(1, "timeout", delay=3, process=False)  # Twilio never got it
    deliver()
    assert fresh(message).status == Status.SENDING  # not `failed`: it may have gone out
    expire_leases()
    deliver()
    message = fresh(message)
    assert message.status == Status.FAILED and "not found at Twilio" in message.last_error
    assert fake_providers.sms_sent() == []


def test_a_send_is_not_started_when_its_lease_is_about_to_end(provider_settings, fake_providers):
    from messaging.delivery.sending import send_one

    message = sms()
    message.send_by = monotonic() + 10
    assert send_one(message, threading.Event(), Halts()) is None
    assert fake_providers.requests_to("sms_create") == []


def test_outcome_of_a_claim_taken_over_by_recovery_changes_nothing(provider_settings, fake_providers):
    from messaging.delivery.outcomes import SendOutcome, record
    from messaging.delivery.providers.base import SendResult

    message = sms()
    # Same host and process (threads of one process share claimed_by): only the token tells.
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.SENDING, claim_token=uuid.uuid4())
    message.claim_token = uuid.uuid4()
    outcome = SendOutcome(message=message, started_at=timezone.now(), duration_ms=5, result=SendResult("SM1", "queued"))
    assert record(outcome) == "lost_claim"
    assert (fresh(message).status, fresh(message).provider_message_id) == (Status.SENDING, "")


def test_recovery_stops_at_the_first_failed_twilio_lookup_and_hands_the_rest_back(provider_settings, fake_providers):
    now = timezone.now()
    messages = [sms(body=f"r{i}") for i in range(3)]
    ScheduledMessage.objects.update(
        status=Status.SENDING,
        attempts=1,
        claimed_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(minutes=5),
    )
    fake_providers.set_fault("500", service="twilio")
    counts = recover_expired_leases(now)
    assert counts["reconcile_pending"] == 3
    assert len(fake_providers.requests_to("sms_list")) == 1  # not one failing look-up per message
    assert all(fresh(m).status == Status.SENDING and fresh(m).lease_expires_at <= timezone.now() for m in messages)


def test_sent_sms_to_a_contact_answers_their_waiting_conversation(provider_settings, fake_providers):
    from messaging.models import Conversation, Message

    client = make_client()
    lead = make_lead(client, phone="+14155550123", tz="UTC")
    waiting = Conversation.objects.create(
        client=client, lead=lead, phone=lead.phone, last_message_at=timezone.now(), last_message_direction="in"
    )
    with time_machine.travel(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), tick=False):  # daytime for the lead
        sms(to=lead.phone, client=client, lead=lead, body="Yes, 3pm works")
        deliver()
    waiting.refresh_from_db()
    assert waiting.last_message_direction == "out"
    assert list(Message.objects.filter(conversation=waiting).values_list("direction", "body")) == [
        ("out", "Yes, 3pm works")
    ]
    lead.refresh_from_db()
    assert lead.last_activity_at == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def test_notifications_to_the_owner_open_no_conversation(provider_settings, fake_providers):
    from messaging.models import Conversation

    client = make_client(owner_phone="+14155550100")
    sms(to="+14155550100", client=client, body="Missed call from +14155550150")
    deliver()
    assert not Conversation.objects.exists()
