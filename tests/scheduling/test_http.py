import pytest
from rest_framework.test import APIClient

from scheduling import locks
from scheduling.models import JobRun

pytestmark = pytest.mark.django_db

SECRET, ROTATED = "test-secret-one", "test-secret-two"


@pytest.fixture
def client():
    return APIClient()


def _post(client, job="test-ok", **headers):
    return client.post(f"/api/cron/{job}/", headers=headers)


def test_missing_header_is_401_without_detail(client, sample_jobs_registered):
    response = _post(client)
    assert response.status_code == 401
    assert response.content == b""
    assert not JobRun.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {SECRET[:-1]}"},  # a prefix of the right secret
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Basic {SECRET}"},
        {"X-Cron-Secret": "wrong"},
        {"Authorization": "Bearer "},
    ],
)
def test_wrong_secret_is_401_without_detail(client, sample_jobs_registered, headers):
    response = _post(client, **headers)
    assert response.status_code == 401 and response.content == b""
    assert not JobRun.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}"},
        {"Authorization": f"bearer {SECRET}"},
        {"X-Cron-Secret": SECRET},
        {"Authorization": f"Bearer {ROTATED}"},  # the second secret of a rotation pair
    ],
)
def test_right_secret_in_each_form_runs_the_job(client, sample_jobs_registered, headers):
    response = _post(client, **headers)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["status"] == "succeeded" and body["job"] == "test-ok"
    assert body["data"] == {"processed": 2, "succeeded": 2, "failed": 0}
    assert body["run_id"] == JobRun.objects.get().pk
    assert set(body) == {"success", "job", "run_id", "status", "message", "data", "duration_ms"}


def test_repeated_failures_from_one_address_are_throttled(client, sample_jobs_registered, settings):
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 3
    codes = [_post(client, Authorization="Bearer nope").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_right_secret_passes_even_when_its_address_is_throttled(client, sample_jobs_registered, settings):
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 2
    for _ in range(3):
        _post(client, Authorization="Bearer nope")
    assert _post(client, Authorization=f"Bearer {SECRET}").status_code == 200


def test_failed_auth_log_never_contains_the_offered_secret(client, sample_jobs_registered, caplog):
    _post(client, Authorization="Bearer guessed-secret-value")
    assert "cron_auth_failed" in caplog.text
    assert "guessed-secret-value" not in caplog.text and all(
        "guessed-secret-value" not in str(vars(r)) for r in caplog.records
    )


def test_unknown_job_is_404(client):
    response = _post(client, job="no-such-job", Authorization=f"Bearer {SECRET}")
    assert response.status_code == 404 and response.json()["success"] is False


def test_unknown_job_without_auth_is_401_not_404(client):
    assert _post(client, job="no-such-job").status_code == 401


def test_get_on_a_trigger_is_405(client, sample_jobs_registered):
    assert client.get("/api/cron/test-ok/", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 405


def test_job_held_by_another_connection_is_409(client, sample_jobs_registered):
    lock = locks.acquire("test-ok")  # a real second PostgreSQL session holds the advisory lock
    try:
        response = _post(client, Authorization=f"Bearer {SECRET}")
    finally:
        lock.release()
    assert response.status_code == 409
    assert response.json()["status"] == "skipped" and response.json()["success"] is True


def test_overloaded_machine_is_503_with_retry_after(client, sample_jobs_registered, settings):
    settings.CRON_MAX_LOAD = -1.0
    response = _post(client, Authorization=f"Bearer {SECRET}")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert "CRON_MAX_LOAD" in response.json()["message"]


def test_failed_run_is_500_with_success_false(client, sample_jobs_registered):
    response = _post(client, job="test-fail", Authorization=f"Bearer {SECRET}")
    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False and body["status"] == "failed"
    assert body["message"] == "RuntimeError: the provider account is suspended"


def test_idempotency_key_replays_the_first_result(client, sample_jobs_registered):
    first = _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "tick-2026-11-28T10:00"})
    second = _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "tick-2026-11-28T10:00"})
    assert second.status_code == first.status_code == 200
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert JobRun.objects.count() == 1
    assert (
        _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "other"}).json()["run_id"]
        != first.json()["run_id"]
    )


def test_idempotency_key_older_than_the_window_runs_again(client, sample_jobs_registered):
    from datetime import timedelta

    from django.utils import timezone

    first = _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "k1"})
    JobRun.objects.update(started_at=timezone.now() - timedelta(hours=25))
    second = _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "k1"})
    assert second.status_code == 200
    assert second.json()["run_id"] != first.json()["run_id"]
    assert JobRun.objects.count() == 2


def test_status_lists_every_job_and_is_200_when_healthy(client, sample_jobs_registered):
    _post(client, Authorization=f"Bearer {SECRET}")
    response = client.get("/api/cron/", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200
    jobs = {job["name"]: job for job in response.json()["jobs"]}
    assert {"watchdog", "prune", "test-ok"} <= set(jobs)
    ok = jobs["test-ok"]
    assert ok["last_status"] == "succeeded" and ok["success_rate_7d"] == 1.0
    assert ok["next_run_at"] and ok["timezone"] == "UTC" and ok["overdue"] is False


def test_status_is_503_when_a_job_last_failed(client, sample_jobs_registered):
    _post(client, job="test-fail", Authorization=f"Bearer {SECRET}")
    response = client.get("/api/cron/", headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 503
    assert response.json()["healthy"] is False


def test_status_requires_the_secret(client):
    assert client.get("/api/cron/").status_code == 401


def test_healthz_needs_no_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True, "database": "ok"}


def test_throttle_counts_per_caller_behind_the_trusted_proxy(client, sample_jobs_registered, settings):
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 2
    for _ in range(2):
        client.post("/api/cron/test-ok/", headers={"Authorization": "Bearer nope", "X-Real-IP": "198.51.100.7"})
    blocked = client.post("/api/cron/test-ok/", headers={"Authorization": "Bearer nope", "X-Real-IP": "198.51.100.7"})
    other = client.post("/api/cron/test-ok/", headers={"Authorization": "Bearer nope", "X-Real-IP": "203.0.113.9"})
    assert (blocked.status_code, other.status_code) == (429, 401)


def test_x_real_ip_from_an_untrusted_peer_is_ignored(client, sample_jobs_registered, settings):
    settings.CRON_AUTH_FAILURES_PER_MINUTE = 2
    settings.CRON_TRUSTED_PROXIES = []
    for n in range(2):  # a prober rotating the header still hits its own REMOTE_ADDR's limit
        client.post("/api/cron/test-ok/", headers={"Authorization": "Bearer nope", "X-Real-IP": f"10.0.0.{n}"})
    assert client.post("/api/cron/test-ok/", headers={"Authorization": "Bearer nope"}).status_code == 429


def test_repeat_of_a_request_whose_run_is_still_going_is_409(client, sample_jobs_registered):
    from scheduling.models import Job

    job = Job.objects.create(name="test-ok")
    running = JobRun.objects.create(job=job, trigger="http", idempotency_key="slow-1")
    response = _post(client, Authorization=f"Bearer {SECRET}", **{"Idempotency-Key": "slow-1"})
    assert response.status_code == 409
    assert response.json()["run_id"] == running.pk and "still running" in response.json()["message"]
