"""process_scheduled --workers N: one run sent from N forked processes, as real processes
against the fake providers."""

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from messaging.delivery.providers import reset_providers
from messaging.delivery.workers import workers_for
from messaging.models import ScheduledMessage, Status
from scheduling.models import JobRun
from scheduling.runner import run_job
from tests.conftest import start_manage
from tests.messaging.test_delivery_pacing_processes import peak_in_one_second
from tests.messaging.test_delivery_pacing_processes import queue as queue_paced
from tests.messaging.test_delivery_processes import provider_env, queue, sends_per_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_for_sends(fake, worker, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while len(fake.sms_sent()) + len(fake.emails_sent()) < at_least:
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        time.sleep(0.02)


def run_again_in_process(fake) -> object:
    """The next run (in this process, one worker), after the killed run's leases ran out."""
    ScheduledMessage.objects.filter(status=Status.SENDING).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    overrides = {k: (float(v) if k.endswith(("_RATE", "_SECONDS")) else v) for k, v in provider_env(fake).items()}
    with override_settings(**overrides):
        reset_providers()
        result = run_job("process-scheduled", "manual")
    reset_providers()
    return result


def test_two_workers_send_each_message_once_and_the_run_counts_them_all(fake_providers):
    queue(600)
    fake_providers.set_latency(0.002)
    worker = start_manage(
        "process_scheduled", "--workers", "2", **provider_env(fake_providers, DELIVERY_BATCH_SIZE="20")
    )
    out, err = worker.communicate(timeout=120)

    assert worker.returncode == 0, (out, err)
    counts = sends_per_message(fake_providers)
    assert len(counts) == 600 and set(counts.values()) == {1}  # each once
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}
    run = JobRun.objects.get(job__name="process-scheduled")
    assert run.status == "succeeded"
    assert (run.processed, run.succeeded, run.failed) == (600, 600, 0)
    assert run.summary["sent"] == 600 and run.summary["workers"] == 2
    by_worker = run.summary["sent_by_worker"]
    assert sum(by_worker) == 600 and min(by_worker) > 0, by_worker  # both workers sent some
    claimers = set(ScheduledMessage.objects.values_list("claimed_by", flat=True))
    assert len(claimers) == 2 and all(not c.endswith(f":{worker.pid}") for c in claimers)  # the children claimed


def test_two_workers_share_one_allowance_per_provider(fake_providers):
    fake_providers.set_rate_limit("twilio", 10)
    fake_providers.set_rate_limit("resend", 2)
    queue_paced(sms=30, emails=8)
    env = provider_env(
        fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="10", TWILIO_SEND_RATE="10", RESEND_SEND_RATE="2"
    )
    worker = start_manage("process_scheduled", "--workers", "2", **env)
    out, err = worker.communicate(timeout=120)

    assert worker.returncode == 0, (out, err)
    # One over in the fake's stamps is its own timing noise (see test_delivery_pacing_processes).
    assert peak_in_one_second(fake_providers.send_times("twilio")) <= 10 + 1
    assert peak_in_one_second(fake_providers.send_times("resend")) <= 2 + 1
    assert len(fake_providers.rate_limited()) <= 2
    assert set(ScheduledMessage.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    run = JobRun.objects.get(job__name="process-scheduled")
    assert run.summary["sent"] == 38 and min(run.summary["sent_by_worker"]) > 0, run.summary


def test_a_killed_worker_fails_the_run_and_the_next_run_sends_the_rest_once(fake_providers):
    queue(150)
    fake_providers.set_latency(0.05)
    env = provider_env(fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="20", DELIVERY_LEASE_SECONDS="60")
    worker = start_manage("process_scheduled", "--workers", "2", **env)
    wait_for_sends(fake_providers, worker, 20)
    children = children_of(worker.pid)
    assert len(children) == 2, children
    os.kill(children[0], signal.SIGKILL)
    out, err = worker.communicate(timeout=60)

    run = JobRun.objects.get(job__name="process-scheduled")
    assert run.status == "failed" and worker.returncode == 1, (out, err)
    assert f"pid {children[0]}) was killed by SIGKILL" in run.error
    assert "reconciled by a later run" in run.error
    assert run.summary["sent"] > 0  # the other worker's sends are counted

    result = run_again_in_process(fake_providers)
    assert result.status == "succeeded", result.message
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {Status.SENT}  # 0 lost
    counts = sends_per_message(fake_providers)
    assert len(counts) == 150 and set(counts.values()) == {1}  # 0 sent twice


def test_sigterm_stops_the_workers_after_their_sends_in_flight(fake_providers):
    queue(150)
    fake_providers.set_latency(0.1)
    env = provider_env(fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="20")
    worker = start_manage("process_scheduled", "--workers", "2", **env)
    wait_for_sends(fake_providers, worker, 10)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)

    assert worker.returncode == 0, (out, err)
    assert ScheduledMessage.objects.filter(status=Status.SENDING).count() == 0
    counts = sends_per_message(fake_providers)
    sent = set(ScheduledMessage.objects.filter(status=Status.SENT).values_list("body", flat=True))
    assert sent == set(counts) and set(counts.values()) == {1}  # every send recorded, none twice
    assert 10 <= len(sent) < 150
    assert set(ScheduledMessage.objects.filter(status=Status.PENDING).values_list("attempts", flat=True)) == {0}
    run = JobRun.objects.get(job__name="process-scheduled")
    assert run.status == "succeeded" and run.summary["stopped_early"] == "SIGTERM"
    assert run.summary["sent"] == len(sent) == run.succeeded and run.summary["workers"] == 2


