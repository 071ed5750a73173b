"""Partial runs are not "ok", and Job rows only ever move to a newer run's outcome."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling.models import Health, Job, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import job_overview
from tests.jobs import run_job_at

pytestmark = pytest.mark.django_db

SECRET = "test-secret-one"


def _partial_runs(count: int) -> None:
    for _ in range(count):
        assert run_job("test-partial", Trigger.CRON).status == RunStatus.PARTIAL


def _status_code() -> int:
    return APIClient().get("/api/cron/", headers={"Authorization": f"Bearer {SECRET}"}).status_code


def _health(name: str) -> str:
    return Job.objects.get(name=name).health(timezone.now())


def test_partial_run_makes_the_job_degraded(sample_jobs_registered):
    _partial_runs(1)
    assert _health("test-partial") == Health.DEGRADED


def test_degraded_job_keeps_the_status_api_at_200(sample_jobs_registered):
    _partial_runs(2)
    assert _status_code() == 200


def test_three_partial_runs_in_a_row_make_the_job_failing(sample_jobs_registered):
    _partial_runs(3)
    assert _health("test-partial") == Health.FAILING


def test_partial_runs_alert_once_when_they_make_the_job_failing(sample_jobs_registered, settings):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    _partial_runs(2)
    assert mail.outbox == []
    _partial_runs(2)
    assert [m.subject for m in mail.outbox] == ["[cron] test-partial is failing"]
    assert "partial 3 time(s) in a row" in mail.outbox[0].body


def test_cron_status_exits_1_after_three_partial_runs(sample_jobs_registered):
    _partial_runs(3)
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("cron", "status", stdout=out)
    assert exit_info.value.code == 1 and "failing" in out.getvalue()


def test_status_api_is_503_after_three_partial_runs(sample_jobs_registered):
    _partial_runs(3)
    assert _status_code() == 503


def test_partial_runs_before_failing_follow_the_setting(sample_jobs_registered, settings):
    settings.CRON_PARTIAL_FAILING_AFTER = 5
    _partial_runs(4)
    assert _health("test-partial") == Health.DEGRADED
    _partial_runs(1)
    assert _health("test-partial") == Health.FAILING


def test_clean_run_after_partial_failing_recovers(sample_jobs_registered, settings, monkeypatch):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    _partial_runs(3)
    monkeypatch.setattr(sample_jobs_registered, "PARTIAL", False)
    assert run_job("test-partial", Trigger.CRON).status == RunStatus.SUCCEEDED
    job = Job.objects.get(name="test-partial")
    assert (job.health(timezone.now()), job.consecutive_partials, job.alert_state) == (Health.OK, 0, Health.OK)
    assert [m.subject for m in mail.outbox][-1] == "[cron] test-partial recovered"
    assert _status_code() == 200


def test_seven_day_rate_counts_partial_runs_apart_from_success(sample_jobs_registered, monkeypatch):
    _partial_runs(1)
    monkeypatch.setattr(sample_jobs_registered, "PARTIAL", False)
    run_job("test-partial", Trigger.CRON)
    entry = next(e for e in job_overview() if e["name"] == "test-partial")
    assert (entry["success_rate_7d"], entry["partial_rate_7d"], entry["partial_runs_7d"]) == (0.5, 0.5, 1)


NEWER = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
OLDER = NEWER - timedelta(minutes=5)


def test_older_run_finishing_last_does_not_move_last_success_at_back(sample_jobs_registered):
    run_job_at("test-ok", NEWER)
    run_job_at("test-ok", OLDER)  # started before the newer one, recorded after it
    assert Job.objects.get(name="test-ok").last_success_at == NEWER


def test_older_failure_finishing_last_does_not_overwrite_the_newer_status(
    sample_jobs_registered, settings, monkeypatch
):
    settings.CRON_ALERT_EMAILS = ["ops@example.com"]
    run_job_at("test-fail", OLDER - timedelta(minutes=5))
    monkeypatch.setattr(sample_jobs_registered, "BROKEN", False)
    run_job_at("test-fail", NEWER)
    monkeypatch.setattr(sample_jobs_registered, "BROKEN", True)
    run_job_at("test-fail", OLDER)  # fails, but a newer run already succeeded
    job = Job.objects.get(name="test-fail")
    assert (job.last_status, job.last_run_at, job.consecutive_failures) == (RunStatus.SUCCEEDED, NEWER, 0)
    assert [m.subject for m in mail.outbox] == ["[cron] test-fail is failing", "[cron] test-fail recovered"]


def test_older_success_finishing_after_a_newer_failure_moves_only_last_success_at(sample_jobs_registered, monkeypatch):
    monkeypatch.setattr(sample_jobs_registered, "BROKEN", False)
    run_job_at("test-fail", OLDER - timedelta(minutes=5))
    monkeypatch.setattr(sample_jobs_registered, "BROKEN", True)
    run_job_at("test-fail", NEWER)
    monkeypatch.setattr(sample_jobs_registered, "BROKEN", False)
    run_job_at("test-fail", OLDER)  # succeeded after the newer run had failed
    job = Job.objects.get(name="test-fail")
    assert (job.last_status, job.last_run_at, job.last_success_at) == (RunStatus.FAILED, NEWER, OLDER)


def test_dashboard_shows_partial_runs_apart_from_the_success_rate(sample_jobs_registered, admin_client):
    _partial_runs(1)
    html = admin_client.get("/cron/").content.decode()
    assert "1 partial (100%)" in html and 'class="badge degraded health"' in html
