"""Two real `process_scheduled` processes share one allowance per provider account (held in
PostgreSQL), against a fake that answers 429 past its rate: the real SDKs, the real limiter."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Channel, DeliveryAttempt, ScheduledMessage, Status
from scheduling.models import JobRun
from tests.conftest import start_manage
from tests.messaging.test_delivery_processes import provider_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def queue(sms: int, emails: int = 0) -> None:
    now = timezone.now() - timedelta(seconds=1)
    rows = [
        ScheduledMessage(channel=Channel.SMS, to=f"+1415555{i:04d}", body=f"sms-{i}", send_at=now, next_attempt_at=now)
        for i in range(sms)
    ] + [
        ScheduledMessage(
            channel=Channel.EMAIL,
            to=f"lead{i}@example.com",
            subject="s",
            body=f"email-{i}",
            send_at=now,
            next_attempt_at=now,
        )
        for i in range(emails)
    ]
    ScheduledMessage.objects.bulk_create(rows)


def peak_in_one_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def run_two(fake, **env: str) -> list[tuple[str, str]]:
    # Two runs of one process each (two hosts, say); one run's workers: test_delivery_workers.
    settings_env = provider_env(fake, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="20", DELIVERY_WORKERS="1", **env)
    workers = [start_manage("process_scheduled", **settings_env) for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    return outputs


def test_two_processes_stay_within_one_allowance_per_provider(fake_providers):
    fake_providers.set_rate_limit("twilio", 10)
    fake_providers.set_rate_limit("resend", 2)
    queue(sms=30, emails=8)

    started = time.monotonic()
    run_two(fake_providers, TWILIO_SEND_RATE="10", RESEND_SEND_RATE="2")
    elapsed = time.monotonic() - started

    sms_times, email_times = fake_providers.send_times("twilio"), fake_providers.send_times("resend")
    # The fake stamps a request when its handler thread runs, in this (test) process: on a busy
    # machine two requests sent 95 ms apart can be stamped closer. One over the limit in the
    # stamps is that noise; what the fake refused (429, its own strict window) is the real check.
    assert peak_in_one_second(sms_times) <= 10 + 1 and peak_in_one_second(email_times) <= 2 + 1
    assert len(fake_providers.rate_limited()) <= 2
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert sorted(run.summary.get("sent", 0) > 0 for run in JobRun.objects.all()) == [True, True]  # both sent
    assert elapsed < 30


def test_a_429_with_retry_after_pauses_the_other_process_too(fake_providers):
    queue(sms=45)
    env = provider_env(
        fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="5", TWILIO_SEND_RATE="10", DELIVERY_WORKERS="1"
    )
    workers = [start_manage("process_scheduled", **env) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(fake_providers.sms_sent()) < 10:
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.02)
    fake_providers.fail_next(1, "429", service="twilio", retry_after="2")
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert sorted(run.summary.get("sent", 0) > 0 for run in JobRun.objects.all()) == [True, True]  # both sent

    times = fake_providers.send_times("twilio")
    [refused] = [r.timestamp for r in fake_providers.requests_to("sms_create") if r.status == 429]
    # Slots another process already held (at most a quarter second ahead) may still go; then
    # nobody sends until the pause ends.
    assert [round(t - refused, 3) for t in times if refused + 0.3 < t < refused + 1.9] == [], [
        round(t - refused, 3) for t in times
    ]
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert not DeliveryAttempt.objects.exclude(outcome="sent").exists()  # the 429 used no attempt
    assert sum(run.summary.get("rate_limited", 0) for run in JobRun.objects.all()) == 1
