import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command

from scheduling import locks
from scheduling.models import Health, Job, JobRun, RunStatus, Trigger
from scheduling.runner import EXIT_PARTIAL, EXIT_TEMPFAIL, run_job
from tests.conftest import start_manage

pytestmark = pytest.mark.django_db


def test_partly_failing_job_is_partial_with_the_other_items_done(sample_jobs_registered):
    result = run_job("test-partial", Trigger.MANUAL)
    run = JobRun.objects.get(pk=result.run_id)
    assert (run.status, run.processed, run.succeeded, run.failed) == ("partial", 5, 4, 1)
    assert run.summary["done"] == [1, 2, 4, 5]
    assert "bad data in item 3" in run.error
    assert result.exit_code == EXIT_PARTIAL


def test_partial_run_exits_3_from_the_command(sample_jobs_registered, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("cron", "run", "test-partial")
    assert exit_info.value.code == 3
    assert "partial" in capsys.readouterr().out


def test_exception_out_of_the_job_fails_the_run_with_its_traceback(sample_jobs_registered):
    result = run_job("test-fail", Trigger.MANUAL)
    run = JobRun.objects.get(pk=result.run_id)
    assert run.status == RunStatus.FAILED
    assert run.error == "RuntimeError: the provider account is suspended"
    assert "Traceback" in run.traceback and "sample_jobs.py" in run.traceback
    assert (result.exit_code, result.http_status, result.success) == (1, 500, False)


def test_disabled_job_is_skipped_without_running(sample_jobs_registered):
    run_job("test-ok", Trigger.MANUAL)
    Job.objects.filter(name="test-ok").update(enabled=False)
    result = run_job("test-ok", Trigger.CRON)
    assert result.status == RunStatus.SKIPPED and result.reason == "disabled"
    assert result.exit_code == 0
    assert JobRun.objects.filter(job__name="test-ok", status=RunStatus.SUCCEEDED).count() == 1


def test_overloaded_machine_skips_with_the_reason_and_exit_75(sample_jobs_registered, settings):
    settings.CRON_MIN_FREE_MB = 10**9
    result = run_job("test-ok", Trigger.CRON)
    assert result.status == RunStatus.SKIPPED
    assert "CRON_MIN_FREE_MB" in result.message
    assert (result.exit_code, result.http_status) == (EXIT_TEMPFAIL, 503)


def test_held_lock_skips_as_already_running(sample_jobs_registered):
    lock = locks.acquire("test-ok")
    try:
        result = run_job("test-ok", Trigger.CRON)
    finally:
        lock.release()
    assert (result.status, result.reason, result.http_status, result.exit_code) == (
        "skipped",
        "already_running",
        409,
        0,
    )


def test_run_records_host_pid_trigger_and_duration(sample_jobs_registered):
    result = run_job("test-ok", Trigger.HTTP)
    run = JobRun.objects.get(pk=result.run_id)
    assert run.trigger == "http" and run.host and run.pid
    assert run.finished_at >= run.started_at and run.duration_ms is not None
    job = Job.objects.get(name="test-ok")
    assert (job.last_status, job.last_success_at) == ("succeeded", run.started_at)


def test_failure_alerts_once_per_incident_and_on_recovery(sample_jobs_registered, settings, monkeypatch):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    run_job("test-fail", Trigger.CRON)
    run_job("test-fail", Trigger.CRON)
    assert [m.subject for m in mail.outbox] == ["[cron] test-fail is failing"]
    assert Job.objects.get(name="test-fail").alert_state == Health.FAILING

    monkeypatch.setattr(sample_jobs_registered, "BROKEN", False)
    run_job("test-fail", Trigger.CRON)
    run_job("test-fail", Trigger.CRON)
    assert [m.subject for m in mail.outbox] == ["[cron] test-fail is failing", "[cron] test-fail recovered"]
    assert Job.objects.get(name="test-fail").alert_state == Health.OK


def test_alert_waits_for_the_configured_number_of_failures(sample_jobs_registered, settings):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    settings.CRON_ALERT_AFTER_FAILURES = 3
    for _ in range(2):
        run_job("test-fail", Trigger.CRON)
    assert mail.outbox == []
    run_job("test-fail", Trigger.CRON)
    assert len(mail.outbox) == 1 and "3 time(s) in a row" in mail.outbox[0].body


@pytest.mark.django_db(transaction=True)
def test_two_processes_starting_the_same_job_run_it_once(sample_jobs_registered):
    first = start_manage("cron", "run", "test-sleep", SAMPLE_SLEEP="3")
    second = start_manage("cron", "run", "test-sleep", SAMPLE_SLEEP="3")
    outputs = [proc.communicate(timeout=60) for proc in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    statuses = sorted(JobRun.objects.filter(job__name="test-sleep").values_list("status", "skip_reason"))
    assert [s for s, _ in statuses] == ["skipped", "succeeded"]
    assert statuses[0][1].startswith("already_running")


def start_and_wait_running(job: str, **env: str):
    proc = start_manage("cron", "run", job, SAMPLE_SLEEP="30", **env)
    deadline = time.monotonic() + 20
    while not JobRun.objects.filter(job__name=job, status="running").exists():
        assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "not started"
        time.sleep(0.05)
    return proc


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_the_run_cleanly_and_records_it_as_stopped_early(sample_jobs_registered):
    proc = start_and_wait_running("test-sleep")
    started = time.monotonic()
    proc.terminate()
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10  # it stopped taking work, it did not sleep on
    run = JobRun.objects.get(job__name="test-sleep")
    assert run.status == RunStatus.SUCCEEDED and run.summary["stopped_early"] == "SIGTERM", (out, err)
    assert "stopped early by SIGTERM" in out
    assert not locks.is_held("test-sleep")


@pytest.mark.django_db(transaction=True)
def test_a_second_sigterm_ends_a_run_that_does_not_stop(sample_jobs_registered):
    proc = start_and_wait_running("test-stubborn")
    proc.terminate()
    time.sleep(0.5)
    assert proc.poll() is None  # the first one only asked
    proc.terminate()
    proc.communicate(timeout=20)
    run = JobRun.objects.get(job__name="test-stubborn")
    assert run.status == RunStatus.FAILED and "SystemExit" in run.error
    assert not locks.is_held("test-stubborn")


@pytest.mark.django_db(transaction=True)
def test_run_whose_database_connection_dies_is_recorded_as_failed(sample_jobs_registered):
    result = run_job("test-db-drop", Trigger.MANUAL)
    run = JobRun.objects.get(pk=result.run_id)
    assert run.status == RunStatus.FAILED and "OperationalError" in run.error
    assert Job.objects.get(name="test-db-drop").last_status == RunStatus.FAILED


def test_run_whose_lock_session_is_ended_stops_taking_work(sample_jobs_registered, monkeypatch):
    from django.db import connection

    from scheduling import context
    from scheduling.context import JobContext
    from scheduling.services import ensure_job
    from tests.scheduling.sample_jobs import SPECS

    monkeypatch.setattr(context, "LOCK_CHECK_SECONDS", 0.0)
    lock = locks.acquire("test-ok")
    run = JobRun.objects.create(job=ensure_job(SPECS[3]), trigger="manual")
    ctx = JobContext(run.job.name, run.pk, timedelta(minutes=10), lock)
    assert not ctx.should_stop()
    with connection.cursor() as cursor:  # a failover or a dropped connection ends the session
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cron-lock:test-ok'"
        )
    assert ctx.should_stop() and ctx.data["lock_lost"] == 1
    lock.release()
