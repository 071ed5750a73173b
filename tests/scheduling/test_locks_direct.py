"""CRON_LOCK_DATABASE_URL: a direct connection past a transaction-mode pooler, for the job lock and send allowances."""

import psycopg
import pytest

from scheduling import locks
from tests.conftest import database_url

pytestmark = pytest.mark.django_db


def test_the_lock_uses_the_direct_url_when_one_is_set(settings):
    settings.CRON_LOCK_DATABASE_URL = database_url().replace("127.0.0.1", "localhost")
    lock = locks.acquire("test-direct")
    try:
        assert lock is not None and locks.is_held("test-direct")
        assert locks.acquire("test-direct") is None  # the same server, the same lock
    finally:
        lock.release()
    assert not locks.is_held("test-direct")


def test_a_wrong_direct_url_is_an_error_not_a_lock_elsewhere(settings):
    host_port = database_url().split("@", 1)[1].split("/", 1)[0]
    settings.CRON_LOCK_DATABASE_URL = database_url().replace(host_port, "127.0.0.1:1")
    with pytest.raises(psycopg.OperationalError):
        locks.acquire("test-direct")


def test_a_direct_url_to_another_database_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.CRON_LOCK_DATABASE_URL = database_url().rsplit("/", 1)[0] + "/postgres"
    with pytest.raises(ImproperlyConfigured, match="must be the same"):
        locks.acquire("test-direct")


@pytest.fixture
def fresh_limiter_connection():
    """The send allowances' connection is opened once per process: open it anew for the test."""
    from messaging.delivery import shared_bucket

    shared_bucket.database.close()
    yield shared_bucket
    shared_bucket.database.close()


def test_the_send_allowances_take_the_direct_url_too(settings, fresh_limiter_connection):
    """Their prepared statements need one server session, as the lock does."""
    settings.CRON_LOCK_DATABASE_URL = database_url().replace("127.0.0.1", "localhost")
    bucket = fresh_limiter_connection.SharedBucket("test-direct", 100)
    assert bucket.acquire()
    fresh_limiter_connection.database.execute("DELETE FROM messaging_ratebucket WHERE name = 'test-direct'", {})
    fresh_limiter_connection.database.close()
    host_port = database_url().split("@", 1)[1].split("/", 1)[0]
    settings.CRON_LOCK_DATABASE_URL = database_url().replace(host_port, "127.0.0.1:1")
    with pytest.raises(psycopg.OperationalError):
        fresh_limiter_connection.SharedBucket("test-direct", 100).acquire()


def test_send_allowances_on_a_direct_url_to_another_database_are_refused(settings, fresh_limiter_connection):
    from django.core.exceptions import ImproperlyConfigured

    settings.CRON_LOCK_DATABASE_URL = database_url().rsplit("/", 1)[0] + "/postgres"
    with pytest.raises(ImproperlyConfigured, match="must be the same"):
        fresh_limiter_connection.SharedBucket("test-direct", 100).acquire()
