"""Settings for the test suite: the project's settings on PostgreSQL.

TEST_DATABASE_URL picks the server; pytest-django creates and drops `test_<name>` on it.
"""

import os

os.environ.setdefault(
    "DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
)
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("CRON_SECRET", "test-secret-one,test-secret-two")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CRON_LOCK_DIR = os.environ.get("CRON_LOCK_DIR", str(BASE_DIR / "var" / "test-locks"))  # noqa: F405
