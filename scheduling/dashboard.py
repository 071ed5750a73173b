"""The /cron/ dashboard for staff: every job at a glance, one job's history with a duration
chart, and "Run now". The reads are the functions at the top; the views below stay thin."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages as flash
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from scheduling import registry, schedule
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.runner import RunResult, run_job
from scheduling.services import ensure_job, job_overview
from scheduling.stats import job_stats, missed_slots

logger = logging.getLogger("scheduling.dashboard")

HISTORY_LENGTH = 50
STATS_DAYS = 7  # the figures above a job's history, as GET /api/cron/jobs/<name>/stats/
# Pages need a staff login, then: the dashboard and a job's history (its runs) view_job,
# "Run now" run_job (Job.Meta.permissions); lacking one is a 403, not a login loop.
VIEW_JOBS = "scheduling.view_job"
RUN_JOBS = "scheduling.run_job"
CHART_WIDTH, CHART_HEIGHT, CHART_LEFT, CHART_BOTTOM = 800, 160, 56, 18


# --- reads ------------------------------------------------------------------------------
def format_duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def countdown_text(seconds: float) -> str:
    """Words like "in 3 min 20 s": what the page says until its script (if any) takes over."""
    if seconds <= 0:
        return "due now"
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"in {days} d {hours} h"
    if hours:
        return f"in {hours} h {minutes} min"
    if minutes:
        return f"in {minutes} min {seconds} s"
    return f"in {seconds} s"


def latest_runs() -> dict[str, JobRun]:
    """Each job's most recent run (of any status), in one query the job/started index serves."""
    newest = JobRun.objects.filter(job=OuterRef("pk")).order_by("-started_at", "-id").values("pk")[:1]
    ids = Job.objects.annotate(last_run_id=Subquery(newest)).values("last_run_id")
    return {run.job.name: run for run in JobRun.objects.filter(pk__in=ids).select_related("job")}


def dashboard_rows(now: datetime) -> list[dict[str, Any]]:
    """job_overview() plus what the page shows of each job's last run and next run."""
    last = latest_runs()
    rows = []
    for entry in job_overview(now):
        run = last.get(entry["name"])
        next_run = entry["next_run_at"]
        rows.append(
            {
                **entry,
                "last_run": run,
                "last_duration": format_duration(run.duration_ms) if run else "",
                "next_run_in": countdown_text((next_run - now).total_seconds()) if next_run else "",
            }
        )
    return rows


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    label: str


