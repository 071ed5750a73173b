"""GET /metrics: names, labels and values derived from the database at scrape time."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from messaging.models import DeliveryAttempt, ScheduledMessage
from scheduling.models import Job, JobRun, RunStatus
from scheduling.runner import run_job
from scheduling.services import prune_runs, sync_jobs
from tests.metrics.scrape import scrape, value

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)
P = "messaging_cron_"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.CRON_SECRET = ["test-secret-one"]


def make_run(job: Job, status: str, duration_ms: int | None, started_at: datetime = NOW) -> JobRun:
    return JobRun.objects.create(job=job, trigger="cron", status=status, duration_ms=duration_ms, started_at=started_at)


def test_runs_by_job_and_status_and_their_duration_histogram(client):
    alpha, beta = Job.objects.create(name="alpha"), Job.objects.create(name="beta")
    for ms in (50, 400, 3_000):
        make_run(alpha, RunStatus.SUCCEEDED, ms)
    make_run(alpha, RunStatus.FAILED, 45_000)
    make_run(alpha, RunStatus.SKIPPED, 0)
    make_run(alpha, RunStatus.RUNNING, None)
    make_run(beta, RunStatus.PARTIAL, 700)

    samples = scrape(client)

    runs = f"{P}job_runs_total"
    assert value(samples, runs, cron_job="alpha", status="succeeded") == 3
    assert value(samples, runs, cron_job="alpha", status="failed") == 1
    assert value(samples, runs, cron_job="alpha", status="skipped") == 1
    assert value(samples, runs, cron_job="alpha", status="abandoned") == 0
    assert value(samples, runs, cron_job="beta", status="partial") == 1
    assert (runs, (("cron_job", "alpha"), ("status", "running"))) not in samples
    assert value(samples, f"{P}job_runs_in_progress", cron_job="alpha") == 1
    assert value(samples, f"{P}job_runs_in_progress", cron_job="beta") == 0

    bucket = f"{P}job_run_duration_seconds_bucket"
    # Succeeded and failed runs are timed; the skipped and the running one are not.
    assert value(samples, bucket, cron_job="alpha", le="0.1") == 1
    assert value(samples, bucket, cron_job="alpha", le="0.5") == 2
    assert value(samples, bucket, cron_job="alpha", le="2.5") == 2
    assert value(samples, bucket, cron_job="alpha", le="5.0") == 3
    assert value(samples, bucket, cron_job="alpha", le="30.0") == 3
    assert value(samples, bucket, cron_job="alpha", le="60.0") == 4
    assert value(samples, bucket, cron_job="alpha", le="+Inf") == 4
    assert value(samples, f"{P}job_run_duration_seconds_count", cron_job="alpha") == 4
    assert value(samples, f"{P}job_run_duration_seconds_sum", cron_job="alpha") == pytest.approx(48.45)
    assert value(samples, bucket, cron_job="beta", le="1.0") == 1


def test_prune_folds_deleted_runs_so_counters_and_histogram_never_go_down(client, settings):
    settings.CRON_RUN_RETENTION_DAYS = 30
    job = Job.objects.create(name="alpha")
    old = NOW - timedelta(days=40)
    make_run(job, RunStatus.SUCCEEDED, 200, started_at=old)
    make_run(job, RunStatus.FAILED, 8_000, started_at=old)
    make_run(job, RunStatus.SUCCEEDED, 900)
    before = scrape(client)

    assert prune_runs(NOW, batch_size=1) == 2
    make_run(job, RunStatus.SUCCEEDED, 300)
    assert prune_runs(NOW) == 0
    after = scrape(client)

    assert JobRun.objects.count() == 2
    assert value(after, f"{P}job_runs_total", cron_job="alpha", status="succeeded") == 3
    assert value(after, f"{P}job_runs_total", cron_job="alpha", status="failed") == 1
    for name, labels in before:
        if name.startswith(f"{P}job_run") and "in_progress" not in name:
            assert after[(name, labels)] >= before[(name, labels)], name
    assert value(after, f"{P}job_run_duration_seconds_bucket", cron_job="alpha", le="0.5") == 2
    assert value(after, f"{P}job_run_duration_seconds_bucket", cron_job="alpha", le="10.0") == 4
    assert value(after, f"{P}job_run_duration_seconds_sum", cron_job="alpha") == pytest.approx(9.4)


def test_a_run_through_the_runner_shows_up_with_its_last_success(client):
    with time_machine.travel(NOW, tick=False):
        result = run_job("watchdog", "manual")
        samples = scrape(client)
    assert result.status == "succeeded"
    assert value(samples, f"{P}job_runs_total", cron_job="watchdog", status="succeeded") == 1
    assert value(samples, f"{P}job_last_success_timestamp_seconds", cron_job="watchdog") == NOW.timestamp()
    assert value(samples, f"{P}job_last_run_timestamp_seconds", cron_job="watchdog") == NOW.timestamp()
    assert value(samples, f"{P}job_run_duration_seconds_count", cron_job="watchdog") == 1


def test_health_is_one_state_per_job_and_overdue_is_flagged(client):
    with time_machine.travel(NOW - timedelta(hours=2), tick=False):
        sync_jobs()
    Job.objects.filter(name="prune").update(enabled=False)
    Job.objects.filter(name="daily").update(last_status=RunStatus.FAILED)
    with time_machine.travel(NOW, tick=False):
        samples = scrape(client)

    health = f"{P}job_health"
    # Every-5-minutes watchdog, created two hours ago, never ran: overdue.
    assert value(samples, health, cron_job="watchdog", state="overdue") == 1
    assert value(samples, health, cron_job="watchdog", state="ok") == 0
    assert value(samples, f"{P}job_overdue", cron_job="watchdog") == 1
    assert value(samples, health, cron_job="prune", state="disabled") == 1
    assert value(samples, f"{P}job_enabled", cron_job="prune") == 0
    assert value(samples, f"{P}job_overdue", cron_job="prune") == 0
    assert value(samples, health, cron_job="daily", state="failing") == 1
    for job in Job.objects.values_list("name", flat=True):
        states = [v for (name, labels), v in samples.items() if name == health and ("cron_job", job) in labels]
        assert sorted(states) == [0, 0, 0, 0, 0, 1], job
    # A job that never succeeded has no last-success sample rather than a 1970 one.
    assert not [key for key in samples if key[0] == f"{P}job_last_success_timestamp_seconds"]


def message(channel: str, status: str = "pending", **fields) -> ScheduledMessage:
    fields.setdefault("send_at", NOW)
    fields.setdefault("next_attempt_at", fields["send_at"])
    return ScheduledMessage.objects.create(
        channel=channel, to="+14155550123" if channel == "sms" else "a@example.com", body="hi", status=status, **fields
    )


def test_messages_by_status_and_channel_and_the_oldest_due_age(client):
    message("sms", send_at=NOW - timedelta(minutes=10))  # due for 10 minutes: the oldest due
    message("sms", send_at=NOW - timedelta(hours=3), next_attempt_at=NOW + timedelta(minutes=5))  # backing off
    message("email", send_at=NOW - timedelta(minutes=2))
    message("email", send_at=NOW + timedelta(hours=1))  # scheduled for later
    message("sms", "sent", send_at=NOW - timedelta(days=2))
    message("email", "failed", send_at=NOW - timedelta(days=2))
    with time_machine.travel(NOW, tick=False):
        samples = scrape(client)

    messages = f"{P}messages"
    assert value(samples, messages, status="pending", channel="sms") == 2
    assert value(samples, messages, status="pending", channel="email") == 2
    assert value(samples, messages, status="sent", channel="sms") == 1
    assert value(samples, messages, status="failed", channel="email") == 1
    assert value(samples, messages, status="delivered", channel="sms") == 0
    assert value(samples, f"{P}messages_oldest_due_age_seconds") == 600


def test_oldest_due_age_is_zero_when_nothing_is_due(client):
    message("sms", send_at=NOW + timedelta(minutes=1))
    message("sms", "sent", send_at=NOW - timedelta(days=1))
    with time_machine.travel(NOW, tick=False):
        samples = scrape(client)
    assert value(samples, f"{P}messages_oldest_due_age_seconds") == 0


def test_provider_outcomes_by_kind(client):
    sms, mail = message("sms", "sent"), message("email", "pending")
    for outcome in ("transient", "transient", "sent"):
        DeliveryAttempt.objects.create(message=sms, outcome=outcome)
    for outcome in ("account", "permanent", "sent"):
        DeliveryAttempt.objects.create(message=mail, outcome=outcome)
    samples = scrape(client)

    attempts = f"{P}delivery_attempts_total"
    assert value(samples, attempts, outcome="sent") == 2
    assert value(samples, attempts, outcome="transient") == 2
    assert value(samples, attempts, outcome="account") == 1
    assert value(samples, attempts, outcome="permanent") == 1
    assert value(samples, attempts, outcome="reconciled") == 0


def test_the_view_owns_its_registry_no_process_metrics_and_every_family_documented(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one")
    families = list(text_string_to_metric_families(response.content.decode()))
    assert families and all(f.name.startswith(P) for f in families), [f.name for f in families]
    assert all(f.documentation for f in families)
    types = {f.name: f.type for f in families}
    assert types[f"{P}job_runs"] == "counter" and types[f"{P}delivery_attempts"] == "counter"
    assert types[f"{P}job_run_duration_seconds"] == "histogram"
    assert types[f"{P}messages"] == "gauge"


def _seed(prefix: str, jobs: int, runs_per_job: int, messages: int) -> None:
    for i in range(jobs):
        job = Job.objects.create(name=f"{prefix}-{i}")
        JobRun.objects.bulk_create(
            JobRun(job=job, trigger="cron", status=RunStatus.SUCCEEDED, duration_ms=100 * n)
            for n in range(runs_per_job)
        )
    for i in range(messages):
        sent = message("sms" if i % 2 else "email", "sent" if i % 3 else "pending")
        DeliveryAttempt.objects.create(message=sent, outcome="sent")


def test_a_scrape_takes_a_fixed_number_of_queries(client, django_assert_num_queries):
    _seed("small", jobs=1, runs_per_job=1, messages=1)
    with django_assert_num_queries(6):
        small = client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one")
    _seed("large", jobs=12, runs_per_job=20, messages=40)
    prune_runs(NOW + timedelta(days=400))  # fold them all, so RunTotal has rows too
    _seed("late", jobs=3, runs_per_job=5, messages=5)
    with django_assert_num_queries(6):
        large = client.get("/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one")
    assert small.status_code == large.status_code == 200
    assert b"large-11" in large.content and b"late-2" in large.content and b"large-0" not in small.content


def test_openmetrics_when_the_scraper_asks_for_it(client):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    response = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer test-secret-one", HTTP_ACCEPT="application/openmetrics-text"
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    names = {family.name for family in parse_openmetrics(response.content.decode())}
    assert f"{P}job_runs" in names and f"{P}messages_oldest_due_age_seconds" in names
