"""A Prometheus collector that reads everything from the database when it is scraped.

Jobs run as short-lived cron processes that are gone before any scrape: in-process counters
would die with them, and pushing them somewhere needs a Pushgateway that forgets on restart.
The database already records every run, message and provider call, so the collector derives
the figures from it at scrape time, with a fixed number of grouped queries.
"""

import time
from collections.abc import Callable, Iterator
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from messaging.models.queue import Channel, Outcome, Status
from observability import queries
from scheduling import run_totals
from scheduling.models import Health, Job, RunStatus

PREFIX = "messaging_cron"
# The job's label is `cron_job`, not `job`: Prometheus gives every scraped series a `job`
# label of its own (the scrape job) and would rename ours to `exported_job`.


class DatabaseCollector:
    def __init__(self, clock: Callable[[], datetime] = timezone.now) -> None:
        self._clock = clock

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = self._clock()
        with _snapshot():
            jobs = list(Job.objects.order_by("name"))
            totals = run_totals.run_totals()
            messages = queries.message_counts()
            due_since = queries.oldest_due_since(now)
            attempts = queries.attempt_counts()
        yield from _job_metrics(jobs, now)
        yield from _run_metrics(jobs, totals)
        yield from _message_metrics(messages, due_since, now)
        yield _attempt_metric(attempts)
        scrape = GaugeMetricFamily(f"{PREFIX}_scrape_duration_seconds", "Time this scrape spent reading the database.")
        scrape.add_metric([], time.perf_counter() - started)
        yield scrape


class _snapshot:
    """One consistent view of the database for the whole scrape (PostgreSQL REPEATABLE READ),
    so that a prune committing between two queries cannot count its batch twice."""

    def __enter__(self) -> None:
        self._atomic = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def __exit__(self, *exc: object) -> None:
        if self._atomic is not None:
            self._atomic.__exit__(*exc)


def _job_metrics(jobs: list[Job], now: datetime) -> Iterator[Metric]:
    last_success = GaugeMetricFamily(
        f"{PREFIX}_job_last_success_timestamp_seconds",
        "Start of the job's last run that did its work (succeeded or partial), Unix time.",
        labels=["cron_job"],
    )
    last_run = GaugeMetricFamily(
        f"{PREFIX}_job_last_run_timestamp_seconds", "Start of the job's last run, Unix time.", labels=["cron_job"]
    )
    enabled = GaugeMetricFamily(f"{PREFIX}_job_enabled", "1 if the job is enabled.", labels=["cron_job"])
    overdue = GaugeMetricFamily(
        f"{PREFIX}_job_overdue", "1 if the job missed its schedule by more than its grace.", labels=["cron_job"]
    )
    health = GaugeMetricFamily(
        f"{PREFIX}_job_health",
        "1 for the job's health state (Job.health), 0 for the others.",
        labels=["cron_job", "state"],
    )
    for job in jobs:
        if job.last_success_at:
            last_success.add_metric([job.name], job.last_success_at.timestamp())
        if job.last_run_at:
            last_run.add_metric([job.name], job.last_run_at.timestamp())
        enabled.add_metric([job.name], int(job.enabled))
        overdue.add_metric([job.name], int(job.is_overdue(now)))
        state = job.health(now)
        for choice in Health.values:
            health.add_metric([job.name, choice], int(choice == state))
    yield from (last_success, last_run, enabled, overdue, health)


def _run_metrics(jobs: list[Job], totals: run_totals.Tallies) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        f"{PREFIX}_job_runs",
        "Finished runs by job and status, including runs prune has deleted.",
        labels=["cron_job", "status"],
    )
    running = GaugeMetricFamily(f"{PREFIX}_job_runs_in_progress", "Runs marked running now.", labels=["cron_job"])
    duration = HistogramMetricFamily(
        f"{PREFIX}_job_run_duration_seconds",
        "Duration of runs that did their work (succeeded, partial, failed).",
        labels=["cron_job"],
    )
    for job in jobs:
        for status in run_totals.FINISHED_STATUSES:
            runs.add_metric([job.name, status], totals.get((job.pk, status), run_totals.RunTally()).runs)
        in_progress = totals.get((job.pk, RunStatus.RUNNING))
        running.add_metric([job.name], in_progress.runs if in_progress else 0)
        timed = run_totals.RunTally()
        for status in run_totals.TIMED_STATUSES:
            if (job.pk, status) in totals:
                timed.add(totals[(job.pk, status)])
        buckets = [
            (floatToGoString(bound), timed.buckets.get(run_totals.bucket_key(bound), 0))
            for bound in run_totals.DURATION_BUCKETS
        ]
        buckets.append(("+Inf", timed.runs))
        duration.add_metric([job.name], buckets, timed.duration_sum_ms / 1000)
    yield from (runs, running, duration)


def _message_metrics(counts: dict[tuple[str, str], int], due_since: datetime | None, now: datetime) -> Iterator[Metric]:
    messages = GaugeMetricFamily(
        f"{PREFIX}_messages", "Scheduled messages by status and channel, now.", labels=["status", "channel"]
    )
    for status in Status.values:
        for channel in Channel.values:
            messages.add_metric([status, channel], counts.get((status, channel), 0))
    oldest = GaugeMetricFamily(
        f"{PREFIX}_messages_oldest_due_age_seconds",
        "How long the longest-waiting due pending message has been due (0 when none is due).",
    )
    oldest.add_metric([], max(0.0, (now - due_since).total_seconds()) if due_since else 0.0)
    yield from (messages, oldest)


def _attempt_metric(counts: dict[str, int]) -> Metric:
    attempts = CounterMetricFamily(
        f"{PREFIX}_delivery_attempts",
        "Provider calls by outcome (sent, transient, permanent, account, ...).",
        labels=["outcome"],
    )
    for outcome in Outcome.values:
        attempts.add_metric([outcome], counts.get(outcome, 0))
    return attempts
