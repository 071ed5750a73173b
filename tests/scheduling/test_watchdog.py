from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from scheduling import locks
from scheduling.models import Health, Job, JobRun, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import check_overdue_jobs, prune_runs, reap_abandoned_runs, sync_jobs

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 10, 0, 10, tzinfo=UTC)  # test-ok runs */5 with 1 minute grace


def _job_last_ok_at(when):
    with time_machine.travel(when, tick=False):
        run_job("test-ok", Trigger.CRON)
    return Job.objects.get(name="test-ok")


def test_job_is_not_overdue_within_its_grace(sample_jobs_registered):
    job = _job_last_ok_at(T0)
    # next expected 10:05, grace 1 minute
    assert not job.is_overdue(datetime(2026, 11, 28, 10, 5, 59, tzinfo=UTC))
    assert job.is_overdue(datetime(2026, 11, 28, 10, 6, 1, tzinfo=UTC))


def test_new_job_is_not_overdue_for_runs_it_could_not_have_had(sample_jobs_registered):
    with time_machine.travel(T0, tick=False):
        sync_jobs()
    job = Job.objects.get(name="test-ok")
    assert not job.is_overdue(T0 + timedelta(minutes=5))
    assert job.is_overdue(T0 + timedelta(minutes=6, seconds=1))


def test_disabled_job_is_never_overdue(sample_jobs_registered):
    job = _job_last_ok_at(T0)
    job.enabled = False
    assert not job.is_overdue(T0 + timedelta(days=3))
    assert job.health(T0 + timedelta(days=3)) == Health.DISABLED


def test_overdue_job_alerts_once_per_incident_then_recovers(sample_jobs_registered, settings):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    _job_last_ok_at(T0)
    late = T0 + timedelta(minutes=20)
    with time_machine.travel(late, tick=False):
        assert "test-ok" in check_overdue_jobs(late)
        assert "test-ok" not in check_overdue_jobs(late + timedelta(minutes=5))  # already alerted
    assert [m.subject for m in mail.outbox].count("[cron] test-ok is overdue") == 1
    _job_last_ok_at(late + timedelta(minutes=6))
    assert "[cron] test-ok recovered" in [m.subject for m in mail.outbox]
    assert Job.objects.get(name="test-ok").alert_state == Health.OK


def test_watchdog_job_reports_what_it_found(sample_jobs_registered, settings):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    _job_last_ok_at(T0)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        result = run_job("watchdog", Trigger.CRON)
    assert result.status == "succeeded"
    assert result.data["overdue_alerts"] >= 1  # test-ok, and the others never ran since creation
    assert result.data["abandoned"] == 0


def test_running_row_without_a_held_lock_is_abandoned(sample_jobs_registered):
    job = sync_jobs()[0]
    dead = JobRun.objects.create(job=job, trigger=Trigger.CRON, status=RunStatus.RUNNING)
    assert reap_abandoned_runs(T0) == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == RunStatus.ABANDONED and "abandoned" in dead.error


def test_running_row_whose_lock_is_held_is_left_alone(sample_jobs_registered):
    job = Job.objects.get(name=sync_jobs()[0].name)
    live = JobRun.objects.create(job=job, trigger=Trigger.CRON, status=RunStatus.RUNNING)
    lock = locks.acquire(job.name)
    try:
        assert reap_abandoned_runs(T0) == []
    finally:
        lock.release()
    live.refresh_from_db()
    assert live.status == RunStatus.RUNNING


def test_prune_deletes_only_runs_older_than_the_retention(sample_jobs_registered, settings):
    settings.CRON_RUN_RETENTION_DAYS = 30
    job = sync_jobs()[0]
    old = [JobRun(job=job, trigger="cron", status="succeeded", started_at=T0 - timedelta(days=31)) for _ in range(7)]
    recent = JobRun.objects.create(job=job, trigger="cron", status="succeeded", started_at=T0 - timedelta(days=29))
    JobRun.objects.bulk_create(old)
    assert prune_runs(T0, batch_size=3) == 7
    assert list(JobRun.objects.values_list("pk", flat=True)) == [recent.pk]


def test_lock_probe_does_not_take_the_lock(sample_jobs_registered):
    from scheduling.locks import acquire, is_held

    assert not is_held("test-ok")
    held = acquire("test-ok")
    try:
        assert is_held("test-ok")
    finally:
        held.release()
    assert not is_held("test-ok")


@pytest.mark.django_db
def test_prune_leaves_a_run_still_marked_running_to_the_watchdog():
    from datetime import timedelta

    from django.utils import timezone

    from scheduling import registry
    from scheduling.models import JobRun
    from scheduling.services import ensure_job, prune_runs

    job = ensure_job(registry.get("watchdog"))
    old = timezone.now() - timedelta(days=90)
    JobRun.objects.create(job=job, trigger="cron", status="running", started_at=old)
    JobRun.objects.create(job=job, trigger="cron", status="succeeded", started_at=old, finished_at=old)
    assert prune_runs(timezone.now()) == 1
    assert list(JobRun.objects.values_list("status", flat=True)) == ["running"]
