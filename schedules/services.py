"""Client schedules: cron from a frequency, each occurrence fired once, late ones recorded missed.

The tick (`process-schedules`, every minute) looks at every enabled schedule whose next
occurrence has come. For each occurrence since the last one it handled:
- the latest, if it is not older than the schedule's catch-up window, is fired: a
  ScheduleExecution row is inserted first (unique per schedule and occurrence, so two ticks at
  once, on two hosts, fire it once), committed, then the kind's handler queues the work keyed
  `schedule:<id>:<occurrence UTC>` (so a handler re-run after a crash queues nothing twice);
- every other one (a tick that did not run for a while) is recorded `missed`, never fired late.
An execution left `firing` by a process that died is fired again (same key) after
REFIRE_AFTER.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from schedules.models import ClientSchedule, ExecutionStatus, Frequency, ScheduleExecution
from scheduling import schedule as cron

logger = logging.getLogger("schedules")

REFIRE_AFTER = timedelta(minutes=5)
MAX_MISSED_RECORDED = 100  # a schedule idle for months records its latest misses, not thousands

Handler = Callable[[ClientSchedule, datetime, str], str]
ParamsCheck = Callable[[Any, dict], list[str]]
_handlers: dict[str, Handler] = {}
_params_checks: dict[str, ParamsCheck] = {}


def handles(kind: str, params: ParamsCheck | None = None) -> Callable[[Handler], Handler]:
    """Register the function that does a kind's work: `fn(schedule, occurrence, key) -> detail`,
    and optionally `params(client, params) -> [problems]` to check a schedule's params up front."""

    def decorator(func: Handler) -> Handler:
        _handlers[kind] = func
        if params is not None:
            _params_checks[kind] = params
        return func

    return decorator


def params_problems(kind: str, client: Any, params: dict) -> list[str]:
    check = _params_checks.get(kind)
    return check(client, params) if check else []


def derive_cron(item: ClientSchedule) -> str:
    """The schedule's cron expression from its frequency; ValueError naming what is wrong."""
    if item.frequency == Frequency.CRON:
        expr = (item.cron or "").strip()
        if not expr:
            raise ValueError("cron: required when frequency is 'cron'")
    else:
        if item.time is None:
            raise ValueError(f"time: required when frequency is {item.frequency!r} (e.g. '09:00')")
        at = f"{item.time.minute} {item.time.hour}"
        if item.frequency == Frequency.DAILY:
            expr = f"{at} * * *"
        elif item.frequency == Frequency.WEEKLY:
            if item.weekday is None or not 0 <= item.weekday <= 6:
                raise ValueError("weekday: required when frequency is 'weekly' (0 Monday ... 6 Sunday)")
            expr = f"{at} * * {(item.weekday + 1) % 7}"  # cron counts from Sunday = 0
        elif item.frequency == Frequency.MONTHLY:
            if item.day is None or not 1 <= item.day <= 31:
                raise ValueError("day: required when frequency is 'monthly' (1-31)")
            expr = f"{at} {item.day} * *"
        else:
            raise ValueError(f"frequency: {item.frequency!r} is not daily, weekly, monthly or cron")
    try:
        cron.validate(expr, item.tz)
    except cron.ScheduleError as exc:
        field = "timezone" if "timezone" in str(exc) else "cron"
        raise ValueError(f"{field}: {exc}") from exc
    return expr


def occurrence_key(item: ClientSchedule, occurrence: datetime) -> str:
    return f"schedule:{item.pk}:{occurrence.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def next_runs(item: ClientSchedule, now: datetime, count: int = 5) -> list[datetime]:
    return cron.next_runs(item.cron, item.tz, now, count) if item.cron else []


def _start(item: ClientSchedule) -> datetime:
    """Occurrences after this count: the last one handled, or when the schedule (re)started."""
    return max(filter(None, [item.last_occurrence_at, item.counts_from]))


def refresh_next(item: ClientSchedule) -> None:
    """Store when the schedule next comes due (what the tick's index looks at)."""
    item.next_occurrence_at = cron.next_run(item.cron, item.tz, _start(item)) if item.enabled and item.cron else None


def follow_client_zone(client_id: int, now: datetime | None = None) -> int:
    """After a client's timezone changed: its schedules that use it count occurrences from now
    in the new zone (those of the old one are not "missed"); how many moved."""
    now = now or timezone.now()
    moved = 0
    for item in ClientSchedule.objects.filter(client_id=client_id, timezone="", enabled=True).select_related("client"):
        before = item.next_occurrence_at
        item.counts_from = max(now, item.counts_from)
        refresh_next(item)
        if item.next_occurrence_at != before:
            ClientSchedule.objects.filter(pk=item.pk).update(
                counts_from=item.counts_from, next_occurrence_at=item.next_occurrence_at
            )
            moved += 1
    return moved


def save_schedule(item: ClientSchedule, changed: set[str], now: datetime | None = None) -> ClientSchedule:
    """Save a created or edited schedule. Created, re-enabled or given a new time, it counts
    occurrences from now: those of the old time, or while it was off, are not "missed"."""
    now = now or timezone.now()
    item.cron = derive_cron(item)
    if item.pk is None or changed & {"enabled", "frequency", "time", "weekday", "day", "cron", "timezone"}:
        item.counts_from = now
    refresh_next(item)
    item.save()
    return item


@dataclass
class TickResult:
    fired: int = 0
    failed: int = 0
    missed: int = 0
    refired: int = 0


