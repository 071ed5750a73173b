"""The /cron/ dashboard and job history, through the Django test client."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling import registry
from scheduling.dashboard import countdown_text, format_duration
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.runner import run_job
from scheduling.services import sync_jobs

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 10, 2, 0, tzinfo=UTC)  # test-ok runs */5: next at 10:05


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("operator", password="pw", is_staff=True))
    return client


def add_runs(name: str, count: int, *, start: datetime = T0, **fields: object) -> list[JobRun]:
    job = Job.objects.get(name=name)
    fields.setdefault("status", RunStatus.SUCCEEDED)
    return JobRun.objects.bulk_create(
        JobRun(
            job=job, trigger=Trigger.CRON, started_at=start + timedelta(minutes=5 * i), duration_ms=100 + i, **fields
        )
        for i in range(count)
    )


def row(response, name: str) -> dict:
    return next(r for r in response.context["rows"] if r["name"] == name)


# --- access -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/cron/", "/cron/watchdog/"])
def test_non_staff_are_sent_to_admin_login(client, path):
    client.force_login(get_user_model().objects.create_user("customer", password="pw"))
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


def test_run_now_needs_staff_and_runs_nothing_for_anyone_else(client):
    response = client.post("/cron/watchdog/run/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not JobRun.objects.exists()


# --- dashboard --------------------------------------------------------------------------
def test_dashboard_lists_every_registered_job(staff, sample_jobs_registered):
    response = staff.get("/cron/")
    assert [r["name"] for r in response.context["rows"]] == [spec.name for spec in registry.all_jobs()]
    content = response.content.decode()
    for spec in registry.all_jobs():
        assert f'data-job="{spec.name}"' in content


def test_dashboard_shows_schedule_in_words_and_timezone(staff):
    content = staff.get("/cron/").content.decode()
    assert "Every 5 minutes" in content and "Every fifth minute" not in content
    assert "<code>*/5 * * * *</code> · UTC" in content


def test_dashboard_shows_the_last_runs_status_duration_and_counts(staff, sample_jobs_registered):
    sync_jobs()
    add_runs("test-partial", 1, status=RunStatus.PARTIAL, processed=5, succeeded=4, failed=1, error="item 3: bad")
    response = staff.get("/cron/")
    entry = row(response, "test-partial")
    assert entry["last_run"].status == RunStatus.PARTIAL and entry["last_duration"] == "100 ms"
    assert "4 ok, 1 failed" in response.content.decode()


def test_dashboard_says_never_ran_for_a_job_without_runs(staff, sample_jobs_registered):
    response = staff.get("/cron/")
    assert row(response, "test-ok")["last_run"] is None
    assert "never ran" in response.content.decode()


def test_dashboard_flags_an_overdue_job(staff, sample_jobs_registered):
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        sync_jobs()
    with time_machine.travel(T0, tick=False):
        response = staff.get("/cron/")
    entry = row(response, "test-ok")
    assert entry["overdue"] and entry["health"] == "overdue"
    assert 'class="small error-text overdue"' in response.content.decode()


def test_dashboard_renders_the_next_run_countdown_without_javascript(staff, sample_jobs_registered):
    with time_machine.travel(T0, tick=False):
        content = staff.get("/cron/").content.decode()
    assert 'datetime="2026-11-28T10:05:00+00:00"' in content
    assert ">in 3 min 0 s</time>" in content


def test_dashboard_query_count_does_not_grow_with_runs(staff, sample_jobs_registered, django_assert_num_queries):
    staff.get("/cron/")  # creates the Job rows
    for spec in registry.all_jobs():
        add_runs(spec.name, 1)
    with CaptureQueriesContext(connection) as few:
        staff.get("/cron/")
    for spec in registry.all_jobs():
        add_runs(spec.name, 20, start=T0 + timedelta(hours=1))
    with django_assert_num_queries(len(few.captured_queries)):
        staff.get("/cron/")


# --- run now ----------------------------------------------------------------------------
def test_run_now_records_an_admin_run_and_flashes_the_result(staff):
    response = staff.post("/cron/watchdog/run/", follow=True)
    run = JobRun.objects.get(job__name="watchdog")
    assert (run.trigger, run.status) == (Trigger.ADMIN, RunStatus.SUCCEEDED)
    flashed = [str(m) for m in response.context["messages"]][0]
    assert flashed == f"watchdog: succeeded, {run.succeeded} of {run.processed} items ok (run #{run.pk})."
    assert "succeeded: succeeded" not in flashed and flashed.count("succeeded") == 1
    assert response.redirect_chain[-1][0] == "/cron/"


def test_run_now_of_a_failing_job_flashes_the_error(staff, sample_jobs_registered):
    response = staff.post("/cron/test-fail/run/", follow=True)
    flashed = list(response.context["messages"])
    assert flashed[0].tags == "error"
    run = JobRun.objects.get(job__name="test-fail")
    assert str(flashed[0]) == f"test-fail: failed. RuntimeError: the provider account is suspended (run #{run.pk})."


def test_run_now_returns_to_the_history_page_it_was_pressed_on(staff):
    response = staff.post("/cron/watchdog/run/", {"next": "/cron/watchdog/"})
    assert response["Location"] == "/cron/watchdog/"


def test_get_on_run_now_is_405_and_runs_nothing(staff):
    assert staff.get("/cron/watchdog/run/").status_code == 405
    assert not JobRun.objects.exists()


def test_run_now_of_an_unknown_job_is_404(staff):
    assert staff.post("/cron/no-such-job/run/").status_code == 404


# --- history ----------------------------------------------------------------------------
def test_history_shows_the_error_and_links_the_runs_page_with_its_traceback(staff, sample_jobs_registered):
    result = run_job("test-fail", Trigger.CRON)
    content = staff.get("/cron/test-fail/").content.decode()
    assert "RuntimeError: the provider account is suspended" in content
    assert "Traceback (most recent call last)" not in content  # the table stays short
    assert f'href="/cron/test-fail/runs/{result.run_id}/">full error and traceback</a>' in content
    run_page = staff.get(f"/cron/test-fail/runs/{result.run_id}/").content.decode()
    assert "RuntimeError: the provider account is suspended" in run_page
    assert '<pre id="traceback">Traceback (most recent call last):' in run_page


def test_history_escapes_markup_in_errors(staff, sample_jobs_registered):
    sync_jobs()
    add_runs("test-ok", 1, status=RunStatus.FAILED, error="<script>alert(1)</script>")
    content = staff.get("/cron/test-ok/").content.decode()
    assert "<script>alert(1)" not in content and "&lt;script&gt;alert(1)" in content


def test_history_lists_the_newest_fifty_runs(staff, sample_jobs_registered):
    sync_jobs()
    runs = add_runs("test-ok", 60)
    listed = [item["run"].pk for item in staff.get("/cron/test-ok/").context["runs"]]
    assert listed == [run.pk for run in reversed(runs)][:50]


def test_history_chart_has_one_bar_per_run_scaled_to_the_longest(staff, sample_jobs_registered):
    sync_jobs()
    add_runs("test-ok", 3)  # 100, 101, 102 ms, oldest first
    chart = staff.get("/cron/test-ok/").context["chart"]
    heights = [bar.height for bar in chart["bars"]]
    assert len(heights) == 3 and heights[-1] == chart["baseline"] and heights[0] < heights[-1]
    assert [bar.status for bar in chart["bars"]] == ["succeeded"] * 3


def test_history_chart_is_inline_svg(staff, sample_jobs_registered):
    sync_jobs()
    add_runs("test-ok", 2)
    content = staff.get("/cron/test-ok/").content.decode()
    assert content.count('<rect class="succeeded"') == 2
    assert "<script src" not in content


def test_history_query_count_does_not_grow_with_runs(staff, sample_jobs_registered, django_assert_num_queries):
    sync_jobs()
    add_runs("test-ok", 2)
    staff.get("/cron/test-ok/")
    with CaptureQueriesContext(connection) as few:
        staff.get("/cron/test-ok/")
    add_runs("test-ok", 40, start=T0 + timedelta(days=1))
    with django_assert_num_queries(len(few.captured_queries)):
        staff.get("/cron/test-ok/")


def test_history_of_an_unknown_job_is_404(staff):
    assert staff.get("/cron/no-such-job/").status_code == 404


# --- formatting -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ms", "text"), [(None, "—"), (0, "0 ms"), (999, "999 ms"), (1500, "1.5 s"), (125_000, "2 min 5 s")]
)
def test_durations_read_in_the_largest_sensible_unit(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "due now"),
        (0, "due now"),
        (42, "in 42 s"),
        (200, "in 3 min 20 s"),
        (7260, "in 2 h 1 min"),
        (90000, "in 1 d 1 h"),
    ],
)
def test_countdown_reads_in_words(seconds, text):
    assert countdown_text(seconds) == text
