"""A job's own command-line options (registry.CliOption) reach it as ctx.options, and a run's
counts from several worker contexts add up."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from scheduling import registry
from scheduling.context import JobContext

pytestmark = pytest.mark.django_db

seen: list[dict] = []


def remember_options(ctx: JobContext) -> None:
    seen.append(dict(ctx.options))


@pytest.fixture
def job_with_option():
    spec = registry.JobSpec(
        "test-options", remember_options, "* * * * *", cli_options=(registry.CliOption("--batch-count", type=int),)
    )
    registry.add(spec)
    seen.clear()
    yield
    registry.remove("test-options")


def test_a_jobs_cli_option_reaches_it_as_ctx_options(job_with_option):
    call_command("test_options", "--batch-count", "3", stdout=StringIO())
    call_command("test_options", stdout=StringIO())
    assert seen == [{"batch_count": 3}, {"batch_count": None}]


def test_a_run_started_otherwise_has_no_job_options(job_with_option):
    from scheduling.runner import run_job

    run_job("test-options", "manual")
    assert seen == [{}]


@pytest.mark.parametrize("value", ["-1", "two"])
def test_process_scheduled_refuses_a_bad_worker_count(value):
    with pytest.raises(CommandError, match="not a number of processes"):
        call_command("process_scheduled", "--workers", value, stdout=StringIO())


def test_worker_contexts_share_the_deadline_and_add_up():
    run = JobContext("job", 1, timedelta(minutes=10), options={"workers": 2})
    run.add("reconciled_sent", 1)
    first, second = run.for_worker(), run.for_worker()
    assert abs(first.time_left() - run.time_left()) < 1 and first.options == {"workers": 2}
    for worker, sent in ((first, 3), (second, 4)):
        worker.add("sent", sent)
        worker.item_succeeded(sent)
    second.item_failed("m1", "boom")
    second.data["throttled"] = ["SMS"]
    first.data["throttled"] = ["Email"]
    second.fail_run("provider refused")
    for worker in (first, second):
        run.absorb(worker.snapshot())
    assert (run.processed, run.succeeded, run.failed) == (8, 7, 1)
    assert run.data == {"reconciled_sent": 1, "sent": 7, "throttled": ["Email", "SMS"]}
    assert run.errors == ["m1: boom"] and run.failure == "provider refused"
