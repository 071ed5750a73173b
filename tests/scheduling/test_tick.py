"""The tick (`cron tick`, `cron loop`): schedules from the database, each slot run once."""

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import ScheduledMessage
from scheduling import registry
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import ensure_job, sync_jobs
from scheduling.tick import plan, tick
from tests.conftest import start_manage

UTC_DAY = datetime(2026, 12, 2, tzinfo=UTC)


def planned(now: datetime) -> dict[str, datetime]:
    return {start.job.name: start.slot for start in plan(now)[0]}


@pytest.mark.django_db
def test_the_tick_plans_each_jobs_latest_slot_and_not_one_already_run():
    sync_jobs()
    at = UTC_DAY.replace(hour=3, minute=17, second=42)
    assert planned(at)["prune"] == UTC_DAY.replace(hour=3, minute=17)
    assert planned(at)["process-scheduled"] == UTC_DAY.replace(hour=3, minute=17)
    assert "watchdog" in planned(at)  # 03:15 slot, within its 10 minutes of grace
    run_job("prune", Trigger.CRON, planned_at=UTC_DAY.replace(hour=3, minute=17))
    assert "prune" not in planned(at + timedelta(minutes=1))


@pytest.mark.django_db
def test_a_tick_three_minutes_late_runs_the_missed_slot_once_and_no_burst():
    sync_jobs()
    late = UTC_DAY.replace(hour=10, minute=3, second=5)
    slots = planned(late)
    assert slots["watchdog"] == UTC_DAY.replace(hour=10)  # the missed 10:00 slot
    assert slots["process-scheduled"] == UTC_DAY.replace(hour=10, minute=3)  # not 10:00, :01, :02 too
    run_job("watchdog", Trigger.CRON, planned_at=slots["watchdog"])
    assert "watchdog" not in planned(late + timedelta(minutes=1))
    # Beyond the grace a missed slot is not run late: the watchdog reports it overdue instead.
    assert "prune" not in planned(UTC_DAY.replace(hour=5, minute=30))


@pytest.mark.django_db
def test_a_schedule_edited_in_the_database_takes_effect_at_the_next_tick():
    sync_jobs()
    Job.objects.filter(name="prune").update(schedule="*/7 * * * *", grace_seconds=0)
    assert "prune" in planned(UTC_DAY.replace(hour=10, minute=7, second=30))
    assert "prune" not in planned(UTC_DAY.replace(hour=3, minute=17, second=30))


@pytest.mark.django_db
def test_a_disabled_jobs_slot_is_recorded_as_skipped_disabled_once():
    sync_jobs()
    Job.objects.filter(name="watchdog").update(enabled=False)
    at = UTC_DAY.replace(hour=10, minute=5, second=1)
    starts, disabled = plan(at)
    assert "watchdog" not in {s.job.name for s in starts}
    assert [job.name for job, _ in disabled] == ["watchdog"]
    Job.objects.exclude(name="watchdog").update(enabled=False)
    tick(at)
    tick(at)
    runs = JobRun.objects.filter(job__name="watchdog")
    assert [(r.status, r.skip_reason.split(":")[0], r.planned_at) for r in runs] == [
        ("skipped", "disabled", UTC_DAY.replace(hour=10, minute=5))
    ]


@pytest.mark.django_db
def test_a_slot_already_taken_is_skipped_as_slot_done_unless_forced():
    slot = UTC_DAY.replace(hour=10, minute=5)
    first = run_job("watchdog", Trigger.CRON, planned_at=slot)
    again = run_job("watchdog", Trigger.HTTP, planned_at=slot)
    assert first.status == RunStatus.SUCCEEDED
    assert again.status == RunStatus.SKIPPED and again.reason == "slot_done"
    assert f"run {first.run_id} (cron, succeeded) took the 2026-12-02 10:05 UTC slot" in again.message
    assert (again.success, again.http_status, again.exit_code) == (True, 200, 0)
    forced = run_job("watchdog", Trigger.MANUAL)
    assert forced.status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_a_retry_of_a_failed_or_running_slot_hears_that_not_success(sample_jobs_registered, client, settings):
    settings.CRON_SECRET = ["test-secret-one"]
    slot = UTC_DAY.replace(hour=10, minute=5)
    failed = run_job("test-fail", Trigger.HTTP, planned_at=slot)
    retry = run_job("test-fail", Trigger.HTTP, planned_at=slot)
    assert failed.http_status == 500
    assert (retry.reason, retry.success, retry.http_status, retry.exit_code) == ("slot_done", False, 500, 1)
    job = ensure_job(registry.get("test-ok"))
    JobRun.objects.create(job=job, trigger=Trigger.CRON, planned_at=slot)  # running on another host
    running = run_job("test-ok", Trigger.HTTP, planned_at=slot)
    assert (running.reason, running.success, running.http_status) == ("slot_done", False, 409)


