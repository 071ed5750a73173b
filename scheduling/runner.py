"""run_job: the one path every run takes, whoever started it (crontab, HTTP, admin, a person).

enabled? -> machine fit? -> lock -> JobRun(running) -> job(ctx) -> JobRun(finished) -> alert
-> unlock. The result says what happened, as an exit code, an HTTP status and a JSON body.
"""

import logging
import os
import socket
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from scheduling import alerts, guard, locks, registry, schedule
from scheduling.context import JobContext
from scheduling.dbname import application_name
from scheduling.models import Job, JobRun, RunStatus, Trigger
from scheduling.services import ensure_job, sync_jobs

logger = logging.getLogger("scheduling.runner")

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL, EXIT_TEMPFAIL = 0, 1, 3, 75

ALREADY_RUNNING = "already_running"
OVERLOADED = "overloaded"
DISABLED = "disabled"
SLOT_DONE = "slot_done"


class UnknownJob(LookupError):
    pass


@dataclass
class RunResult:
    job: str
    status: str
    message: str
    run_id: int | None = None
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 0
    replayed: bool = False
    # For a slot_done skip: the status of the run that took the slot, which is the answer.
    slot_status: str = ""

    @property
    def success(self) -> bool:
        if self.reason == SLOT_DONE:
            return self.slot_status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
        return self.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.SKIPPED)

    @property
    def exit_code(self) -> int:
        if self.reason == OVERLOADED:
            return EXIT_TEMPFAIL
        if self.reason == SLOT_DONE and self.slot_status == RunStatus.FAILED:
            return EXIT_FAILED
        return {RunStatus.FAILED: EXIT_FAILED, RunStatus.PARTIAL: EXIT_PARTIAL}.get(self.status, EXIT_OK)

    @property
    def http_status(self) -> int:
        if self.reason == ALREADY_RUNNING or (self.reason == SLOT_DONE and self.slot_status == RunStatus.RUNNING):
            return 409
        if self.reason == OVERLOADED:
            return 503
        if self.reason == SLOT_DONE:
            return 500 if self.slot_status == RunStatus.FAILED else 200
        return 500 if self.status == RunStatus.FAILED else 200

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "job": self.job,
            "run_id": self.run_id,
            "status": self.status,
            "message": self.message,
            "data": self.data,
            "duration_ms": self.duration_ms,
        }


def result_from_run(run: JobRun, *, replayed: bool = False) -> RunResult:
    reason = run.skip_reason.split(":")[0] if run.status == RunStatus.SKIPPED else ""
    if run.status == RunStatus.RUNNING:
        # A repeat of a request whose run is still going (a scheduler that timed out and
        # retried with the same Idempotency-Key): 409, not the unfinished run as a result.
        return RunResult(
            job=run.job.name,
            status=RunStatus.SKIPPED,
            message=f"{ALREADY_RUNNING}: run {run.pk} with this Idempotency-Key is still running",
            run_id=run.pk,
            reason=ALREADY_RUNNING,
            replayed=replayed,
        )
    if run.status == RunStatus.SKIPPED:
        message = run.skip_reason
    elif run.status == RunStatus.FAILED:
        message = run.error.splitlines()[0] if run.error else "failed"
    else:
        message = f"{run.status}: {run.succeeded} of {run.processed} items"
    if run.summary.get("stopped_early"):
        message += f" (stopped early by {run.summary['stopped_early']}; the rest is left for the next run)"
    data = {"processed": run.processed, "succeeded": run.succeeded, "failed": run.failed, **run.summary}
    return RunResult(
        job=run.job.name,
        status=run.status,
        message=message,
        run_id=run.pk,
        reason=reason,
        data=data,
        duration_ms=run.duration_ms or 0,
        replayed=replayed,
    )


def _replay_window_start() -> datetime:
    return timezone.now() - timedelta(hours=settings.CRON_IDEMPOTENCY_HOURS)


def _find_replay(job: Job, key: str) -> JobRun | None:
    if not key:
        return None
    return JobRun.objects.filter(job=job, idempotency_key=key, started_at__gte=_replay_window_start()).first()


# Runs that do not take their slot: a skipped attempt never ran, and an abandoned run's
# process died, so the slot is run again (within the job's grace).
FREE_SLOT = (RunStatus.SKIPPED, RunStatus.ABANDONED)


def _slot_run(job: Job, planned_at: datetime | None) -> JobRun | None:
    """The run that took this scheduled slot, if one did."""
    if planned_at is None:
        return None
    return JobRun.objects.filter(job=job, planned_at=planned_at).exclude(status__in=FREE_SLOT).first()


