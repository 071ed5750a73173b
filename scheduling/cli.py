"""What the job commands share: run one job, print one line, exit with the run's code."""

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scheduling import registry, schedule
from scheduling.context import request_stop, stop_requested
from scheduling.models import Trigger
from scheduling.runner import RunResult, UnknownJob, run_job
from scheduling.services import ensure_job


def _request_stop(signum: int, frame: Any) -> None:
    """systemd, `timeout` and Ctrl-C stop a job with SIGTERM/SIGINT: the run stops taking
    work, finishes what it started (sends in flight are recorded, unstarted claims released)
    and is recorded. Raising out of a signal handler could interrupt a provider call or a
    commit halfway, so the first signal only sets the flag; a second one exits at once."""
    name = signal.Signals(signum).name
    if stop_requested():
        raise SystemExit(128 + signum)
    request_stop(name)


def add_run_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--trigger",
        choices=[Trigger.CRON, Trigger.MANUAL],
        default=Trigger.MANUAL,
        help="Who started the run (crontab lines pass --trigger=cron).",
    )
    parser.add_argument(
        "--if-due",
        action="store_true",
        help="Run only if the job's schedule, in its own timezone, falls in this minute.",
    )
    parser.add_argument(
        "--slot",
        type=_aware_datetime,
        help="The scheduled time (ISO 8601 with offset) this run is for; `cron tick` passes it.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="Run even if the slot already ran (the run then takes no slot).",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="Wait this many seconds first (the tick's jitter).")


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def run_from_command(
    command: BaseCommand,
    name: str,
    trigger: str,
    if_due: bool,
    slot: datetime | None = None,
    force: bool = False,
    delay: float = 0.0,
    options: dict[str, Any] | None = None,
) -> None:
    spec = registry.get(name)
    if spec is None:
        raise CommandError(f"unknown job {name!r}; `python manage.py cron list` shows the jobs")
    now = timezone.now()
    job = ensure_job(spec)
    # --if-due asks the schedule whoever starts the run: a job without a schedule is never due.
    if if_due and not (job.cron and schedule.is_due(job.cron, job.tz, now)):
        return
    planned_at = slot
    if planned_at is None and trigger == Trigger.CRON and job.cron:
        planned_at = schedule.previous_run(job.cron, job.tz, now)
    if force:
        planned_at = None
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    waited_until = time.monotonic() + max(0.0, delay)
    while time.monotonic() < waited_until and not stop_requested():
        time.sleep(max(0.0, min(0.2, waited_until - time.monotonic())))
    if stop_requested():
        return
    try:
        result = run_job(name, trigger, planned_at=planned_at, options=options)
    except UnknownJob as exc:
        raise CommandError(f"unknown job {exc}") from exc
    command.stdout.write(describe_result(result))
    if result.exit_code:
        sys.exit(result.exit_code)


def describe_result(result: RunResult) -> str:
    counts = ", ".join(f"{key}={value}" for key, value in result.data.items())
    return f"{result.job}: {result.status} in {result.duration_ms} ms (run {result.run_id}) {result.message}" + (
        f" [{counts}]" if counts and result.status != "skipped" else ""
    )


class JobCommand(BaseCommand):
    """A job's management command; scheduling.commands makes one per registered job."""

    job_name = ""
    # Crontab starts these every few minutes: skip the system checks (they import every URL
    # module, admin and DRF), which `manage.py check` and deploys run anyway.
    requires_system_checks: list = []

    @property
    def help(self) -> str:  # type: ignore[override]
        spec = registry.get(self.job_name)
        return f"Run the {self.job_name} job now. {spec.description if spec else ''}"

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        spec = registry.get(self.job_name)
        for option in spec.cli_options if spec else ():
            parser.add_argument(option.flag, dest=option.dest, type=option.type, help=option.help)

    def handle(
        self, *args: Any, trigger: str, if_due: bool, slot: datetime | None, force: bool, delay: float, **options: Any
    ) -> None:
        spec = registry.get(self.job_name)
        job_options = {option.dest: options.get(option.dest) for option in spec.cli_options} if spec else {}
        run_from_command(self, self.job_name, trigger, if_due, slot, force, delay, job_options)
