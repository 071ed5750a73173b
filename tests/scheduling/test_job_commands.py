"""Every registered job is a management command, made from the registry (no file per job)."""

import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command, get_commands, load_command_class

from scheduling import registry
from scheduling.models import JobRun
from tests.conftest import ROOT, subprocess_env

pytestmark = pytest.mark.django_db


def test_every_registered_job_is_a_command_without_a_file_of_its_own():
    commands = get_commands()
    files = {path.stem for path in ROOT.glob("*/management/commands/*.py")}
    for spec in registry.all_jobs():
        assert commands[spec.command] == "scheduling", spec.name
        assert spec.command not in files, f"{spec.command}.py: jobs get their command from the registry"
        assert load_command_class("scheduling", spec.command).job_name == spec.name


def test_a_job_registered_later_is_a_command_too(sample_jobs_registered):
    call_command("test_ok", stdout=StringIO())
    assert JobRun.objects.get(job__name="test-ok").status == "succeeded"


def test_a_job_whose_command_a_file_already_defines_is_refused_by_name():
    spec = registry.JobSpec("migrate", lambda ctx: None, "* * * * *")
    registry.add(spec)
    try:
        with pytest.raises(ImproperlyConfigured, match=r"job 'migrate' would be the command 'migrate'"):
            get_commands()
    finally:
        registry.remove("migrate")
    assert "migrate" in get_commands()


@pytest.mark.django_db(transaction=True)  # the subprocess commits its run
def test_manage_py_runs_and_lists_jobs_from_extra_modules():
    env = subprocess_env()
    run = subprocess.run(
        [sys.executable, "manage.py", "test_ok"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "test-ok: succeeded" in run.stdout
    listed = subprocess.run(
        [sys.executable, "manage.py", "help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    scheduling_section = listed.stdout.split("[scheduling]")[1].split("\n\n")[0].split()
    for name in ("process_scheduled", "watchdog", "daily", "weekly_summary", "test_ok", "cron"):
        assert name in scheduling_section
    helped = subprocess.run(
        [sys.executable, "manage.py", "process_scheduled", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--if-due" in helped.stdout and "Run the process-scheduled job now" in helped.stdout


def _readme_jobs() -> dict[str, str]:
    """The README's job table: job name -> command."""
    text = Path(ROOT / "README.md").read_text()
    section = text.split("\n## Jobs\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `python manage.py ([a-z0-9_]+)` \|", section, re.MULTILINE)
    return dict(rows)


def test_the_readme_job_table_lists_every_registered_job_and_nothing_else():
    registered = {spec.name: spec.command for spec in registry.all_jobs()}
    assert _readme_jobs() == registered