def _skip_slot_done(job: Job, trigger: str, planned_at: datetime, taken_by: JobRun) -> RunResult:
    """Skipped, answering with the outcome of the run that has the slot: a caller retrying a
    failed slot hears "failed" (500), one retrying a running slot hears 409, not "success"."""
    result = _skip(
        job,
        trigger,
        f"{SLOT_DONE}: run {taken_by.pk} ({taken_by.trigger}, {taken_by.status}) took the "
        f"{planned_at:%Y-%m-%d %H:%M} UTC slot",
        planned_at,
    )
    result.slot_status = taken_by.status
    result.data["slot_run_id"] = taken_by.pk
    return result


def skip_disabled(job: Job, trigger: str, planned_at: datetime | None) -> RunResult:
    """Record that a disabled job's slot came and was not run (the tick does, without a process)."""
    return _skip(job, trigger, f"{DISABLED}: the job is disabled in admin", planned_at)


def _skip(job: Job, trigger: str, reason: str, planned_at: datetime | None) -> RunResult:
    run = JobRun(job=job, trigger=trigger, planned_at=planned_at, host=socket.gethostname(), pid=os.getpid())
    run.finish(RunStatus.SKIPPED, now=run.started_at, skip_reason=reason)
    logger.info("job_skipped", extra={"job": job.name, "run_id": run.pk, "reason": reason})
    return result_from_run(run)


def run_job(
    name: str,
    trigger: str,
    *,
    idempotency_key: str = "",
    planned_at: datetime | None = None,
    claim_slot: bool = False,
    options: dict[str, Any] | None = None,
) -> RunResult:
    """Run job `name` now. `planned_at` is the scheduled slot this run is for (a slot runs once:
    a second attempt is skipped as slot_done); with `claim_slot` and no `planned_at`, a run
    started in a minute the schedule names takes that minute's slot (HTTP schedulers)."""
    spec = registry.get(name)
    if spec is None:
        raise UnknownJob(name)
    job = ensure_job(spec)
    if claim_slot and planned_at is None and job.cron:
        planned_at = schedule.slot_in_minute(job.cron, job.tz, timezone.now())
    replay = _find_replay(job, idempotency_key)
    if replay is not None:
        return result_from_run(replay, replayed=True)
    if not job.enabled:
        return skip_disabled(job, trigger, planned_at)
    taken = _slot_run(job, planned_at)
    if taken is not None:
        if not spec.allow_concurrent:
            return _skip_slot_done(job, trigger, planned_at, taken)
        # Overlapping runs of such a job share its work (row locks): this one runs alongside
        # the slot's run, taking no slot of its own.
        planned_at = None
    reason = guard.overload_reason() if spec.guarded else None
    if reason:
        result = _skip(job, trigger, reason, planned_at)
        _record_overload(job, result.run_id)
        return result
    lock = None if spec.allow_concurrent else locks.acquire(name)
    if lock is None and not spec.allow_concurrent:
        return _skip(job, trigger, f"{ALREADY_RUNNING}: another run holds the lock", planned_at)
    try:
        # Checked again under the lock: a run with the same key may have finished meanwhile.
        replay = _find_replay(job, idempotency_key)
        if replay is not None:
            return result_from_run(replay, replayed=True)
        if not spec.allow_concurrent:  # it holds the lock here: a slot run meanwhile is done
            taken = _slot_run(job, planned_at)
            if taken is not None:
                return _skip_slot_done(job, trigger, planned_at, taken)
        return _execute(spec, job, trigger, idempotency_key, planned_at, lock, options or {})
    finally:
        if lock is not None:
            lock.release()


def _create_run(job: Job, trigger: str, planned_at: datetime | None, key: str) -> JobRun:
    with transaction.atomic():
        return JobRun.objects.create(
            job=job,
            trigger=trigger,
            planned_at=planned_at,
            host=socket.gethostname(),
            pid=os.getpid(),
            idempotency_key=key,
        )


