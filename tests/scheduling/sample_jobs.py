"""Throwaway jobs for the runner's tests; also loaded by subprocesses through
CRON_EXTRA_JOB_MODULES=tests.scheduling.sample_jobs."""

import os
import time
from datetime import timedelta

from scheduling import registry
from scheduling.context import JobContext


def sleepy(ctx: JobContext) -> None:
    """Holds its lock for SAMPLE_SLEEP seconds, or until asked to stop."""
    until = time.monotonic() + float(os.environ.get("SAMPLE_SLEEP", "0.2"))
    while time.monotonic() < until and not ctx.should_stop():
        time.sleep(0.02)
    ctx.item_succeeded()


def stubborn(ctx: JobContext) -> None:
    """Sleeps SAMPLE_SLEEP seconds without ever asking whether it should stop."""
    time.sleep(float(os.environ.get("SAMPLE_SLEEP", "0.2")))
    ctx.item_succeeded()


PARTIAL = True


def partly_failing(ctx: JobContext) -> None:
    """Five items; the third raises while PARTIAL is true (tests flip it to see a clean run)."""
    done = []

    def work(item: int) -> None:
        if item == 3 and PARTIAL:
            raise ValueError("bad data in item 3")
        done.append(item)

    ctx.each(range(1, 6), work)
    ctx.data["done"] = done


BROKEN = True


def failing(ctx: JobContext) -> None:
    """Raises out of the job while BROKEN is true (tests flip it to see a recovery)."""
    if BROKEN:
        raise RuntimeError("the provider account is suspended")
    ctx.item_succeeded()


def succeeding(ctx: JobContext) -> None:
    """Two items, both fine."""
    ctx.each(["a", "b"], lambda item: None)


def losing_its_connection(ctx: JobContext) -> None:
    """The database ends this job's session (a failover, a restart), then the job queries."""
    import psycopg
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


SPECS = [
    registry.JobSpec("test-sleep", sleepy, "* * * * *"),
    registry.JobSpec("test-stubborn", stubborn, "* * * * *"),
    registry.JobSpec("test-partial", partly_failing, "* * * * *"),
    registry.JobSpec("test-fail", failing, "*/5 * * * *", grace=timedelta(minutes=1)),
    registry.JobSpec("test-ok", succeeding, "*/5 * * * *", grace=timedelta(minutes=1)),
    registry.JobSpec("test-db-drop", losing_its_connection, "*/5 * * * *"),
]


def register_all() -> None:
    for spec in SPECS:
        registry.add(spec)


def unregister_all() -> None:
    for spec in SPECS:
        registry.remove(spec.name)


register_all()
