"""Name database connections after the running job, so pg_stat_activity shows who holds what.

The name is kept per thread and re-applied to every connection Django opens while the job
runs (a job's loop may close and reopen its connection between units of work).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection
from django.db.backends.signals import connection_created

_current = threading.local()


def _apply(conn, name: str) -> None:
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [name[:63]])


def _on_connection_created(sender, connection, **kwargs) -> None:
    name = getattr(_current, "name", None)
    if name:
        _apply(connection, name)


connection_created.connect(_on_connection_created, dispatch_uid="scheduling.dbname")


def current() -> str | None:
    """The name this thread's connections carry (None outside a job), to hand to a thread the
    job starts: see named()."""
    return getattr(_current, "name", None)


@contextmanager
def application_name(job: str) -> Iterator[None]:
    with named(f"cron:{job}"):
        yield


@contextmanager
def named(name: str | None) -> Iterator[None]:
    """This thread's connections named `name` while the block runs (another thread's current())."""
    previous = getattr(_current, "name", None)
    _current.name = name
    if name and connection.connection is not None:
        _apply(connection, name)
    try:
        yield
    finally:
        _current.name = previous
        if connection.connection is not None and connection.vendor == "postgresql":
            try:
                _apply(connection, previous or "django")
            except DatabaseError:  # a cosmetic reset must not mask how the run ended
                pass
