"""Delivery across real processes: exactly once under contention, nothing lost after kill -9."""

import os
import signal
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from messaging.models import Channel, ScheduledMessage, Status
from scheduling.runner import run_job
from tests.conftest import start_manage
from tests.fakes.providers import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, FAKE_FROM_EMAIL, FAKE_FROM_NUMBER, FAKE_RESEND_KEY

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def provider_env(fake, **extra: str) -> dict[str, str]:
    return {
        "SMS_PROVIDER": "twilio",
        "EMAIL_PROVIDER": "resend",
        "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FAKE_FROM_NUMBER,
        "TWILIO_API_BASE_URL": fake.url,
        "RESEND_API_KEY": FAKE_RESEND_KEY,
        "RESEND_FROM_EMAIL": FAKE_FROM_EMAIL,
        "RESEND_API_URL": fake.url,
        "TWILIO_SEND_RATE": "0",
        "RESEND_SEND_RATE": "0",
        "PROVIDER_TIMEOUT_SECONDS": "5",
        **extra,
    }


def queue(count: int, *, sms_share: int = 2) -> list:
    """`count` due messages, two thirds SMS, each with a body unique to it."""
    now = timezone.now() - timedelta(seconds=1)
    rows = []
    for i in range(count):
        if i % 3 < sms_share:
            rows.append(
                ScheduledMessage(
                    channel=Channel.SMS,
                    to=f"+1415555{i % 10000:04d}",
                    body=f"msg-{i}",
                    send_at=now,
                    next_attempt_at=now,
                )
            )
        else:
            rows.append(
                ScheduledMessage(
                    channel=Channel.EMAIL,
                    to=f"lead{i}@example.com",
                    subject="s",
                    body=f"msg-{i}",
                    send_at=now,
                    next_attempt_at=now,
                )
            )
    return ScheduledMessage.objects.bulk_create(rows)


def sends_per_message(fake) -> Counter:
    sent = Counter(s["body"] for s in fake.sms_sent())
    sent.update(e["text"] for e in fake.emails_sent())
    return sent


def kill_9_once(worker, reached, timeout: float = 60) -> None:
    """SIGKILL `worker` as soon as `reached()` holds (failing if it exits or never gets there)."""
    deadline = time.monotonic() + timeout
    while not reached():
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)


def test_kill_9_mid_batch_loses_nothing_and_sends_nothing_twice(fake_providers):
    queue(120)
    fake_providers.set_latency(0.05)
    # One process: killing it kills every send (a run's workers stop with their parent, see
    # test_delivery_workers).
    env = provider_env(
        fake_providers,
        DELIVERY_CONCURRENCY="4",
        DELIVERY_BATCH_SIZE="40",
        DELIVERY_LEASE_SECONDS="60",
        DELIVERY_WORKERS="1",
    )
    worker = start_manage("process_scheduled", **env)
    kill_9_once(worker, lambda: len(fake_providers.sms_sent()) + len(fake_providers.emails_sent()) >= 30)
    worker.communicate(timeout=30)
    stranded = ScheduledMessage.objects.filter(status=Status.SENDING).count()
    assert stranded > 0  # killed mid-batch: claimed, some in flight

    fake_providers.set_latency(0)
    settings_env = provider_env(fake_providers)
    from django.test import override_settings

    overrides = {k: (float(v) if k.endswith(("_RATE", "_SECONDS")) else v) for k, v in settings_env.items()}
    from messaging.delivery.providers import reset_providers

    # As if the leases ran out (they are on the database's clock, which no test travels).
    expired = timezone.now() - timedelta(seconds=1)
    ScheduledMessage.objects.filter(status=Status.SENDING).update(lease_expires_at=expired)
    with override_settings(**overrides):
        reset_providers()
        result = run_job("process-scheduled", "manual")
    reset_providers()
    assert result.status == "succeeded", result.message
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}  # 0 lost
    counts = sends_per_message(fake_providers)
    assert len(counts) == 120 and set(counts.values()) == {1}  # 0 sent twice
    # Email that went in a batch is recovered as its batch (recovered_batch_sent).
    recovered = ("reconciled_sent", "recovered_retrying", "recovered_batch_sent")
    assert sum(result.data.get(key, 0) for key in recovered) >= stranded


def test_sigterm_mid_batch_records_what_went_out_and_leaves_nothing_sending(fake_providers):
    queue(90)
    fake_providers.set_latency(0.1)
    env = provider_env(fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="30")
    worker = start_manage("process_scheduled", **env)
    deadline = time.monotonic() + 60
    while len(fake_providers.sms_sent()) + len(fake_providers.emails_sent()) < 10:
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.02)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)

    assert ScheduledMessage.objects.filter(status=Status.SENDING).count() == 0, (out, err)
    counts = sends_per_message(fake_providers)
    sent = set(ScheduledMessage.objects.filter(status=Status.SENT).values_list("body", flat=True))
    assert sent == set(counts) and set(counts.values()) == {1}  # every send recorded, none twice
    assert 10 <= len(sent) < 90  # it stopped: the rest waits for the next run
    left = ScheduledMessage.objects.filter(status=Status.PENDING)
    assert set(left.values_list("attempts", flat=True)) == {0}  # released, attempt unused
    from scheduling.models import JobRun

    run = JobRun.objects.get(job__name="process-scheduled")
    assert run.status == "succeeded" and run.summary["stopped_early"] == "SIGTERM"
    assert worker.returncode == 0 and "stopped early by SIGTERM" in out


