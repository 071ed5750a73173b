"""Helpers for tests that run a registered job."""

from datetime import datetime, timedelta

import time_machine

from scheduling import registry
from scheduling.context import JobContext
from scheduling.models import JobRun
from scheduling.runner import RunResult, run_job
from scheduling.services import ensure_job


def run_job_at(name: str, when: datetime) -> RunResult:
    """Run the job through the runner with the clock frozen at `when`."""
    with time_machine.travel(when, tick=False):
        return run_job(name, "manual")


def job_context(name: str, max_runtime: timedelta = timedelta(minutes=10)) -> JobContext:
    """A context for calling a job's service functions directly, backed by a real JobRun."""
    run = JobRun.objects.create(job=ensure_job(registry.get(name)), trigger="manual")
    return JobContext(name, run.pk, max_runtime)
