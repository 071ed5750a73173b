import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from scheduling.models import JobRun
from tests.conftest import ROOT, manage_py, subprocess_env

pytestmark = pytest.mark.django_db


def test_crontab_example_equals_the_generated_crontab():
    out = StringIO()
    call_command("cron", "crontab", "--project-dir", "/srv/messaging-cron", stdout=out)
    assert (ROOT / "crontab.example").read_text() == out.getvalue()


def test_the_default_crontab_is_one_flock_wrapped_tick_line():
    out = StringIO()
    call_command("cron", "crontab", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line and not line.startswith(("#", "SHELL="))]
    assert len(lines) == 1
    assert lines[0].startswith("* * * * * ") and "flock -n var/run/tick.lock" in lines[0]
    assert "manage.py cron tick >> var/log/tick.log 2>&1" in lines[0]


def test_per_job_crontab_has_a_flock_wrapped_if_due_line_per_job():
    from django.core.management import get_commands

    from scheduling import registry

    out = StringIO()
    call_command("cron", "crontab", "--per-job", stdout=out)
    job_lines = [line for line in out.getvalue().splitlines() if "manage.py" in line and not line.startswith("#")]
    assert len(job_lines) == len(registry.all_jobs())
    for spec in registry.all_jobs():
        assert spec.command in get_commands(), spec.name
        line = next(line for line in job_lines if f"manage.py {spec.command} " in line)
        assert line.startswith("* * * * * ") and "--trigger=cron --if-due" in line
        assert f"flock -n var/run/{spec.name}.lock" in line and line.endswith(f">> var/log/{spec.name}.log 2>&1")


def test_cron_list_shows_schedule_in_words_and_next_run():
    out = StringIO()
    call_command("cron", "list", stdout=out)
    assert "watchdog" in out.getvalue() and "Every 5 minutes" in out.getvalue()


def test_cron_status_exits_1_when_a_job_failed(sample_jobs_registered):
    call_command("cron", "run", "test-ok", stdout=StringIO())
    call_command("cron", "status", stdout=StringIO())  # healthy: returns normally
    with pytest.raises(SystemExit):
        call_command("cron", "run", "test-fail", stdout=StringIO())
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("cron", "status", stdout=out)
    assert exit_info.value.code == 1 and "UNHEALTHY" in out.getvalue()


def test_job_command_records_a_cron_trigger_with_its_planned_time(sample_jobs_registered):
    call_command("watchdog", "--trigger=cron", stdout=StringIO())
    run = JobRun.objects.get(job__name="watchdog")
    assert run.trigger == "cron" and run.planned_at is not None and run.planned_at <= run.started_at


@time_machine.travel(datetime(2026, 12, 2, 6, 28, 30, tzinfo=UTC), tick=False)
def test_if_due_on_a_manual_run_outside_the_schedule_runs_nothing():
    call_command("prune", "--if-due", stdout=StringIO())  # prune is due at 03:17 UTC only
    assert not JobRun.objects.filter(job__name="prune").exists()


@time_machine.travel(datetime(2026, 12, 2, 3, 17, 30, tzinfo=UTC), tick=False)
def test_if_due_on_a_manual_run_in_the_scheduled_minute_runs():
    call_command("prune", "--if-due", stdout=StringIO())
    run = JobRun.objects.get(job__name="prune")
    assert run.trigger == "manual"


def test_unknown_job_is_a_clear_command_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="cron list"):
        call_command("cron", "run", "no-such-job")


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CRON_SECRET"])
def test_production_settings_refuse_to_start_without_secrets(missing):
    env = subprocess_env(DEBUG="false", SECRET_KEY="x" * 50, CRON_SECRET="s" * 40, ALLOWED_HOSTS="example.com")
    env.pop(missing)
    proc = manage_py("check", env=env, timeout=60)
    assert proc.returncode != 0
    assert f"{missing} is not set: set it in .env (see .env.example)" in proc.stderr


