"""Job schedules, runs and stats over HTTP."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.services import sync_jobs
from scheduling.stats import percentile
from scheduling.tick import plan

pytestmark = pytest.mark.django_db
SECRET = {"HTTP_AUTHORIZATION": "Bearer test-secret-one"}
NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.CRON_SECRET = ["test-secret-one"]


def staff_api(name: str, *perms: str) -> APIClient:
    user = get_user_model().objects.create_user(name, password="pw-for-tests", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_list_and_detail_carry_the_effective_schedule_and_the_next_five_runs(client):
    with time_machine.travel(NOW, tick=False):
        listed = client.get("/api/cron/jobs/", **SECRET)
        detail = client.get("/api/cron/jobs/watchdog/", **SECRET)
    assert listed.status_code == 200 and "watchdog" in {job["name"] for job in listed.json()["results"]}
    body = detail.json()
    assert body["effective"]["schedule"] == "*/5 * * * *" and body["schedule"] == ""
    assert body["next_runs"] == [f"2026-12-02T12:{m:02d}:00Z" for m in (5, 10, 15, 20, 25)]


def test_patch_changes_the_schedule_and_the_next_tick_follows_it(client):
    with time_machine.travel(NOW, tick=False):
        response = client.patch(
            "/api/cron/jobs/prune/",
            {"schedule": "7 12 * * *", "timezone": "UTC"},
            content_type="application/json",
            **SECRET,
        )
    assert response.status_code == 200, response.content
    assert response.json()["next_runs"][0] == "2026-12-02T12:07:00Z"
    assert "prune" in {s.job.name for s in plan(NOW.replace(minute=7))[0]}


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"schedule": "* * * * * *"}, "schedule", "6 fields given, 5 expected"),
        ({"schedule": "61 * * * *"}, "schedule", "Bad minute"),
        ({"timezone": "Europe/Berln"}, "timezone", "unknown timezone 'Europe/Berln'"),
        ({"grace_seconds": -1}, "grace_seconds", "greater than or equal to 0"),
        ({"enabeld": False}, "enabeld", "did you mean 'enabled'"),
        ({"name": "other"}, "name", "cannot be changed"),
    ],
)
def test_an_invalid_patch_is_a_400_naming_the_field_and_the_reason(client, payload, field, reason):
    response = client.patch("/api/cron/jobs/prune/", payload, content_type="application/json", **SECRET)
    assert response.status_code == 400
    assert reason in " ".join(response.json()["fields"][field])
    assert Job.objects.get(name="prune").schedule == ""


def test_disabling_over_the_api_records_the_next_slot_as_skipped_disabled(client):
    response = client.patch("/api/cron/jobs/watchdog/", {"enabled": False}, content_type="application/json", **SECRET)
    assert response.status_code == 200 and response.json()["next_runs"] == []
    _, disabled = plan(datetime(2026, 12, 2, 12, 5, 10, tzinfo=UTC))
    assert [job.name for job, _ in disabled] == ["watchdog"]


def test_who_may_read_and_change_schedules(client):
    assert client.get("/api/cron/jobs/").status_code in (401, 403)
    assert client.get("/api/cron/jobs/", HTTP_AUTHORIZATION="Bearer wrong").status_code in (401, 403)
    viewer = staff_api("viewer", "scheduling.view_job")
    assert viewer.get("/api/cron/jobs/prune/").status_code == 200
    assert viewer.patch("/api/cron/jobs/prune/", {"enabled": False}, format="json").status_code == 403
    editor = staff_api("editor", "scheduling.view_job", "scheduling.change_job")
    assert editor.patch("/api/cron/jobs/prune/", {"enabled": False}, format="json").status_code == 200


def test_unknown_job_is_a_json_404(client):
    response = client.get("/api/cron/jobs/nope/", **SECRET)
    assert response.status_code == 404 and "unknown job 'nope'" in response.json()["error"]


def _runs(job: Job, statuses_and_ms: list[tuple[str, int]], start: datetime) -> None:
    for i, (status, ms) in enumerate(statuses_and_ms):
        JobRun.objects.create(
            job=job,
            trigger=Trigger.CRON,
            status=status,
            started_at=start + timedelta(minutes=5 * i),
            planned_at=start + timedelta(minutes=5 * i),
            finished_at=start + timedelta(minutes=5 * i, milliseconds=ms),
            duration_ms=ms,
            processed=2,
            error="boom\nsecond line" if status == "failed" else "",
        )


def test_stats_against_a_known_set_of_runs(client):
    (job,) = [j for j in sync_jobs() if j.name == "watchdog"]
    Job.objects.filter(pk=job.pk).update(created_at=NOW - timedelta(hours=1))
    start = NOW.replace(minute=0, second=0) - timedelta(hours=1)  # 11:00, slots every 5 minutes
    durations = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    statuses = ["succeeded"] * 7 + ["partial", "failed", "succeeded"]
    _runs(job, list(zip(statuses, durations, strict=True)), start)
    JobRun.objects.create(
        job=job, trigger=Trigger.MANUAL, status=RunStatus.SKIPPED, skip_reason="already_running", started_at=start
    )
    with time_machine.travel(NOW, tick=False):
        body = client.get("/api/cron/jobs/watchdog/stats/?days=1", **SECRET).json()
    # By hand: p50 of 100..1000 is between 500 and 600 = 550; p95 rank 8.55 -> 900 + 0.55 * 100.
    assert body["duration_ms"] == {"p50": 550.0, "p95": 955.0, "max": 1000}
    assert percentile(durations, 0.5) == 550.0 and round(percentile(durations, 0.95), 1) == 955.0
    assert body["runs"] == 11 and body["by_status"]["succeeded"] == 8 and body["by_status"]["skipped"] == 1
    assert body["success_rate"] == 0.8 and body["partial_rate"] == 0.1
    assert body["items_processed"] == 20
    assert body["last_failure"]["error"] == "boom"
    # Slots 11:00 .. 11:45 ran; 11:50 is past its 10 minutes of grace by 12:00:30: missed.
    assert body["missed_slots"] == 1 and body["missed_recent"] == ["2026-12-02T11:50:00Z"]


def test_runs_are_filtered_and_paginated_newest_first(client):
    (job,) = [j for j in sync_jobs() if j.name == "watchdog"]
    start = NOW - timedelta(hours=1)
    _runs(job, [("succeeded", 10), ("failed", 20), ("succeeded", 30)], start)
    body = client.get("/api/cron/runs/?job=watchdog&status=succeeded&limit=1", **SECRET).json()
    assert body["count"] == 2 and len(body["results"]) == 1 and body["next"]
    assert body["results"][0]["duration_ms"] == 30
    since = (start + timedelta(minutes=4)).isoformat()
    body = client.get("/api/cron/runs/", {"since": since}, **SECRET).json()
    assert [r["duration_ms"] for r in body["results"]] == [30, 20]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("job=nope", "job"), ("since=yesterday", "since"), ("limit=1000", "limit")],
)
def test_bad_run_filters_are_400s_naming_the_parameter(client, query, field):
    response = client.get(f"/api/cron/runs/?{query}", **SECRET)
    assert response.status_code == 400 and field in response.json()["fields"]


def test_jitter_must_be_shorter_than_the_gap_between_runs(client):
    response = client.patch(
        "/api/cron/jobs/process-scheduled/", {"jitter_seconds": 90}, content_type="application/json", **SECRET
    )
    assert response.status_code == 400 and "60 s between two runs" in response.json()["fields"]["jitter_seconds"][0]
    ok = client.patch("/api/cron/jobs/prune/", {"jitter_seconds": 90}, content_type="application/json", **SECRET)
    assert ok.status_code == 200 and ok.json()["jitter_seconds"] == 90


def test_repeated_wrong_secrets_on_the_jobs_api_are_throttled_but_the_right_one_passes(client, settings):
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 2
    codes = [client.get("/api/cron/jobs/", HTTP_AUTHORIZATION="Bearer wrong").status_code for _ in range(3)]
    assert codes[:2] in ([401, 401], [403, 403]) and codes[2] == 429
    assert client.get("/api/cron/jobs/", **SECRET).status_code == 200
