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

import psycopg
from django.conf import settings
from django.db import connection


class Lock(Protocol):
    def release(self) -> None: ...


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"cron-job:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _AdvisoryLock:
    def __init__(self, conn: psycopg.Connection, key: int) -> None:
        self._conn = conn
        self._key = key

    def release(self) -> None:
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
        finally:
            self._conn.close()


class _FileLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops the flock


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _open_lock_connection(name: str) -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params["application_name"] = f"cron-lock:{name}"[:63]
    return psycopg.connect(**params, autocommit=True)


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
    """Whether some live process holds the job's lock (used to spot abandoned runs)."""
    lock = acquire(name)
    if lock is None:
        return True
    lock.release()
    return False
