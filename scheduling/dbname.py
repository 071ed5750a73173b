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


@contextmanager
def application_name(job: str) -> Iterator[None]:
    previous = getattr(_current, "name", None)
    _current.name = f"cron:{job}"
    if connection.connection is not None:
        _apply(connection, _current.name)
    try:
        yield
    finally:
        _current.name = previous
        if connection.connection is not None and connection.vendor == "postgresql":
            try:
                _apply(connection, previous or "django")
            except DatabaseError:  # a cosmetic reset must not mask how the run ended
                pass
