"""What a job receives: its run, a logger bound to the run, a deadline, per-item counters."""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import close_old_connections, connection

if TYPE_CHECKING:
    from scheduling.locks import Lock

T = TypeVar("T")
logger = logging.getLogger("scheduling.job")


class RunLogger(logging.LoggerAdapter):
    """Adds job and run_id to every event; fields passed as `extra` are kept."""

    def process(self, msg: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return msg, kwargs


# How often a long run checks that it still holds its lock.
LOCK_CHECK_SECONDS = 30.0

# Set by SIGTERM/SIGINT (scheduling.cli): every run in the process stops taking work, finishes
# what it started and is recorded. The signal handler only sets this; it never raises.
_stop_signal: list[str] = []
_stop_event = threading.Event()


def request_stop(reason: str) -> None:
    if not _stop_event.is_set():
        _stop_signal.append(reason)
        _stop_event.set()


def stop_requested() -> str:
    """The reason a stop was requested (e.g. "SIGTERM"), or "" when none was."""
    return _stop_signal[0] if _stop_event.is_set() else ""


def clear_stop_request() -> None:
    _stop_signal.clear()
    _stop_event.clear()


class JobContext:
    """Knows its run by job name and id only: jobs report through it, the runner records."""

    def __init__(
        self,
        job_name: str,
        run_id: int,
        max_runtime: timedelta,
        lock: "Lock | None" = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.job_name = job_name
        self.run_id = run_id
        # The job's own command-line options (registry.CliOption), empty for other triggers.
        self.options: dict[str, Any] = dict(options or {})
        self.log = RunLogger(logger, {"job": job_name, "run_id": run_id})
        self._deadline = time.monotonic() + max_runtime.total_seconds()
        # Stop taking work this long before the deadline, so what is started can finish.
        self._margin = min(30.0, max_runtime.total_seconds() / 10)
        self._counters_lock = threading.Lock()
        self._job_lock = lock
        self._lock_checked_at = time.monotonic()
        self.lock_lost = False
        self.processed = 0
        self.succeeded = 0
        self.failed = 0
        self.data: dict[str, Any] = {}
        self.errors: list[str] = []
        # A run-level failure the job reports (e.g. "the provider refused our credentials"):
        # the run is `failed` with this message whatever its item counts say.
        self.failure = ""
        self.stopped_by = ""

    # --- deadline -----------------------------------------------------------------------
    def time_left(self) -> float:
        return self._deadline - time.monotonic()

    def should_stop(self) -> bool:
        """True when the deadline nears, or when the job's lock was lost (another run may
        have started elsewhere: taking more work could overlap it)."""
        if self.time_left() <= self._margin or self.lock_lost:
            return True
        if _stop_event.is_set():
            self.stopped_by = stop_requested()
            return True
        if self._job_lock is not None and time.monotonic() - self._lock_checked_at >= LOCK_CHECK_SECONDS:
            self._lock_checked_at = time.monotonic()
            if not self._job_lock.still_held():
                self.lock_lost = True
                self.data["lock_lost"] = 1
                self.log.error("job_lock_lost")
                return True
        return False

    def fail_run(self, reason: str) -> None:
        """Mark the whole run failed with `reason` (what went wrong and what to fix); the
        job still finishes what it started. The first reason given is kept first."""
        with self._counters_lock:
            self.failure = f"{self.failure}; {reason}" if self.failure else reason
        self.log.error("run_failed", extra={"reason": reason})

    # --- work split over processes ------------------------------------------------------
    def for_worker(self) -> "JobContext":
        """A context for a worker process of this run: the same run, deadline and options,
        counters of its own (sent back with snapshot() and added up with absorb()). The job's
        lock stays with the process that holds it."""
        worker = JobContext(self.job_name, self.run_id, timedelta(0), options=self.options)
        worker._deadline, worker._margin = self._deadline, self._margin
        return worker

    def snapshot(self) -> dict[str, Any]:
        """What this context counted, as plain data a pipe can carry."""
        with self._counters_lock:
            return {
                "processed": self.processed,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "data": dict(self.data),
                "errors": list(self.errors),
                "failure": self.failure,
                "stopped_by": self.stopped_by,
            }

    def absorb(self, snapshot: dict[str, Any]) -> None:
        """Add a worker's snapshot to this run: counts add up, lists are merged."""
        with self._counters_lock:
            self.processed += snapshot["processed"]
            self.succeeded += snapshot["succeeded"]
            self.failed += snapshot["failed"]
            self.errors.extend(snapshot["errors"][: max(0, 20 - len(self.errors))])
            for key, value in snapshot["data"].items():
                self.data[key] = _merged(self.data.get(key), value)
            if snapshot["failure"]:
                self.failure = f"{self.failure}; {snapshot['failure']}" if self.failure else snapshot["failure"]
            self.stopped_by = self.stopped_by or snapshot["stopped_by"]

    # --- per-item reporting (thread-safe: delivery reports from a pool) -------------------
    def item_succeeded(self, count: int = 1) -> None:
        with self._counters_lock:
            self.processed += count
            self.succeeded += count

    def item_failed(self, item: object, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self._counters_lock:
            self.processed += 1
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(f"{item}: {reason}")
        self.log.warning("item_failed", extra={"item": str(item), "error": reason})

    def add(self, key: str, amount: int = 1) -> None:
        """Count something job-specific (e.g. "escalated") into the run's summary."""
        with self._counters_lock:
            self.data[key] = self.data.get(key, 0) + amount

    def each(self, items: Iterable[T], work: Callable[[T], object]) -> None:
        """Do `work` for every item, isolating failures; stop early when the deadline nears.

        An item's exception is logged and counted and the batch goes on. Items left when the
        deadline nears are counted as `deferred` for the next tick.
        """
        for item in items:
            if self.should_stop():
                self.add("deferred")
                continue
            try:
                work(item)
            except Exception as exc:  # one item never aborts the batch
                self.log.exception("item_error", extra={"item": str(item)})
                self.item_failed(item, exc)
            else:
                self.item_succeeded()
            self.between_units()

    def between_units(self) -> None:
        """Drop a broken database connection between units of work, so the next unit
        reconnects instead of failing too. Healthy connections are kept: with the default
        CONN_MAX_AGE=0, close_old_connections() would otherwise reconnect for every item."""
        if connection.errors_occurred and not connection.in_atomic_block:
            close_old_connections()


def _merged(mine: Any, theirs: Any) -> Any:
    if mine is None:
        return theirs
    if isinstance(mine, int | float) and isinstance(theirs, int | float) and not isinstance(mine, bool):
        return mine + theirs
    if isinstance(mine, list) and isinstance(theirs, list):
        return sorted(set(mine) | set(theirs), key=str)
    return mine