@pytest.mark.django_db
def test_an_abandoned_run_frees_its_slot_for_the_tick_within_grace():
    sync_jobs()
    slot = UTC_DAY.replace(hour=3, minute=17)
    prune = Job.objects.get(name="prune")
    JobRun.objects.create(job=prune, trigger=Trigger.CRON, planned_at=slot, status=RunStatus.ABANDONED)
    assert planned(slot + timedelta(minutes=5))["prune"] == slot
    result = run_job("prune", Trigger.CRON, planned_at=slot)
    assert result.status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_a_job_that_cannot_be_started_does_not_stop_the_others(sample_jobs_registered, tmp_path, settings):
    sync_jobs()
    Job.objects.exclude(name__in=["test-sleep", "watchdog"]).update(enabled=False)
    settings.BASE_DIR = tmp_path
    (tmp_path / "var" / "log").mkdir(parents=True)
    (tmp_path / "var" / "log" / "test-sleep.log").mkdir()  # cannot be opened for appending
    now = UTC_DAY.replace(hour=10, minute=5, second=2)
    started = tick(now, env={"PATH": "/nonexistent"})
    assert list(started) == ["watchdog"]
    started["watchdog"].wait(30)


@pytest.mark.django_db
def test_a_job_allowing_concurrent_runs_runs_alongside_a_taken_slot_without_taking_it():
    slot = UTC_DAY.replace(hour=10, minute=5)
    job = ensure_job(registry.get("process-scheduled"))
    first = JobRun.objects.create(job=job, trigger=Trigger.CRON, planned_at=slot)  # running elsewhere
    result = run_job("process-scheduled", Trigger.HTTP, planned_at=slot)
    assert result.status == RunStatus.SUCCEEDED
    assert JobRun.objects.get(pk=result.run_id).planned_at is None
    assert list(JobRun.objects.filter(planned_at=slot).values_list("pk", flat=True)) == [first.pk]
    assert "process-scheduled" not in planned(slot + timedelta(seconds=30))  # the tick starts no second one


def _spring_and_fall(zone: str) -> list[datetime]:
    return {
        "America/New_York": [datetime(2027, 3, 14, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)],
        "Europe/Berlin": [datetime(2027, 3, 28, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC)],
    }[zone]


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Berlin"])
def test_a_0230_daily_job_runs_once_on_both_dst_days_through_the_tick(zone):
    spec = registry.JobSpec("test-dst", lambda ctx: None, "30 2 * * *", timezone=zone, grace=timedelta(hours=1))
    registry.add(spec)
    try:
        job = ensure_job(spec)
        for day in _spring_and_fall(zone):
            taken = []
            now = day - timedelta(hours=6)
            while now < day + timedelta(hours=30):  # the whole local day, whatever the offset
                for start in plan(now, [job])[0]:
                    JobRun.objects.create(job=job, trigger=Trigger.CRON, planned_at=start.slot, status="succeeded")
                    taken.append(start.slot)
                now += timedelta(minutes=1)
            local_days = {slot.astimezone(spec_zone(zone)).date() for slot in taken}
            assert len(taken) == len(local_days), (zone, day, taken)
            assert len(taken) in (1, 2)  # the day itself, and the next one in the 36 hours
    finally:
        registry.remove("test-dst")


def spec_zone(zone: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(zone)


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_run_a_slot_once(sample_jobs_registered):
    sync_jobs()
    Job.objects.exclude(name="test-sleep").update(enabled=False)
    ticks = [start_manage("cron", "tick", SAMPLE_SLEEP="1") for _ in range(2)]
    for process in ticks:
        process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not JobRun.objects.filter(job__name="test-sleep", status="succeeded"):
        time.sleep(0.2)
    time.sleep(2)  # room for a second run, if one were started
    runs = JobRun.objects.filter(job__name="test-sleep").exclude(status=RunStatus.SKIPPED)
    assert [r.status for r in runs] == ["succeeded"]
    assert runs[0].planned_at is not None and runs[0].trigger == "cron"


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


@pytest.mark.django_db
def test_run_due_takes_the_current_slot_so_the_next_tick_does_not_run_the_job_again():
    from scheduling.runner import run_due_jobs

    at = UTC_DAY.replace(hour=10, minute=2)
    with time_machine.travel(at, tick=False):
        results = run_due_jobs(at)
    assert {r.job for r in results} >= {"watchdog", "prune"}
    assert JobRun.objects.get(job__name="watchdog").planned_at == UTC_DAY.replace(hour=10)  # within its grace
    assert JobRun.objects.get(job__name="prune").planned_at is None  # 03:17 is long past its grace
    assert "watchdog" not in planned(at + timedelta(seconds=30))