def duration_chart(runs: list[JobRun], missed: list[datetime] | None = None) -> dict[str, Any]:
    """Bars for an inline SVG drawn to time: each bar's x is proportional to its run's
    started_at, the oldest run at the left edge and the newest at the right (so a gap in the
    runs is a gap in the chart); heights scaled to the longest run; colour = the run's outcome.
    `missed` slots (scheduled, no run) inside the drawn span are marks on the time axis."""
    chronological = sorted(runs, key=lambda run: (run.started_at, run.pk or 0))
    plot_width = CHART_WIDTH - CHART_LEFT
    plot_height = CHART_HEIGHT - CHART_BOTTOM
    longest = max((run.duration_ms or 0 for run in chronological), default=0)
    bar_width = max(2.0, min(12.0, plot_width / max(len(chronological), HISTORY_LENGTH // 2) - 2))
    usable = plot_width - bar_width  # a bar starts at most here, so the newest ends at the edge
    first = chronological[0].started_at if chronological else None
    span = (chronological[-1].started_at - first).total_seconds() if chronological else 0.0
    bars = []
    for run in chronological:
        duration = run.duration_ms or 0
        # A visible sliver even for an instant run, so every run has a bar to hover.
        height = max(2.0, plot_height * duration / longest) if longest else 2.0
        offset = usable * (run.started_at - first).total_seconds() / span if span else usable
        bars.append(
            Bar(
                x=round(CHART_LEFT + offset, 1),
                y=round(plot_height - height, 1),
                width=round(bar_width, 1),
                height=round(height, 1),
                status=run.status,
                label=f"#{run.pk} {run.status}, {format_duration(run.duration_ms)}, {run.started_at:%Y-%m-%d %H:%M:%S}",
            )
        )
    marks = []
    if first is not None and span:
        for slot in missed or []:
            if first <= slot <= chronological[-1].started_at:
                offset = usable * (slot - first).total_seconds() / span
                marks.append(
                    {"x": round(CHART_LEFT + offset + bar_width / 2, 1), "label": f"missed {slot:%Y-%m-%d %H:%M}"}
                )
    return {
        "bars": bars,
        "missed": marks,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "baseline": plot_height,
        "longest": format_duration(longest),
        "first_at": first,
        "last_at": chronological[-1].started_at if chronological else None,
    }


def run_result_text(result: RunResult) -> str:
    """The flash after "Run now", saying each thing once: "watchdog: succeeded, 3 of 3 items
    ok (run #12).", "test-fail: failed. RuntimeError: ... (run #13).", "x: skipped. disabled"."""
    run = f" (run #{result.run_id})" if result.run_id else ""
    if result.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
        data = result.data
        text = f"{result.job}: {result.status}, {data.get('succeeded', 0)} of {data.get('processed', 0)} items ok{run}."
        if result.data.get("stopped_early"):
            text += f" Stopped early by {data['stopped_early']}; the rest is left for the next run."
        return text
    detail = result.message
    # RunResult.message may start with the status ("failed", "succeeded: ..."): say it once.
    if detail == result.status or detail.startswith(f"{result.status}: "):
        detail = detail[len(result.status) :].lstrip(": ")
    return f"{result.job}: {result.status}" + (f". {detail}" if detail else "") + f"{run}."


def run_detail(name: str, run_id: int) -> dict[str, Any]:
    """One run of one job, everything it recorded; Http404 if either is unknown."""
    run = get_object_or_404(JobRun.objects.select_related("job"), pk=run_id, job__name=name)
    return {"job": run.job, "run": run, "duration": format_duration(run.duration_ms)}


def job_history(name: str, now: datetime, limit: int = HISTORY_LENGTH) -> dict[str, Any]:
    """One job's overview row, its last `limit` runs and their duration chart; Http404 if unknown."""
    spec = registry.get(name)
    if spec is None:
        raise Http404(f"no job named {name!r}")
    job = ensure_job(spec)
    runs = list(job.runs.order_by("-started_at", "-id")[:limit])
    next_run = job.next_run_at(now) if job.enabled else None
    stats = job_stats(job, STATS_DAYS, now)
    missed = missed_slots(job, runs[-1].started_at, now) if runs else []
    return {
        "job": job,
        "schedule_text": schedule.describe(job.cron),
        "health": job.health(now),
        "overdue": job.is_overdue(now),
        "next_run_at": next_run,
        "next_run_in": countdown_text((next_run - now).total_seconds()) if next_run else "",
        "runs": [{"run": run, "duration": format_duration(run.duration_ms)} for run in runs],
        "chart": duration_chart(runs, missed),
        "stats": stats,
    }


# --- views ------------------------------------------------------------------------------
@staff_member_required
@permission_required(VIEW_JOBS, raise_exception=True)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return render(request, "scheduling/dashboard.html", {"rows": dashboard_rows(now), "now": now})


@staff_member_required
@permission_required(VIEW_JOBS, raise_exception=True)
@require_GET
def history(request: HttpRequest, name: str) -> HttpResponse:
    now = timezone.now()
    return render(request, "scheduling/job_history.html", {**job_history(name, now), "now": now})


@staff_member_required
@permission_required(VIEW_JOBS, raise_exception=True)
@require_GET
def run_page(request: HttpRequest, name: str, run_id: int) -> HttpResponse:
    return render(request, "scheduling/job_run.html", run_detail(name, run_id))


@staff_member_required
@permission_required(RUN_JOBS, raise_exception=True)
@require_POST
def run_now(request: HttpRequest, name: str) -> HttpResponseRedirect:
    if registry.get(name) is None:
        raise Http404(f"no job named {name!r}")
    logger.info("job_run_requested", extra={"job": name, "user": request.user.get_username()})
    result = run_job(name, Trigger.ADMIN)
    level = {RunStatus.SUCCEEDED: flash.SUCCESS, RunStatus.FAILED: flash.ERROR}.get(result.status, flash.WARNING)
    flash.add_message(request, level, run_result_text(result))
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("cron-dashboard")
