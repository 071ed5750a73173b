"""The tick: each minute, start every job whose scheduled slot is due, each as its own process.

`python manage.py cron tick` (the one crontab line) and `cron loop` (the demo, hosts without
cron) both call `tick()`. The schedule is read from the database at every tick, so a schedule
edited in admin or over the API takes effect at the next minute, with the crontab unchanged.

For each enabled job the slot is the latest scheduled time at or before now, in the job's zone.
It is started when no run took it yet and it is not older than the job's grace: a tick that
comes late still runs the slot it missed, once, and never a burst of older slots. The process
is the job's own command, `manage.py <job> --trigger=cron --slot=<time>`, under `flock -n`
where the host has it, output appended to var/log/<job>.log; the tick does not wait for it, so
a long job never delays the others. Whoever else runs the same slot (another host's tick, an
HTTP scheduler during a migration) finds it taken and records `skipped: slot_done`. A disabled
job's due slot is recorded as `skipped: disabled` without starting a process.
"""

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from scheduling import registry, schedule
from scheduling.models import Job, JobRun, Trigger
from scheduling.runner import FREE_SLOT, skip_disabled
from scheduling.services import sync_jobs

logger = logging.getLogger("scheduling.tick")


@dataclass(frozen=True)
class Start:
    job: Job
    slot: datetime
    delay: float = 0.0


def due_slots(now: datetime, jobs: list[Job] | None = None) -> dict[Job, datetime]:
    """Every job's latest slot at or before `now` that is within its grace."""
    slots = {}
    for job in sync_jobs() if jobs is None else jobs:
        if not job.cron:
            continue
        slot = schedule.previous_run(job.cron, job.tz, now)
        if now - slot <= max(job.grace, timedelta(minutes=1)):
            slots[job] = slot
    return slots


def plan(now: datetime, jobs: list[Job] | None = None) -> tuple[list[Start], list[tuple[Job, datetime]]]:
    """What this tick starts, and the disabled jobs whose slot came (to record as skipped)."""
    slots = due_slots(now, jobs)
    rows = JobRun.objects.filter(job__in=list(slots), planned_at__in=set(slots.values())).values_list(
        "job_id", "planned_at", "status"
    )
    taken, seen = set(), set()
    for job_id, planned_at, status in rows:
        seen.add((job_id, planned_at))
        if status not in FREE_SLOT:
            taken.add((job_id, planned_at))
    starts, disabled = [], []
    for job, slot in slots.items():
        if not job.enabled:
            # Recorded once per slot, and only in the slot's own minute.
            if (job.pk, slot) not in seen and now - slot < timedelta(minutes=1):
                disabled.append((job, slot))
            continue
        if (job.pk, slot) in taken:
            continue
        on_time = now - slot < timedelta(minutes=1)
        delay = random.uniform(0, job.jitter_seconds) if on_time and job.jitter_seconds else 0.0
        starts.append(Start(job, slot, round(delay, 1)))
    return starts, disabled


def job_argv(start: Start) -> list[str]:
    spec = registry.get(start.job.name)
    if spec is None:
        raise LookupError(start.job.name)
    argv = [
        sys.executable,
        str(Path(settings.BASE_DIR) / "manage.py"),
        spec.command,
        "--trigger=cron",
        f"--slot={start.slot.isoformat()}",
    ]
    if start.delay:
        argv.append(f"--delay={start.delay}")
    flock = shutil.which("flock")
    if flock:  # as the per-job crontab lines: a job still running is not started twice
        lock = Path(settings.BASE_DIR) / "var" / "run" / f"{start.job.name}.lock"
        argv = [flock, "-n", "-E", "0", str(lock), *argv]  # held: exit 0 quietly, as cron lines do
    return argv


def start_process(start: Start, env: dict[str, str] | None = None) -> subprocess.Popen:
    base = Path(settings.BASE_DIR) / "var"
    (base / "log").mkdir(parents=True, exist_ok=True)
    (base / "run").mkdir(parents=True, exist_ok=True)
    with open(base / "log" / f"{start.job.name}.log", "ab") as log:
        return subprocess.Popen(
            job_argv(start),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def tick(now: datetime | None = None, env: dict[str, str] | None = None) -> dict[str, subprocess.Popen]:
    """Start this minute's due jobs; returns the processes started, by job name."""
    now = now or timezone.now()
    starts, disabled = plan(now)
    for job, slot in disabled:
        try:
            skip_disabled(job, Trigger.CRON, slot)
        except Exception:  # a record that cannot be written must not stop the other jobs
            logger.exception("tick_skip_record_failed", extra={"job": job.name})
    started = {}
    for start in starts:
        # One job that cannot be started (its log file not writable, no memory to fork) must
        # never stop the others, the watchdog among them.
        try:
            started[start.job.name] = start_process(start, env)
        except Exception:
            logger.exception("job_start_failed", extra={"job": start.job.name})
    logger.info(
        "tick",
        extra={
            "started": {s.job.name: s.slot.isoformat() for s in starts if s.job.name in started},
            "not_started": [s.job.name for s in starts if s.job.name not in started],
            "late": [s.job.name for s in starts if now - s.slot >= timedelta(minutes=1)],
            "disabled": [job.name for job, _ in disabled],
        },
    )
    return started


class Loop:
    """`cron loop`: the tick at the start of every minute, in the foreground, until stopped."""

    def __init__(self, say: Callable[[str], None], env: dict[str, str] | None = None) -> None:
        self.say = say
        self.env = env  # the jobs' environment; None: this process's
        self.children: dict[str, subprocess.Popen] = {}

    def tick(self, now: datetime) -> list[str]:
        self.reap()
        started = tick(now, self.env)
        self.children.update(started)
        if started:
            self.say(f"{now:%H:%M} started {', '.join(started)}")
        return list(started)

    def reap(self) -> None:
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[name]
            if code:
                self.say(f"{name}: exit {code} (see var/log/{name}.log)")

    def run(self, stop: threading.Event) -> None:
        """Tick at the start of every minute (and once at once) until `stop` is set."""
        last_minute = None
        while not stop.is_set():
            now = timezone.now()
            minute = now.replace(second=0, microsecond=0)
            if minute != last_minute:
                last_minute = minute
                try:
                    self.tick(now)
                except Exception:  # a database hiccup must not end the loop: try next minute
                    logger.exception("tick_failed")
            self.reap()
            next_minute = minute + timedelta(minutes=1)
            stop.wait(min(1.0, max(0.05, (next_minute - timezone.now()).total_seconds())))
        self.stop_children()

    def stop_children(self, timeout: float = 30.0) -> None:
        """Ask every running job to stop (SIGTERM: it finishes what it started), then wait."""
        for child in self.children.values():
            if child.poll() is None:
                # Each job runs in its own session (flock and the job): signal the whole group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for name, child in self.children.items():
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                self.say(f"{name}: did not stop within {timeout:.0f} s, killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
        self.children.clear()