def test_a_killed_parent_stops_its_workers(fake_providers):
    queue(150)
    fake_providers.set_latency(0.1)
    env = provider_env(fake_providers, DELIVERY_CONCURRENCY="4", DELIVERY_BATCH_SIZE="20")
    worker = start_manage("process_scheduled", "--workers", "2", **env)
    wait_for_sends(fake_providers, worker, 10)
    children = children_of(worker.pid)
    assert len(children) == 2
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in children):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.05)
    # They finished their sends in flight and gave the rest back: nothing waits on a lease.
    assert ScheduledMessage.objects.filter(status=Status.SENDING).count() == 0
    assert ScheduledMessage.objects.filter(status=Status.PENDING).exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    ("requested", "setting", "due", "expected"),
    [(None, 3, 10, 3), (2, 3, 10, 2), (4, 0, 1, 1), (1, 4, 10, 1), (5, 0, 2, 2), (None, 0, 0, 1)],
)
def test_workers_follow_the_option_then_the_setting_and_never_outnumber_due_messages(
    settings, requested, setting, due, expected
):
    settings.DELIVERY_WORKERS = setting
    queue(due)
    assert workers_for(requested, timezone.now()) == expected


def test_sqlite_sends_from_one_process(settings, monkeypatch):
    from django.db import connection

    settings.DELIVERY_WORKERS = 4
    queue(10)
    monkeypatch.setattr(connection, "vendor", "sqlite")
    assert workers_for(None, timezone.now()) == 1


def test_zero_means_one_worker_per_core(settings):
    settings.DELIVERY_WORKERS = 0
    queue(50)
    assert workers_for(None, timezone.now()) == min(50, os.cpu_count() or 1)


def test_http_and_in_process_runs_send_from_one_process(provider_settings):
    provider_settings.DELIVERY_WORKERS = 4
    queue(5)
    result = run_job("process-scheduled", "manual")
    assert result.status == "succeeded" and result.data["sent"] == 5
    assert "workers" not in result.data


def test_a_worker_that_raises_fails_the_run_with_its_error_and_keeps_its_counts():
    from messaging.delivery.workers import deliver_in_workers
    from scheduling.context import JobContext

    def work(ctx: JobContext) -> None:
        ctx.add("sent", 2)
        ctx.item_succeeded(2)
        raise RuntimeError("database went away")

    ctx = JobContext("process-scheduled", 0, timedelta(minutes=1))
    deliver_in_workers(ctx, 2, work)
    assert ctx.data["sent"] == 4 and ctx.data["sent_by_worker"] == [2, 2] and ctx.processed == 4
    assert "delivery worker 1 (pid" in ctx.failure and "RuntimeError: database went away" in ctx.failure
    assert "delivery worker 2" in ctx.failure
