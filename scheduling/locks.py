"""One run of a job at a time, across processes and hosts.

On PostgreSQL a session advisory lock, held on a connection of its own: it covers every host
that shares the database, dies with a crashed process (the server ends the session), and is
untouched by Django closing or recycling its own connections during the job. On SQLite (the
demo) an flock(2) on a file does the same for one host.
"""

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

import environ
import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection


class Lock(Protocol):
    def release(self) -> None: ...

    def still_held(self) -> bool: ...


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"cron-job:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _AdvisoryLock:
    def __init__(self, conn: psycopg.Connection, key: int) -> None:
        self._conn = conn
        self._key = key

    def still_held(self) -> bool:
        """False once the lock's session is gone (a failover, a dropped connection): then
        another host may take the lock, and this run must stop taking work."""
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return not self._conn.closed

    def release(self) -> None:
        # Unlock explicitly before closing: the server ends a closed session asynchronously,
        # so the lock could still show as held (and a run starting right after this one
        # would skip as "already running"). Neither step may hide how the run ended.
        try:
            self._conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass
        try:
            self._conn.close()
        except psycopg.Error:
            pass


class _FileLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def still_held(self) -> bool:
        return True  # an flock lives as long as this process holds the descriptor

    def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops the flock


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _direct_params(url: str) -> dict:
    """psycopg parameters from CRON_LOCK_DATABASE_URL (a direct connection past a pooler)."""
    config = environ.Env.db_url_config(url)
    params = {
        "dbname": config.get("NAME"),
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        **config.get("OPTIONS", {}),
    }
    return {key: value for key, value in params.items() if value not in (None, "")}


def direct_connection(application_name: str, *, keepalives: bool = False) -> psycopg.Connection:
    """An autocommit connection of its own, for what must stay on one server session: the job
    lock (a session advisory lock, held for the whole run) and the send allowances (prepared
    statements). Behind PgBouncer in transaction mode each statement may land on another server
    session, so these take CRON_LOCK_DATABASE_URL, a direct connection past the pooler, when
    it is set; DATABASE_URL's parameters otherwise."""
    direct = bool(settings.CRON_LOCK_DATABASE_URL)
    params = _direct_params(settings.CRON_LOCK_DATABASE_URL) if direct else connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params["application_name"] = application_name[:63]
    if keepalives:
        # An idle connection: TCP keepalives stop a NAT or firewall from silently dropping it.
        params.setdefault("keepalives", 1)
        params.setdefault("keepalives_idle", 30)
        params.setdefault("keepalives_interval", 10)
        params.setdefault("keepalives_count", 3)
    conn = psycopg.connect(**params, autocommit=True)
    if direct:
        try:
            _check_same_database(conn)
        except Exception:
            conn.close()
            raise
    return conn


def _open_lock_connection(name: str) -> psycopg.Connection:
    # The lock's connection sits idle for the whole run (a dropped one would free the lock
    # under a live run): keepalives on.
    return direct_connection(f"cron-lock:{name}", keepalives=True)


_checked_direct: set[str] = set()


def _check_same_database(conn: psycopg.Connection) -> None:
    """The direct connection must reach the database the jobs use: is_held() reads pg_locks
    there, so locks taken in another database would make live runs look abandoned."""
    if settings.CRON_LOCK_DATABASE_URL in _checked_direct:
        return
    lock_db = conn.execute("SELECT current_database()").fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        jobs_db = cursor.fetchone()[0]
    if lock_db != jobs_db:
        raise ImproperlyConfigured(
            f"CRON_LOCK_DATABASE_URL reaches database {lock_db!r}, DATABASE_URL {jobs_db!r}: they must be the same"
        )
    _checked_direct.add(settings.CRON_LOCK_DATABASE_URL)


def acquire(name: str) -> Lock | None:
    """Take the job's lock without waiting; None when another run holds it."""
    if _is_postgres():
        conn = _open_lock_connection(name)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [_key(name)]).fetchone()[0]
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return _AdvisoryLock(conn, _key(name))
    directory = Path(settings.CRON_LOCK_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return _FileLock(fd)


def is_held(name: str) -> bool:
    """Whether some live process holds the job's lock (used to spot abandoned runs).

    On PostgreSQL this reads pg_locks rather than taking the lock for a moment, which could
    make a run starting in that instant skip as already running.
    """
    if _is_postgres():
        key = _key(name) & 0xFFFFFFFFFFFFFFFF  # pg_locks shows the bigint as two unsigned halves
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT EXISTS (
                    SELECT 1 FROM pg_locks
                    WHERE locktype = 'advisory' AND granted AND objsubid = 1
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND classid::bigint = %s AND objid::bigint = %s
                )
                """,
                [key >> 32, key & 0xFFFFFFFF],
            )
            return cursor.fetchone()[0]
    lock = acquire(name)
    if lock is None:
        return True
    lock.release()
    return False
