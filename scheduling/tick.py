"""Start the jobs due this minute, each as its own `manage.py <job> --trigger=cron` process.

This is what the crontab does, for a machine without one (the demo; `python manage.py cron
loop`): every minute, every enabled job whose schedule (from its Job row, in its zone) falls in
that minute is started as the same command the crontab line runs, with its output appended to
`var/log/<job>.log`. Like `flock -n` in the crontab, a job whose previous process is still
running is not started again. A long job never delays the others.
"""

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from scheduling import registry, schedule
from scheduling.models import Job
from scheduling.services import sync_jobs

logger = logging.getLogger("scheduling.tick")


def due_jobs(now: datetime) -> list[Job]:
    """Enabled jobs whose schedule falls in the minute containing `now`."""
    return [job for job in sync_jobs() if job.enabled and job.cron and schedule.is_due(job.cron, job.tz, now)]


def job_argv(name: str) -> list[str]:
    spec = registry.get(name)
    if spec is None:
        raise LookupError(name)
    return [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), spec.command, "--trigger=cron"]


class Loop:
    """Starts due jobs each minute and keeps track of the processes it started."""

    def __init__(
        self, say: Callable[[str], None], log_dir: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.say = say
        self.log_dir = log_dir or Path(settings.BASE_DIR) / "var" / "log"
        self.env = env  # the jobs' environment; None: this process's
        self.children: dict[str, subprocess.Popen] = {}

    def tick(self, now: datetime) -> list[str]:
        """Start every job due in `now`'s minute that is not still running; their names."""
        self.reap()
        started = []
        for job in due_jobs(now):
            running = self.children.get(job.name)
            if running is not None:
                self.say(f"{now:%H:%M} {job.name}: still running (pid {running.pid}), not started again")
                continue
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / f"{job.name}.log", "ab") as log:
                child = subprocess.Popen(
                    job_argv(job.name), cwd=settings.BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
            self.children[job.name] = child
            started.append(job.name)
        if started:
            self.say(f"{now:%H:%M} started {', '.join(started)}")
        return started

    def reap(self) -> None:
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[name]
            if code:
                self.say(f"{name}: exit {code} (see {self.log_dir / f'{name}.log'})")

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
                child.terminate()
        for name, child in self.children.items():
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                self.say(f"{name}: did not stop within {timeout:.0f} s, killed")
                child.kill()
        self.children.clear()
