"""The rendered /etc/cron.d file parses, logs to files logrotate rotates, and its tick runs."""

import re
import subprocess
import time
from datetime import UTC, datetime
from io import StringIO

import pytest
from cronsim import CronSim, CronSimError
from django.core.management import call_command

from scheduling import registry
from scheduling.models import Job, JobRun
from scheduling.services import sync_jobs
from tests.conftest import subprocess_env
from tests.deploy.installer import APP_USER, INSTALL_DIR, installed

CRON_FILE = "/etc/cron.d/messaging-cron"
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def entries(text: str) -> list[tuple[str, str, str]]:
    """(time fields, user, command) of every line that is not blank, a comment or a variable."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or VARIABLE.match(line):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not five time fields, a user and a command: {line!r}"
        schedule = " ".join(fields[:5])
        CronSim(schedule, datetime(2026, 1, 1, tzinfo=UTC))  # raises on a bad expression
        rows.append((schedule, fields[5], fields[6]))
    return rows


def test_every_line_of_the_cron_file_has_five_time_fields_a_user_and_a_command(rendered):
    rows = entries(installed(rendered, CRON_FILE).read_text())
    assert rows == [("* * * * *", APP_USER, rows[0][2])]
    command = rows[0][2]
    assert command.startswith(f"cd {INSTALL_DIR} && ")
    assert "flock -n var/run/tick.lock .venv/bin/python manage.py cron tick" in command


def test_cron_output_goes_to_log_files_that_logrotate_rotates(rendered):
    text = installed(rendered, CRON_FILE).read_text()
    assert "/dev/null" not in text
    ((_, _, command),) = entries(text)
    assert command.endswith(">> var/log/tick.log 2>&1")
    rules = installed(rendered, "/etc/logrotate.d/messaging-cron").read_text()
    assert f"{INSTALL_DIR}/var/log/*.log {{" in rules


def test_a_malformed_line_is_caught():
    with pytest.raises(AssertionError):
        entries("* * * * * messaging\n")  # no command
    with pytest.raises(CronSimError):
        entries("* * * * cd /srv && manage.py cron tick\n")  # four time fields: "cd" is no weekday
    with pytest.raises(CronSimError):
        entries("* 25 * * * messaging cd /srv && tick\n")  # hour 25


def test_cron_crontab_renders_a_cron_d_user_field_on_every_line():
    out = StringIO()
    call_command("cron", "crontab", "--per-job", "--cron-d-user", "svc", "--project-dir", "/srv/x", stdout=out)
    rows = entries(out.getvalue())
    assert len(rows) == len(registry.all_jobs())
    assert {user for _, user, _ in rows} == {"svc"}
    plain = StringIO()
    call_command("cron", "crontab", "--project-dir", "/srv/x", stdout=plain)
    assert " svc " not in plain.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_cron_lines_command_runs_the_tick_against_the_database(rendered, venv_in_root, sample_jobs_registered):
    sync_jobs()
    Job.objects.exclude(name="test-sleep").update(enabled=False)
    ((_, _, command),) = entries(installed(rendered, CRON_FILE).read_text())
    app = installed(rendered, INSTALL_DIR)
    # The line exactly as cron runs it, only cd'ing into the dry-run root's copy of the project.
    command = command.replace(f"cd {INSTALL_DIR} ", f"cd {app} ")
    env = subprocess_env(SAMPLE_SLEEP="0", CACHE_URL="locmemcache://")
    result = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # everything went to the log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not JobRun.objects.filter(job__name="test-sleep", status="succeeded"):
        time.sleep(0.2)
    run = JobRun.objects.get(job__name="test-sleep")
    assert run.status == "succeeded" and run.trigger == "cron" and run.planned_at is not None
    assert "started test-sleep" in (app / "var" / "log" / "tick.log").read_text()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "succeeded" not in (app / "var/log/test-sleep.log").read_text():
        time.sleep(0.2)
    assert "test-sleep: succeeded" in (app / "var" / "log" / "test-sleep.log").read_text()
