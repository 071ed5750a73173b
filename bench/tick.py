"""`cron tick` (it runs every minute) beside `manage.py check`: wall time and peak memory.

    .venv/bin/python bench/tick.py [--rounds 7]

On a PostgreSQL database of its own (bench_tick, dropped after). Three cases, interleaved
round by round so the machine's load affects them alike:
- `manage.py check`: the floor (interpreter, Django, every app and URL imported);
- `cron tick` with nothing due: every job's current slot already taken;
- `cron tick` with three jobs due: it starts three job processes (not waited for).
Prints the median and the max of wall time, and the peak RSS of the process.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _db import ROOT, bench_database  # noqa: E402

DUE = ("watchdog", "check-missed-calls", "agent-check")


def measure(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process (wait4 gives that process's own rusage)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def take_every_slot(except_for: tuple[str, ...] = ()) -> None:
    """Mark the current slot of every job (but `except_for`) as run, and enable those only."""
    from django.utils import timezone

    from scheduling.models import Job, JobRun, Trigger
    from scheduling.services import sync_jobs
    from scheduling.tick import due_slots

    jobs = sync_jobs()
    Job.objects.update(enabled=True)
    JobRun.objects.filter(job__name__in=except_for).delete()
    for job, slot in due_slots(timezone.now(), jobs).items():
        if job.name not in except_for:
            if not JobRun.objects.filter(job=job, planned_at=slot).exclude(status="skipped").exists():
                JobRun.objects.create(job=job, planned_at=slot, trigger=Trigger.CRON, status="succeeded")
    # The three stand-ins are made due every minute for the measurement.
    Job.objects.filter(name__in=except_for).update(schedule="* * * * *")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    python = sys.executable
    with bench_database("bench_tick"):
        os.environ.update({"SMS_PROVIDER": "console", "EMAIL_PROVIDER": "console", "DEBUG": "true"})
        results: dict[str, list[tuple[float, float]]] = {"check": [], "tick, nothing due": [], "tick, 3 due": []}
        for _ in range(args.rounds):
            results["check"].append(measure([python, "manage.py", "check"]))
            take_every_slot()
            results["tick, nothing due"].append(measure([python, "manage.py", "cron", "tick"]))
            take_every_slot(except_for=DUE)
            results["tick, 3 due"].append(measure([python, "manage.py", "cron", "tick"]))
            time.sleep(3)  # let the started jobs finish before the next round
        print(f"{'case':<20} {'median wall':>12} {'max wall':>9} {'peak RSS':>9}   ({args.rounds} rounds)")
        for case, samples in results.items():
            walls = [wall for wall, _ in samples]
            print(
                f"{case:<20} {statistics.median(walls) * 1000:>9.0f} ms {max(walls) * 1000:>6.0f} ms"
                f" {max(rss for _, rss in samples):>6.0f} MiB"
            )


if __name__ == "__main__":
    main()