def test_four_workers_and_four_http_triggers_send_each_message_once_and_leave_nothing_sending(
    fake_providers, live_server, settings
):
    """4 worker processes + 4 concurrent HTTP triggers (all four in this process, so they share
    WORKER), 5 ms provider latency, no fault, no kill: once every run has returned, no message
    may be left `sending` (its 300 s lease would hold it up long after the queue drained)."""
    from messaging.models import DeliveryAttempt
    from scheduling.models import JobRun

    settings.DELIVERY_BATCH_SIZE = 50
    queue(2000)
    fake_providers.set_latency(0.005)
    started = time.monotonic()
    workers = [
        start_manage("process_scheduled", "--trigger=cron", **provider_env(fake_providers, DELIVERY_BATCH_SIZE="50"))
        for _ in range(4)
    ]
    settings.SMS_PROVIDER, settings.EMAIL_PROVIDER = "twilio", "resend"
    for name, value in provider_env(fake_providers).items():
        if name not in ("SMS_PROVIDER", "EMAIL_PROVIDER"):
            setattr(settings, name, float(value) if name.endswith(("_RATE", "_SECONDS")) else value)
    from messaging.delivery.providers import reset_providers

    reset_providers()
    answers: list[int] = []

    def trigger() -> None:
        response = requests.post(
            f"{live_server.url}/api/cron/process-scheduled/",
            headers={"Authorization": "Bearer test-secret-one"},
            timeout=120,
        )
        answers.append(response.status_code)

    threads = [threading.Thread(target=trigger) for _ in range(4)]
    for thread in threads:
        thread.start()
    outputs = [w.communicate(timeout=120) for w in workers]
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    reset_providers()

    assert [w.returncode for w in workers] == [0, 0, 0, 0], outputs
    assert answers == [200] * 4
    # Checked at once, minutes before any lease could end: every run has returned, so nothing
    # may still be `sending`. On failure, show the rows, their attempts and every run's counts.
    stuck = list(
        ScheduledMessage.objects.filter(status=Status.SENDING).values(
            "id", "body", "channel", "claimed_by", "attempts", "lease_expires_at", "last_error_code"
        )
    )
    attempts = list(
        DeliveryAttempt.objects.filter(message_id__in=[row["id"] for row in stuck]).values(
            "message__body", "outcome", "error_code", "worker", "duration_ms"
        )
    )
    runs = list(JobRun.objects.order_by("pk").values("pk", "trigger", "pid", "status", "summary"))
    assert stuck == [], (stuck, attempts, runs)
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}
    counts = sends_per_message(fake_providers)
    assert len(counts) == 2000 and set(counts.values()) == {1}, [body for body, n in counts.items() if n > 1][:10]
    assert fake_providers.replayed() == []
    # Every claimed message was recorded as sent by the run that claimed it: nothing lost its
    # claim, came back ambiguous, failed to record or was handed back.
    assert sum(run["summary"].get("sent", 0) for run in runs) == 2000, runs
    assert elapsed < 60  # drained by the runs themselves, not by lease recovery


def test_kill_9_after_resend_took_a_batch_resends_it_under_its_key_and_nothing_twice(fake_providers):
    queue(150, sms_share=0)  # emails only
    fake_providers.set_latency(1.0)
    env = provider_env(
        fake_providers,
        DELIVERY_CONCURRENCY="2",
        DELIVERY_BATCH_SIZE="100",
        RESEND_BATCH_SIZE="100",
        DELIVERY_WORKERS="1",
    )
    worker = start_manage("process_scheduled", **env)
    # Killed once the request is in the fake's hands: no answer is read.
    kill_9_once(worker, lambda: bool(fake_providers.requests_to("email_batch")))
    worker.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while len(fake_providers.emails_sent()) < len(fake_providers.requests_to("email_batch")[0].json):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first_ids = {e["text"]: e["id"] for e in fake_providers.emails_sent()}
    stranded = ScheduledMessage.objects.filter(status=Status.SENDING).exclude(batch_idempotency_key="")
    assert stranded.count() >= len(first_ids) > 0

    fake_providers.set_latency(0)
    from django.test import override_settings

    from messaging.delivery.providers import reset_providers

    overrides = {
        k: (float(v) if k.endswith(("_RATE", "_SECONDS")) else v) for k, v in provider_env(fake_providers).items()
    }
    ScheduledMessage.objects.filter(status=Status.SENDING).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    with override_settings(**overrides):
        reset_providers()
        result = run_job("process-scheduled", "manual")
    reset_providers()
    assert result.status == "succeeded", result.message
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}  # 0 lost
    counts = sends_per_message(fake_providers)
    assert len(counts) == 150 and set(counts.values()) == {1}  # 0 sent twice
    assert fake_providers.replayed()  # the stranded batch went again under its key
    by_body = dict(ScheduledMessage.objects.values_list("body", "provider_message_id"))
    assert all(by_body[body] == sid for body, sid in first_ids.items())  # Resend's first ids kept
