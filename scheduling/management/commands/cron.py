import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from scheduling.cli import add_run_arguments, describe_result, run_from_command
from scheduling.crontab import render_crontab
from scheduling.runner import run_due_jobs
from scheduling.services import is_healthy, job_overview
from scheduling.tick import Loop, tick


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


class Command(BaseCommand):
    help = "Cron jobs: list, run NAME, status (exit 1 when unhealthy), tick, loop, crontab."
    # `cron tick` starts every minute: like the job commands it skips the system checks
    # (every URL module, admin and DRF imported), which `manage.py check` and deploys run.
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Jobs with schedule, timezone, next run and last status.")
        run = sub.add_parser("run", help="Run one job now.")
        run.add_argument("name")
        add_run_arguments(run)
        sub.add_parser("status", help="Health of every job; exits 1 when one is unhealthy.")
        sub.add_parser("run-due", help="Run once every enabled job that never ran or is overdue.")
        sub.add_parser(
            "loop",
            help="Every minute, start each due job as its own process, as crontab would (demo, hosts without cron).",
        )
        sub.add_parser("tick", help="Start every job whose scheduled slot is due, each as its own process.")
        tab = sub.add_parser("crontab", help="The crontab: one `cron tick` line, or --per-job lines.")
        tab.add_argument("--project-dir", default=str(settings.BASE_DIR))
        tab.add_argument("--python", default=".venv/bin/python")
        tab.add_argument(
            "--per-job",
            action="store_true",
            help="One line per job (each minute with --if-due) instead of the one tick line.",
        )
        tab.add_argument(
            "--cron-d-user",
            metavar="USER",
            help="Render a file for /etc/cron.d: every line runs as USER (the field cron.d files have).",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"do_{action.replace('-', '_')}")(**options)

    def do_run(
        self, name: str, trigger: str, if_due: bool, slot: Any, force: bool, delay: float, **options: Any
    ) -> None:
        run_from_command(self, name, trigger, if_due, slot, force, delay)

    def do_run_due(self, **options: Any) -> None:
        for result in run_due_jobs():
            self.stdout.write(describe_result(result))

    def do_loop(self, **options: Any) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            self.stdout.write(f"{signal.Signals(signum).name}: stopping the jobs started, then exiting")
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write("Scheduler loop: starting due jobs every minute (job output in var/log/<job>.log)")
        Loop(say=self.stdout.write).run(stop)

    def do_list(self, **options: Any) -> None:
        rows = [("JOB", "SCHEDULE", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST STATUS")]
        for entry in job_overview():
            rows.append(
                (
                    entry["name"],
                    f"{entry['schedule']} ({entry['schedule_text']})",
                    entry["timezone"],
                    "yes" if entry["enabled"] else "no",
                    _when(entry["next_run_at"]),
                    entry["last_status"] or "never",
                )
            )
        self._table(rows)

    def do_status(self, **options: Any) -> None:
        overview = job_overview()
        rows = [("JOB", "HEALTH", "LAST RUN", "LAST STATUS", "LAST SUCCESS", "7-DAY SUCCESS", "7-DAY PARTIAL")]
        for entry in overview:
            rate, partial = entry["success_rate_7d"], entry["partial_rate_7d"]
            rows.append(
                (
                    entry["name"],
                    entry["health"],
                    _when(entry["last_run_at"]),
                    entry["last_status"] or "never",
                    _when(entry["last_success_at"]),
                    "-" if rate is None else f"{rate:.0%}",
                    "-" if partial is None else f"{partial:.0%} ({entry['partial_runs_7d']})",
                )
            )
        self._table(rows)
        healthy = is_healthy(overview)
        self.stdout.write(f"\n{'healthy' if healthy else 'UNHEALTHY'} at {_when(timezone.now())}")
        if not healthy:
            raise SystemExit(1)

    def do_crontab(self, project_dir: str, python: str, per_job: bool, cron_d_user: str | None, **options: Any) -> None:
        self.stdout.write(render_crontab(project_dir, python, per_job, cron_d_user), ending="")

    def do_tick(self, **options: Any) -> None:
        now = timezone.now()
        for name, process in tick(now).items():
            self.stdout.write(f"{now:%Y-%m-%d %H:%M} started {name} (pid {process.pid})")

    def _table(self, rows: list[tuple]) -> None:
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
