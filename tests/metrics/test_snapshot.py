"""A scrape reads one snapshot: a prune committing in the middle cannot count a batch twice."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from scheduling.models import Job, JobRun, RunStatus, RunTotal
from scheduling.services import prune_runs
from tests.metrics.scrape import scrape, value


def _prune_in_another_connection() -> None:
    def work() -> None:
        try:
            prune_runs(timezone.now())
        finally:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_a_prune_between_the_scrape_queries_changes_nothing_it_reports(client, settings):
    settings.CRON_SECRET = ["test-secret-one"]
    job = Job.objects.create(name="alpha")
    old = timezone.now() - timedelta(days=settings.CRON_RUN_RETENTION_DAYS + 5)
    for _ in range(3):
        JobRun.objects.create(job=job, trigger="cron", status=RunStatus.SUCCEEDED, duration_ms=10, started_at=old)
    JobRun.objects.create(job=job, trigger="cron", status=RunStatus.SUCCEEDED, duration_ms=10)

    def prune_after_the_runs_query(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if 'FROM "scheduling_jobrun"' in sql and "GROUP BY" in sql:
            _prune_in_another_connection()
        return result

    with connection.execute_wrapper(prune_after_the_runs_query):
        during = scrape(client)

    assert RunTotal.objects.get(job=job, status="succeeded").runs == 3  # the prune did commit
    assert value(during, "messaging_cron_job_runs_total", cron_job="alpha", status="succeeded") == 4
    after = scrape(client)
    assert value(after, "messaging_cron_job_runs_total", cron_job="alpha", status="succeeded") == 4
