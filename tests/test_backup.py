"""The commands of docs/operations.md that a test can run: backup and restore, API tokens."""

import shutil
import subprocess
from io import StringIO

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from scheduling.services import sync_jobs
from tests.conftest import database_url
from tests.messaging.factories import sms

RESTORED = "backup_restore_check"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not (shutil.which("pg_dump") and shutil.which("pg_restore")), reason="pg_dump/pg_restore missing")
def test_pg_dump_and_pg_restore_bring_back_the_jobs_and_the_queue(tmp_path):
    sync_jobs()
    message = sms(body="kept across a restore")
    dump = tmp_path / "messaging_cron.dump"
    source = database_url()
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), source], check=True, timeout=120)
    server = source.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{RESTORED}"')
        admin.execute(f'CREATE DATABASE "{RESTORED}"')
    try:
        subprocess.run(["pg_restore", "--no-owner", "-d", f"{server}/{RESTORED}", str(dump)], check=True, timeout=120)
        with psycopg.connect(f"{server}/{RESTORED}") as restored:
            jobs = restored.execute("SELECT count(*) FROM scheduling_job").fetchone()[0]
            body = restored.execute(
                "SELECT body FROM messaging_scheduledmessage WHERE id = %s", [message.pk]
            ).fetchone()[0]
        assert jobs == len(sync_jobs()) and body == "kept across a restore"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{RESTORED}" WITH (FORCE)')


@pytest.mark.django_db
def test_drf_create_token_prints_the_key_and_r_replaces_it():
    get_user_model().objects.create_user("integration-bot", password="pw-for-tests", is_staff=True)
    out = StringIO()
    call_command("drf_create_token", "integration-bot", stdout=out)
    first = Token.objects.get(user__username="integration-bot").key
    assert first in out.getvalue()
    call_command("drf_create_token", "integration-bot", "-r", stdout=StringIO())
    assert Token.objects.get(user__username="integration-bot").key != first
