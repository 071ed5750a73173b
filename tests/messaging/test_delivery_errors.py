"""The three kinds of provider error, the circuit breaker, and claims that stay honest: a run
that sent nothing never says it succeeded."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from messaging.delivery.claiming import claim_due_messages
from messaging.delivery.reconcile import recover_expired_leases
from messaging.models import DeliveryAttempt, Outcome, ScheduledMessage, Status
from messaging.services import retry_message
from scheduling.models import Health, Job
from scheduling.runner import run_job
from tests.messaging.factories import email, make_client, sms

pytestmark = pytest.mark.django_db


def deliver():
    return run_job("process-scheduled", "manual")


def statuses() -> list[tuple[str, int]]:
    return sorted(ScheduledMessage.objects.values_list("status", "attempts"))


def health() -> str:
    return Job.objects.get(name="process-scheduled").health(timezone.now())


# -- account / configuration errors ---------------------------------------------------------


def test_rotated_twilio_credentials_fail_the_run_and_keep_every_sms_pending(provider_settings, fake_providers):
    provider_settings.DELIVERY_CONCURRENCY = 2
    for i in range(10):
        sms(body=f"m{i}", to=f"+141555503{i:02d}")
    fake_providers.twilio_auth_token = "rotated"  # our TWILIO_AUTH_TOKEN is the old one

    result = deliver()

    assert result.status == "failed" and result.exit_code == 1 and result.http_status == 500
    assert "TWILIO_AUTH_TOKEN" in result.message and "20003" in result.message
    assert statuses() == [(Status.PENDING, 0)] * 10  # no attempt used, none failed
    calls = len(fake_providers.requests_to("sms_create"))
    assert 1 <= calls <= 3  # the sends already in flight when the first 401 came back, no more
    assert set(DeliveryAttempt.objects.values_list("outcome", flat=True)) == {Outcome.ACCOUNT}
    held = ScheduledMessage.objects.filter(delivery_attempts__isnull=False).first()
    assert held.last_error.startswith("held:") and "TWILIO_AUTH_TOKEN" in held.last_error
    assert result.data["halted"] == ["SMS"]
    assert (result.data["held"], result.data["released"]) == (calls, 10 - calls)
    assert result.data["succeeded"] == 0  # a held message is not a delivered one
    assert health() == Health.FAILING


def test_account_error_alerts_once_per_incident_and_the_next_good_run_recovers(provider_settings, fake_providers):
    provider_settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    sms()
    fake_providers.twilio_auth_token = "rotated"
    deliver()
    deliver()
    assert [m.subject for m in mail.outbox] == ["[cron] process-scheduled is failing"]
    assert "TWILIO_AUTH_TOKEN" in mail.outbox[0].body

    fake_providers.twilio_auth_token = provider_settings.TWILIO_AUTH_TOKEN  # fixed
    result = deliver()

    assert result.status == "succeeded" and result.data["sent"] == 1
    assert statuses() == [(Status.SENT, 1)]
    assert [m.subject for m in mail.outbox][-1] == "[cron] process-scheduled recovered"
    assert health() == Health.OK


def test_twilio_chosen_without_credentials_fails_the_run_naming_the_variable(provider_settings, fake_providers):
    provider_settings.TWILIO_AUTH_TOKEN = ""
    sms()
    result = deliver()
    assert result.status == "failed" and "TWILIO_AUTH_TOKEN is not set" in result.message
    assert statuses() == [(Status.PENDING, 0)]
    assert fake_providers.requests_to("sms_create") == []


def test_a_from_number_that_cannot_send_holds_sms_and_names_the_setting(provider_settings, fake_providers):
    fake_providers.twilio_senders = {"+15005550001"}  # not our TWILIO_FROM_NUMBER
    sms()
    result = deliver()
    assert result.status == "failed" and "TWILIO_FROM_NUMBER" in result.message and "21606" in result.message
    assert statuses() == [(Status.PENDING, 0)]


def test_a_clients_own_sender_that_cannot_send_holds_only_that_clients_sms(provider_settings, fake_providers):
    fake_providers.twilio_senders = {provider_settings.TWILIO_FROM_NUMBER}
    stuck = make_client(name="Stuck", sms_from_number="+14155550999")
    for i in range(3):
        sms(client=stuck, body=f"stuck {i}", to=f"+1415555010{i}")
    fine = [sms(body=f"fine {i}", to=f"+1415555020{i}") for i in range(3)]

    result = deliver()

    assert result.status == "failed" and "+14155550999" in result.message
    assert {m["body"] for m in fake_providers.sms_sent()} == {m.body for m in fine}
    assert (
        sorted(ScheduledMessage.objects.filter(client=stuck).values_list("status", "attempts"))
        == [(Status.PENDING, 0)] * 3
    )


def test_rotated_resend_key_holds_email_while_sms_still_goes_out(provider_settings, fake_providers):
    provider_settings.RESEND_API_KEY = "re_revoked"
    held = email()
    sent = sms()
    result = deliver()
    assert result.status == "failed" and "RESEND_API_KEY" in result.message and "invalid_api_key" in result.message
    assert (ScheduledMessage.objects.get(pk=held.pk).status, ScheduledMessage.objects.get(pk=held.pk).attempts) == (
        Status.PENDING,
        0,
    )
    assert ScheduledMessage.objects.get(pk=sent.pk).status == Status.SENT
    assert result.data["sent"] == 1


def test_unverified_from_domain_names_resend_from_email(provider_settings, fake_providers):
    fake_providers.resend_domains = {"verified.example"}
    email()
    result = deliver()
    assert result.status == "failed" and "RESEND_FROM_EMAIL" in result.message
    assert statuses() == [(Status.PENDING, 0)]


def test_permanent_error_for_one_message_still_fails_only_that_message(provider_settings, fake_providers):
    bad, good = sms(body="bad"), sms(body="good", to="+14155550124")
    fake_providers.fail_next(1, "twilio_21211", to=bad.to)
    result = deliver()
    assert result.status == "succeeded"
    assert ScheduledMessage.objects.get(pk=bad.pk).status == Status.FAILED
    assert ScheduledMessage.objects.get(pk=good.pk).status == Status.SENT


# -- circuit breaker ------------------------------------------------------------------------


def test_an_outage_trips_the_breaker_and_leaves_the_other_messages_their_attempts(provider_settings, fake_providers):
    provider_settings.DELIVERY_BREAKER_THRESHOLD = 3
    provider_settings.DELIVERY_CONCURRENCY = 1
    for i in range(10):
        sms(body=f"m{i}", to=f"+141555501{i:02d}")
    fake_providers.set_fault("429", service="twilio", retry_after=None)

    result = deliver()

    assert result.status == "failed" and "3 times in a row" in result.message
    calls = len(fake_providers.requests_to("sms_create"))
    assert 3 <= calls <= 4  # the third failure trips it; one more send may already be under way
    assert statuses() == [(Status.PENDING, 0)] * (10 - calls) + [(Status.PENDING, 1)] * calls
    assert result.data["halted"] == ["SMS"]


def test_breaker_counts_consecutive_failures_only(provider_settings, fake_providers):
    provider_settings.DELIVERY_BREAKER_THRESHOLD = 2
    provider_settings.DELIVERY_CONCURRENCY = 1
    for i in range(4):
        sms(body=f"m{i}", to=f"+141555502{i:02d}")
    fake_providers.fail_next(1, "429", service="twilio", retry_after=None)  # fail, ok, ok, ok
    result = deliver()
    assert result.status == "succeeded" and result.data["sent"] == 3


# -- retries, leases, reconciliation --------------------------------------------------------


def test_an_operators_retry_of_an_email_reaches_resend_as_a_new_send(provider_settings, fake_providers):
    message = email(subject="Quote", body="Attached")
    deliver()
    ScheduledMessage.objects.filter(pk=message.pk).update(status=Status.UNDELIVERED)  # it bounced, say
    assert retry_message(ScheduledMessage.objects.get(pk=message.pk))
    assert ScheduledMessage.objects.get(pk=message.pk).provider_message_id == ""  # the old send's id is gone

    deliver()

    keys = [e["idempotency_key"] for e in fake_providers.emails_sent()]
    assert keys == [str(message.pk), f"{message.pk}:retry-1"]
    assert fake_providers.replayed() == []
    message.refresh_from_db()
    assert message.status == Status.SENT and message.provider_message_id == fake_providers.emails_sent()[1]["id"]


def test_crash_recovery_of_a_retried_email_keeps_that_generations_key(provider_settings, fake_providers):
    message = email()
    ScheduledMessage.objects.filter(pk=message.pk).update(generation=2)
    recover_target = ScheduledMessage.objects.filter(pk=message.pk)
    recover_target.update(status=Status.SENDING, attempts=1, lease_expires_at=timezone.now() - timedelta(minutes=1))
    deliver()
    assert [e["idempotency_key"] for e in fake_providers.emails_sent()] == [f"{message.pk}:retry-2"]


def test_a_host_whose_clock_runs_ahead_cannot_take_a_live_lease(provider_settings, fake_providers):
    sms()
    claim = claim_due_messages(timezone.now(), 10, timedelta(minutes=5))
    assert len(claim.ready) == 1
    with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
        counts = recover_expired_leases(timezone.now())
    assert not counts
    assert ScheduledMessage.objects.get().claim_token == claim.token  # still the first claim's


def test_a_timed_out_sms_is_not_looked_up_before_the_reconcile_delay(provider_settings, fake_providers):
    provider_settings.DELIVERY_RECONCILE_DELAY_SECONDS = 120
    message = sms()
    fake_providers.fail_next(1, "timeout", delay=3)
    before = timezone.now()
    deliver()
    message.refresh_from_db()
    assert message.status == Status.SENDING
    assert message.lease_expires_at >= before + timedelta(seconds=119)
    deliver()  # right away: nothing to reconcile yet
    assert fake_providers.requests_to("sms_list") == []


# -- system check ---------------------------------------------------------------------------


def test_check_reports_a_provider_chosen_without_its_settings(settings):
    settings.SMS_PROVIDER = "twilio"
    settings.TWILIO_ACCOUNT_SID = ""
    with pytest.raises(SystemCheckError, match="TWILIO_ACCOUNT_SID"):
        call_command("check")


def test_check_reports_an_unknown_provider(settings):
    settings.EMAIL_PROVIDER = "sendgrid"
    with pytest.raises(SystemCheckError, match="EMAIL_PROVIDER='sendgrid' is not a known provider"):
        call_command("check")
