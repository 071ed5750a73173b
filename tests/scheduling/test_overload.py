"""The overload guard: recorded, alerted after N refusals in a row, never silencing the watchdog."""

from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from scheduling.models import Health, Job, JobRun, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import is_healthy, job_overview

pytestmark = pytest.mark.django_db


@pytest.fixture
def overloaded(settings):
    settings.CRON_MIN_FREE_MB = 10**9
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    settings.CRON_OVERLOAD_ALERT_AFTER = 3
    return settings


def test_watchdog_runs_on_an_overloaded_machine(overloaded):
    result = run_job("watchdog", Trigger.CRON)
    assert result.status == RunStatus.SUCCEEDED
    assert Job.objects.get(name="watchdog").consecutive_overloads == 0


def test_cron_status_answers_on_an_overloaded_machine(overloaded):
    out = StringIO()
    call_command("cron", "status", stdout=out)
    assert "watchdog" in out.getvalue()


def test_an_overload_skip_is_recorded_with_its_reason(overloaded, sample_jobs_registered):
    run_job("test-ok", Trigger.CRON)
    run = JobRun.objects.get(job__name="test-ok")
    assert run.status == RunStatus.SKIPPED and "CRON_MIN_FREE_MB" in run.skip_reason


def test_n_overload_skips_in_a_row_alert_once_and_a_run_recovers(overloaded, sample_jobs_registered):
    for _ in range(2):
        run_job("test-ok", Trigger.CRON)
    job = Job.objects.get(name="test-ok")
    assert job.consecutive_overloads == 2 and job.health(job.created_at) != Health.OVERLOADED
    assert mail.outbox == []

    for _ in range(3):
        run_job("test-ok", Trigger.CRON)
    job.refresh_from_db()
    assert job.health(job.created_at) == Health.OVERLOADED
    assert [m.subject for m in mail.outbox] == ["[cron] test-ok is not running: machine overloaded"]
    assert "CRON_MIN_FREE_MB" in mail.outbox[0].body
    entry = next(e for e in job_overview() if e["name"] == "test-ok")
    assert entry["health"] == Health.OVERLOADED and not is_healthy([entry])

    overloaded.CRON_MIN_FREE_MB = 0
    run_job("test-ok", Trigger.CRON)
    job.refresh_from_db()
    assert job.consecutive_overloads == 0 and job.alert_state == Health.OK
    assert mail.outbox[-1].subject == "[cron] test-ok recovered"


def test_overload_alerts_can_be_turned_off(overloaded, sample_jobs_registered):
    overloaded.CRON_OVERLOAD_ALERT_AFTER = 0
    for _ in range(5):
        run_job("test-ok", Trigger.CRON)
    assert mail.outbox == []
