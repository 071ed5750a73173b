"""The scheduler loop (`cron loop`): each minute, each due job as its own process, as crontab would."""

import signal
import time
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import ScheduledMessage
from scheduling.models import Job, JobRun
from scheduling.services import sync_jobs
from scheduling.tick import Loop, due_jobs
from tests.conftest import start_manage, subprocess_env


@pytest.mark.django_db
def test_due_jobs_are_those_whose_schedule_falls_in_the_minute():
    sync_jobs()
    at_0317 = {job.name for job in due_jobs(datetime(2026, 12, 2, 3, 17, 42, tzinfo=UTC))}
    at_0318 = {job.name for job in due_jobs(datetime(2026, 12, 2, 3, 18, 5, tzinfo=UTC))}
    assert "prune" in at_0317 and "prune" not in at_0318
    assert "process-scheduled" in at_0317 and "process-scheduled" in at_0318
    Job.objects.filter(name="process-scheduled").update(enabled=False)
    assert "process-scheduled" not in {job.name for job in due_jobs(datetime(2026, 12, 2, 3, 18, tzinfo=UTC))}


@pytest.mark.django_db(transaction=True)
def test_a_job_still_running_is_not_started_again(sample_jobs_registered, tmp_path):
    sync_jobs()
    Job.objects.exclude(name="test-sleep").update(enabled=False)
    said: list[str] = []
    loop = Loop(say=said.append, log_dir=tmp_path, env=subprocess_env(SAMPLE_SLEEP="2"))
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    assert loop.tick(now) == ["test-sleep"]
    assert loop.tick(now) == []
    assert any("still running" in line for line in said)
    loop.children["test-sleep"].wait(60)
    loop.reap()
    assert loop.children == {}
    run = JobRun.objects.get(job__name="test-sleep")
    assert (run.status, run.trigger) == ("succeeded", "cron")
    assert "test-sleep: succeeded" in (tmp_path / "test-sleep.log").read_text()


@pytest.mark.django_db(transaction=True)
def test_the_loop_as_a_process_sends_a_message_queued_through_the_api():
    loop = start_manage("cron", "loop", SMS_PROVIDER="console", EMAIL_PROVIDER="console")
    try:
        user = get_user_model().objects.create_superuser("looper", "looper@example.com", "pw-for-tests")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        response = api.post("/api/messages/", {"channel": "sms", "to": "+14155550123", "body": "hello"}, format="json")
        assert response.status_code == 201, response.content
        deadline = time.monotonic() + 125
        status = ""
        while time.monotonic() < deadline:
            status = ScheduledMessage.objects.get(pk=response.json()["id"]).status
            if status == "sent":
                break
            time.sleep(1)
        assert status == "sent"
        assert JobRun.objects.filter(job__name="process-scheduled", trigger="cron", status="succeeded").exists()
    finally:
        loop.send_signal(signal.SIGTERM)
        out, err = loop.communicate(timeout=60)
    assert loop.returncode == 0, err
    assert "Scheduler loop" in out and "started" in out