def _execute(
    spec: registry.JobSpec,
    job: Job,
    trigger: str,
    key: str,
    planned_at: datetime | None,
    lock: locks.Lock | None,
    options: dict[str, Any],
) -> RunResult:
    if key:
        # A key is honoured for CRON_IDEMPOTENCY_HOURS; an older run gives it up (only an
        # older one: a run with this key started a moment ago by a concurrent request keeps
        # it, and the unique constraint below turns this request into its replay).
        JobRun.objects.filter(job=job, idempotency_key=key, started_at__lt=_replay_window_start()).update(
            idempotency_key=""
        )
    try:
        run = _create_run(job, trigger, planned_at, key)
    except IntegrityError:
        # A job that allows concurrent runs, started twice at once: the same Idempotency-Key
        # replays the other run; the same scheduled slot went to the other run, and this one
        # runs alongside it without a slot.
        replay = _find_replay(job, key)
        if replay is not None:
            return result_from_run(replay, replayed=True)
        if planned_at is None or _slot_run(job, planned_at) is None:
            raise
        run = _create_run(job, trigger, None, key)
    ctx = JobContext(job.name, run.pk, spec.max_runtime, lock, options=options)
    ctx.log.info("job_started", extra={"trigger": trigger})
    error = tb = ""
    try:
        with application_name(job.name):
            spec.func(ctx)
    except BaseException as exc:  # also SIGTERM/KeyboardInterrupt: record, then re-raise
        error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        if not connection.in_atomic_block:
            # A dropped database connection must not also lose the record of the failure.
            connection.close_if_unusable_or_obsolete()
        _finish(job, run, ctx, RunStatus.FAILED, error, tb)
        if not isinstance(exc, Exception):
            raise
        return result_from_run(run)
    if ctx.failure:
        status = RunStatus.FAILED
        error = "\n".join([ctx.failure, *ctx.errors])
    elif ctx.failed and not ctx.succeeded:
        status = RunStatus.FAILED
        error = f"all {ctx.failed} items failed; first: {ctx.errors[0] if ctx.errors else ''}"
    elif ctx.failed:
        status = RunStatus.PARTIAL
        error = "\n".join(ctx.errors)
    else:
        status = RunStatus.SUCCEEDED
    _finish(job, run, ctx, status, error, tb)
    return result_from_run(run)


def _finish(job: Job, run: JobRun, ctx: JobContext, status: str, error: str, tb: str) -> None:
    run.processed, run.succeeded, run.failed = ctx.processed, ctx.succeeded, ctx.failed
    if ctx.stopped_by:
        ctx.data["stopped_early"] = ctx.stopped_by
    run.summary = ctx.data
    run.finish(status, error=error, traceback=tb)
    newest = _record_outcome(job, run, status)
    job.refresh_from_db()
    if newest:
        alerts.notify_run_finished(job, run)
    ctx.log.info(
        "job_finished",
        extra={
            "status": status,
            "processed": run.processed,
            "succeeded": run.succeeded,
            "failed": run.failed,
            "duration_ms": run.duration_ms,
            "stale": not newest,
        },
    )


def _record_overload(job: Job, run_id: int | None) -> None:
    """Count a start refused for overload; CRON_OVERLOAD_ALERT_AFTER in a row alert once."""
    Job.objects.filter(pk=job.pk).update(consecutive_overloads=F("consecutive_overloads") + 1)
    job.refresh_from_db()
    if job.is_overloaded():
        alerts.notify_overloaded(job, JobRun.objects.get(pk=run_id))


def _record_outcome(job: Job, run: JobRun, status: str) -> bool:
    """Move the job's last outcome and counters to this run's, unless a newer run got there first.

    Runs of a job that allows concurrency (or a run whose lock was lost) may finish out of
    order. The UPDATE is conditional on the stored last_run_at, so an older run that finishes
    last never overwrites a newer status; its row count says whether this run was the newest.
    A stale run may still move last_success_at forward, never back. Only the newest run's
    outcome alerts: the counters and alert_state describe the same sequence of runs.
    """
    worked = status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
    jobs = Job.objects.filter(pk=job.pk)
    newest = jobs.filter(Q(last_run_at__isnull=True) | Q(last_run_at__lte=run.started_at)).update(
        last_run_at=run.started_at,
        last_status=status,
        consecutive_failures=0 if worked else F("consecutive_failures") + 1,
        consecutive_partials=F("consecutive_partials") + 1 if status == RunStatus.PARTIAL else 0,
        consecutive_overloads=0,
        # The newest run started no earlier than any run before it: its start moves forward.
        **({"last_success_at": run.started_at} if worked else {}),
    )
    if worked and not newest:
        jobs.filter(Q(last_success_at__isnull=True) | Q(last_success_at__lt=run.started_at)).update(
            last_success_at=run.started_at
        )
    return bool(newest)


def run_due_jobs(now: datetime | None = None) -> list[RunResult]:
    """Run, one after another, every enabled job that never ran or is overdue (the demo's
    first tick, or catching up after an outage)."""
    now = now or timezone.now()
    due = [job for job in sync_jobs() if job.enabled and (job.last_success_at is None or job.is_overdue(now))]
    return [run_job(job.name, Trigger.MANUAL, planned_at=_current_slot(job, now)) for job in due]


def _current_slot(job: Job, now: datetime) -> datetime | None:
    """The slot a catch-up run stands for: the latest one, if still within the job's grace (the
    tick would run it now), so the tick does not run the job again right after."""
    if not job.cron:
        return None
    slot = schedule.previous_run(job.cron, job.tz, now)
    return slot if now - slot <= job.grace else None