def test_production_settings_pass_the_deploy_check():
    env = subprocess_env(
        DEBUG="false", SECRET_KEY="k" * 20 + "-Zq8#pL2$" + "v" * 30, CRON_SECRET="s" * 40, ALLOWED_HOSTS="example.com"
    )
    proc = manage_py("check", "--deploy", "--fail-level", "WARNING", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_secret_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "cron_secret"
    secret_file.write_text("from-a-file-" + "f" * 30 + "\n")
    env = subprocess_env(
        DEBUG="false", SECRET_KEY="x" * 50, ALLOWED_HOSTS="example.com", CRON_SECRET_FILE=str(secret_file)
    )
    env.pop("CRON_SECRET")
    code = "import django; django.setup(); from django.conf import settings; print(settings.CRON_SECRET)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"['from-a-file-{'f' * 30}']", proc.stderr


def _check_in_production(**secrets: str) -> subprocess.CompletedProcess:
    env = subprocess_env(DEBUG="false", ALLOWED_HOSTS="example.com", **secrets)
    return manage_py("check", env=env, timeout=60)


GOOD_KEY = "Kq3-vX9_" * 7  # 56 characters
GOOD_CRON_SECRET = "c7Yb2-Lm" * 5  # 40 characters


@pytest.mark.parametrize(
    ("variable", "secrets", "bad_value", "expected"),
    [
        ("CRON_SECRET", {"SECRET_KEY": GOOD_KEY, "CRON_SECRET": "short-secret"}, "short-secret", "too short (12"),
        (
            "CRON_SECRET",
            {"SECRET_KEY": GOOD_KEY, "CRON_SECRET": "change-me-long-random-string"},
            "change-me-long-random-string",
            "placeholder",
        ),
        ("SECRET_KEY", {"SECRET_KEY": "tiny-key-0123", "CRON_SECRET": GOOD_CRON_SECRET}, "tiny-key-0123", "too short"),
        (
            "SECRET_KEY",
            {
                "SECRET_KEY": "change-me-to-a-long-random-string-of-50-or-more-characters",
                "CRON_SECRET": GOOD_CRON_SECRET,
            },
            "change-me-to-a-long-random-string-of-50-or-more-characters",
            "placeholder",
        ),
        (
            "CRON_SECRET (entry 2)",
            {"SECRET_KEY": GOOD_KEY, "CRON_SECRET": f"{GOOD_CRON_SECRET},old-rotated"},
            "old-rotated",
            "too short (11",
        ),
    ],
)
def test_production_settings_refuse_weak_secrets_without_printing_them(variable, secrets, bad_value, expected):
    proc = _check_in_production(**secrets)
    assert proc.returncode != 0
    assert f"{variable} is" in proc.stderr and expected in proc.stderr, proc.stderr
    assert bad_value not in proc.stderr + proc.stdout


def test_production_settings_accept_long_secrets_including_rotated_ones():
    proc = _check_in_production(SECRET_KEY=GOOD_KEY, CRON_SECRET=f"{GOOD_CRON_SECRET},{GOOD_CRON_SECRET[::-1]}")
    assert proc.returncode == 0, proc.stderr


def test_env_example_placeholders_are_the_ones_production_refuses():
    text = (ROOT / ".env.example").read_text()
    for name in ("SECRET_KEY", "CRON_SECRET"):
        values = [line.split("=", 1)[1] for line in text.splitlines() if line.lstrip("# ").startswith(f"{name}=")]
        assert values and all(value.startswith("change-me") for value in values), name


def test_the_slot_option_takes_that_slot_and_force_runs_without_one():
    slot = "2026-12-02T10:05:00+00:00"
    call_command("watchdog", "--trigger=cron", f"--slot={slot}", stdout=StringIO())
    out = StringIO()
    call_command("watchdog", "--trigger=cron", f"--slot={slot}", stdout=out)
    assert "slot_done" in out.getvalue()
    call_command("watchdog", "--trigger=cron", f"--slot={slot}", "--force", stdout=StringIO())
    runs = JobRun.objects.filter(job__name="watchdog").order_by("pk")
    assert [(r.status, r.planned_at is not None) for r in runs] == [
        ("succeeded", True),
        ("skipped", True),
        ("succeeded", False),
    ]


def test_a_slot_without_an_offset_is_refused_by_name():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="has no UTC offset"):
        call_command("watchdog", "--slot=2026-12-02T10:05", stdout=StringIO())
