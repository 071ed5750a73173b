import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.scheduling import sample_jobs

# The module registers its jobs on import (for subprocesses); tests opt in via the fixture.
sample_jobs.unregister_all()

pytest_plugins = ["tests.fakes.plugin"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quiet_settings(settings):
    # Alerts land in django.core.mail.outbox; the guard never trips unless a test asks.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CRON_MIN_FREE_MB = 0
    settings.CRON_MAX_LOAD = 10_000.0
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _close_rate_limiter_connection(django_db_setup):
    """The shared rate limiter keeps a connection of its own; close it before pytest-django
    drops the test database (which refuses while a session is connected)."""
    yield
    from messaging.delivery import shared_bucket

    shared_bucket.database.close()


@pytest.fixture
def sample_jobs_registered():
    sample_jobs.register_all()
    yield sample_jobs
    sample_jobs.unregister_all()


def database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def manage_py(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in a process of its own (in `cwd`), its output captured as text."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a real `manage.py` process on the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url(),
            "DEBUG": "true",
            "CRON_SECRET": "test-secret-one",
            "CRON_EXTRA_JOB_MODULES": "tests.scheduling.sample_jobs",
            "CRON_MIN_FREE_MB": "0",
            "CRON_MAX_LOAD": "10000",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            **extra,
        }
    )
    return env


def start_manage(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
