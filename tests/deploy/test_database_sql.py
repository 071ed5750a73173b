"""deploy/database.sql, run for real by psql against the test server: role, database, re-run."""

import os
import subprocess
import uuid

import psycopg
import pytest
from django.db import connection

from tests.conftest import ROOT, database_url
from tests.deploy.installer import tool

SQL = ROOT / "deploy" / "database.sql"


def psql(role: str, db: str, password: str | None, from_file: bool = False) -> subprocess.CompletedProcess:
    """As the installer runs it (the SQL on stdin), or as the docs do for a remote database (-f)."""
    env = {k: v for k, v in os.environ.items() if k != "DB_PASSWORD"}
    if password is not None:
        env["DB_PASSWORD"] = password
    command = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"role={role}", "-v", f"db={db}"]
    if from_file:
        command += ["-f", str(SQL)]
    with open(SQL if not from_file else os.devnull) as stdin:
        return subprocess.run([*command, database_url()], stdin=stdin, env=env, capture_output=True, text=True)


@pytest.fixture
def names(django_db_blocker):
    if not tool("psql"):
        pytest.skip("psql is not installed (Debian package postgresql-client)")
    suffix = uuid.uuid4().hex[:8]
    role, db = f"deploy_role_{suffix}", f"deploy_db_{suffix}"
    yield role, db
    with django_db_blocker.unblock(), psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def facts(role: str, db: str) -> tuple:
    with psycopg.connect(database_url()) as admin:
        owner = admin.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [db]).fetchone()
        secret = admin.execute("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()
    return owner, secret


@pytest.mark.django_db
def test_the_sql_creates_the_role_and_database_and_a_rerun_updates_only_the_password(names, django_db_blocker):
    role, db = names
    with django_db_blocker.unblock():
        first = psql(role, db, "first-password-of-the-env-file", from_file=True)
        assert first.returncode == 0, first.stderr
        owner, (can_login, password) = facts(role, db)
        assert owner == (role,) and can_login and password.startswith("SCRAM-SHA-256$")
        s = connection.settings_dict
        url = f"postgres://{role}:first-password-of-the-env-file@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{db}"
        with psycopg.connect(url) as app:
            assert app.execute("SELECT current_user, current_database()").fetchone() == (role, db)
        again = psql(role, db, "second-password")
        assert again.returncode == 0, again.stderr
        owner_again, (_, password_again) = facts(role, db)
        assert owner_again == (role,) and password_again != password


@pytest.mark.django_db
def test_the_sql_refuses_to_run_without_a_password(names, django_db_blocker):
    role, db = names
    with django_db_blocker.unblock():
        result = psql(role, db, None)
        assert result.returncode != 0 and "DB_PASSWORD is not set" in result.stderr
        assert facts(role, db) == (None, None)
