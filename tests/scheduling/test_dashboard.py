"""The /cron/ dashboard and job history, through the Django test client."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling import registry
from scheduling.dashboard import (
    CHART_HEIGHT,
    CHART_LEFT,
    CHART_WIDTH,
    countdown_text,
    duration_chart,
    format_duration,
    run_result_text,
)
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.runner import RunResult, run_job
from scheduling.services import sync_jobs
from tests.users import JOB_OPERATOR, staff_user

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 10, 2, 0, tzinfo=UTC)  # test-ok runs */5: next at 10:05


@pytest.fixture
def staff(client):
    client.force_login(staff_user("operator", *JOB_OPERATOR))
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


# --- the chart is drawn to time ---------------------------------------------------------------
def _run(minutes: float, duration_ms: int = 100, status: str = RunStatus.SUCCEEDED) -> JobRun:
    return JobRun(started_at=T0 + timedelta(minutes=minutes), duration_ms=duration_ms, status=status)


def test_chart_x_is_proportional_to_start_time_newest_at_the_right():
    # Newest first, as job_history passes them; a long gap between the second and third run.
    runs = [_run(60), _run(10), _run(5), _run(0)]
    chart = duration_chart(runs)
    bars = chart["bars"]
    width = bars[0].width
    left, right = CHART_LEFT, CHART_WIDTH - width  # where the oldest and the newest bar start
    assert [bar.x for bar in bars] == [
        round(left, 1),
        round(left + (right - left) * 5 / 60, 1),
        round(left + (right - left) * 10 / 60, 1),
        round(right, 1),
    ]
    assert bars[-1].x + bars[-1].width == pytest.approx(CHART_WIDTH, abs=0.1)  # the newest ends at the edge
    assert (chart["first_at"], chart["last_at"]) == (T0, T0 + timedelta(minutes=60))


def test_chart_of_evenly_spaced_runs_is_evenly_spaced_and_one_run_sits_at_the_right():
    xs = [bar.x for bar in duration_chart([_run(m) for m in (20, 10, 0)])["bars"]]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.1)
    (only,) = duration_chart([_run(0)])["bars"]
    assert only.x + only.width == pytest.approx(CHART_WIDTH, abs=0.1)
    assert duration_chart([])["bars"] == []


def test_chart_heights_follow_durations():
    bars = duration_chart([_run(10, duration_ms=50), _run(0, duration_ms=100)])["bars"]
    assert bars[0].height == CHART_HEIGHT - 18 and bars[1].height == pytest.approx(bars[0].height / 2, abs=0.1)


def test_history_page_labels_the_time_axis(staff, sample_jobs_registered):
    sync_jobs()
    add_runs("test-ok", 3)  # 10:02, 10:07, 10:12
    content = staff.get("/cron/test-ok/").content.decode()
    assert '<text x="56" y="157" class="first-at">11-28 10:02</text>' in content
    assert 'class="last-at">11-28 10:12 UTC</text>' in content


def test_chart_marks_missed_slots_on_the_time_axis_between_the_runs():
    runs = [_run(60), _run(0)]
    chart = duration_chart(runs, missed=[T0 + timedelta(minutes=30), T0 - timedelta(minutes=5)])
    (mark,) = chart["missed"]  # the slot before the first drawn run is outside the chart
    bar = chart["bars"][0]
    middle = CHART_LEFT + (CHART_WIDTH - bar.width - CHART_LEFT) / 2 + bar.width / 2
    assert mark["x"] == pytest.approx(middle, abs=0.1) and "missed" in mark["label"]


def test_history_page_shows_the_stats_and_the_missed_slots(staff, sample_jobs_registered):
    sync_jobs()
    job = Job.objects.get(name="test-ok")  # */5 with 1 minute of grace
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=30)
    start -= timedelta(minutes=start.minute % 5)
    Job.objects.filter(pk=job.pk).update(created_at=start - timedelta(minutes=1))
    for minutes, status, ms in ((0, "succeeded", 100), (5, "failed", 300), (20, "succeeded", 200)):
        at = start + timedelta(minutes=minutes)
        JobRun.objects.create(
            job=job, trigger="cron", status=status, started_at=at, planned_at=at, duration_ms=ms, error="boom"
        )
    content = staff.get("/cron/test-ok/").content.decode()
    assert "Last 7 days" in content and "p50 200 ms" in content and "max 300 ms" in content
    assert "1 failed" in content and ">boom</span>" in content
    assert content.count('<line class="missed"') == 2  # the 10 and 15 minute slots, between the runs
    assert 'Missed slots</dt><dd><span class="error-text">' in content


# --- long errors and the run page ----------------------------------------------------------
LONG_ERROR = "ProviderError: " + "z" * 1985  # 2,000 characters, one unbroken word


def test_dashboard_truncates_a_long_error_and_links_the_run_page_with_all_of_it(staff, sample_jobs_registered):
    sync_jobs()
    (run,) = add_runs("test-fail", 1, status=RunStatus.FAILED, error=LONG_ERROR)
    content = staff.get("/cron/").content.decode()
    assert LONG_ERROR not in content
    assert f'{LONG_ERROR[:79]}… <a href="/cron/test-fail/runs/{run.pk}/">full error</a>' in content
    history = staff.get("/cron/test-fail/").content.decode()
    assert LONG_ERROR not in history and f"{LONG_ERROR[:159]}…" in history
    page = staff.get(f"/cron/test-fail/runs/{run.pk}/").content.decode()
    assert f'<pre class="error-text" id="error">{LONG_ERROR}</pre>' in page


def test_run_page_shows_what_the_run_recorded(staff, sample_jobs_registered):
    sync_jobs()
    (run,) = add_runs(
        "test-partial", 1, status=RunStatus.PARTIAL, processed=5, succeeded=4, failed=1, summary={"skipped": 2}
    )
    content = staff.get(f"/cron/test-partial/runs/{run.pk}/").content.decode()
    assert "5 processed: 4 ok, 1 failed" in content and "skipped: 2" in content and "100 ms" in content


def test_run_page_of_another_jobs_run_or_an_unknown_run_is_404(staff, sample_jobs_registered):
    sync_jobs()
    (run,) = add_runs("test-ok", 1)
    assert staff.get(f"/cron/test-fail/runs/{run.pk}/").status_code == 404
    assert staff.get("/cron/test-ok/runs/999999/").status_code == 404


def test_run_page_needs_staff(client, sample_jobs_registered):
    sync_jobs()
    (run,) = add_runs("test-ok", 1)
    response = client.get(f"/cron/test-ok/runs/{run.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- the flash after "Run now" says each thing once -----------------------------------------
@pytest.mark.parametrize(
    ("result", "text"),
    [
        (
            RunResult("a", "succeeded", "succeeded: 3 of 3 items", run_id=7, data={"processed": 3, "succeeded": 3}),
            "a: succeeded, 3 of 3 items ok (run #7).",
        ),
        (
            RunResult("a", "partial", "partial: 2 of 3 items", run_id=8, data={"processed": 3, "succeeded": 2}),
            "a: partial, 2 of 3 items ok (run #8).",
        ),
        (RunResult("a", "failed", "failed", run_id=9), "a: failed (run #9)."),
        (
            RunResult("a", "skipped", "already_running: run 4 is still running"),
            "a: skipped. already_running: run 4 is still running.",
        ),
        (RunResult("a", "skipped", "disabled", run_id=10), "a: skipped. disabled (run #10)."),
    ],
)
def test_run_result_text_never_repeats_the_status(result, text):
    assert run_result_text(result) == text