def _claim(item: ClientSchedule, occurrence: datetime, status: str, manual: bool = False) -> ScheduleExecution | None:
    """Insert the occurrence's execution row; None when another tick already has it."""
    try:
        with transaction.atomic():
            return ScheduleExecution.objects.create(
                schedule=item,
                occurrence_at=occurrence,
                status=status,
                manual=manual,
                key=occurrence_key(item, occurrence),
                finished_at=timezone.now() if status == ExecutionStatus.MISSED else None,
            )
    except IntegrityError:
        return None


def fire(execution: ScheduleExecution) -> ScheduleExecution:
    """Do the work of a claimed execution through its kind's handler; record the outcome."""
    item = execution.schedule
    handler = _handlers.get(item.kind)
    try:
        if handler is None:
            raise LookupError(f"no handler for kind {item.kind!r}")
        execution.detail = handler(item, execution.occurrence_at, execution.key) or ""
        execution.status = ExecutionStatus.FIRED
    except Exception as exc:  # one schedule's failure is its own, never the tick's
        logger.exception("schedule_failed", extra={"schedule": item.pk, "key": execution.key})
        execution.status, execution.error = ExecutionStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        _tell_failed(item, execution)
    execution.finished_at = timezone.now()
    execution.save(update_fields=["status", "detail", "error", "finished_at"])
    return execution


def _tell_failed(item: ClientSchedule, execution: ScheduleExecution) -> None:
    from notifications.models import Event
    from notifications.services import notify

    notify(
        Event.SCHEDULE_FAILED,
        f"[schedule] {item.client}: {item.name} failed",
        f"Occurrence {execution.occurrence_at:%Y-%m-%d %H:%M} UTC ({execution.key}): {execution.error}",
        perm="schedules.view_clientschedule",
    )


def _tell_missed(item: ClientSchedule, count: int, latest: datetime) -> None:
    from notifications.models import Event
    from notifications.services import notify

    notify(
        Event.SCHEDULE_MISSED,
        f"[schedule] {item.client}: {item.name} missed {count} occurrence{'s' if count > 1 else ''}",
        f"Found more than {item.catch_up_minutes} min after their time (the tick did not run): recorded as "
        f"missed, not fired late. Latest: {latest:%Y-%m-%d %H:%M} UTC.",
        perm="schedules.view_clientschedule",
    )


def tick_schedule(item: ClientSchedule, now: datetime) -> TickResult:
    """Handle every occurrence of `item` up to `now` that it has not handled yet."""
    result = TickResult()
    due = cron.slots_between(
        item.cron, item.tz, _start(item) + timedelta(microseconds=1), now + timedelta(microseconds=1)
    )
    if due:
        latest, older = due[-1], due[:-1]
        for occurrence in older[-MAX_MISSED_RECORDED:]:
            if _claim(item, occurrence, ExecutionStatus.MISSED):
                result.missed += 1
        if now - latest > timedelta(minutes=item.catch_up_minutes):
            result.missed += 1 if _claim(item, latest, ExecutionStatus.MISSED) else 0
        else:
            execution = _claim(item, latest, ExecutionStatus.FIRING)
            if execution is not None:
                ok = fire(execution).status == ExecutionStatus.FIRED
                result.fired += ok
                result.failed += not ok
        item.last_occurrence_at = latest
    if result.missed:
        _tell_missed(item, result.missed, latest)
    refresh_next(item)
    ClientSchedule.objects.filter(pk=item.pk).update(
        last_occurrence_at=item.last_occurrence_at, next_occurrence_at=item.next_occurrence_at
    )
    return result


def refire_stale(now: datetime) -> int:
    """Fire again the executions a dead process left `firing` (the key makes it once)."""
    # Only for schedules still enabled: one switched off since the crash stays off.
    stale = ScheduleExecution.objects.filter(
        status=ExecutionStatus.FIRING, created_at__lt=now - REFIRE_AFTER, schedule__enabled=True
    )
    count = 0
    for execution in stale.select_related("schedule__client"):
        claimed = ScheduleExecution.objects.filter(
            pk=execution.pk, status=ExecutionStatus.FIRING, created_at=execution.created_at
        )
        if claimed.update(created_at=now):  # one refire per stale row, also with two ticks
            fire(execution)
            count += 1
    return count


def due_schedules(now: datetime) -> list[ClientSchedule]:
    return list(
        ClientSchedule.objects.filter(enabled=True)
        .filter(Q(next_occurrence_at__lte=now) | Q(next_occurrence_at__isnull=True))
        .exclude(cron="")
        .select_related("client")
        .order_by("next_occurrence_at", "pk")
    )


def trigger_now(item: ClientSchedule, now: datetime | None = None) -> ScheduleExecution:
    """Fire the schedule's work now, outside its schedule (keyed on the time asked)."""
    now = (now or timezone.now()).replace(microsecond=0)
    execution = _claim(item, now, ExecutionStatus.FIRING, manual=True)
    if execution is None:
        raise ValueError(f"schedule {item.pk} was already triggered at {now:%Y-%m-%d %H:%M:%S} UTC")
    return fire(execution)


def execution_stats(item: ClientSchedule) -> dict[str, Any]:
    counts = dict(item.executions.values_list("status").annotate(n=Count("id")).order_by())
    done = counts.get(ExecutionStatus.FIRED, 0) + counts.get(ExecutionStatus.FAILED, 0)
    last_failed = item.executions.filter(status=ExecutionStatus.FAILED).first()
    return {
        "count": sum(counts.values()),
        "by_status": {status: counts.get(status, 0) for status in ExecutionStatus.values},
        "success_rate": round(counts.get(ExecutionStatus.FIRED, 0) / done, 4) if done else None,
        "last_error": last_failed.error if last_failed else None,
        "last_error_at": last_failed.occurrence_at if last_failed else None,
    }
