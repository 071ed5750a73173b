"""Bulk enqueue takes idempotency keys in one order whatever the database's collation.

Python splits batches in code-point order, and each batch's INSERT orders its rows by key: in
the database's collation that order could disagree (en_US or ICU, usual production defaults,
put "a" before "B"), so two callers holding their batches in one transaction would take the
same keys in opposite orders and deadlock. The staging table is created here with an ICU
collation on the key, standing in for such a database (the test database is C.UTF-8)."""

import threading

import pytest
from django.db import connection, connections, transaction

import messaging.bulk as bulk
from messaging.bulk import MessageSpec, schedule_messages
from tests.messaging.test_bulk import _wait_until_blocked_on_a_lock
from tests.sqlite_rerun import postgresql_only


def _stage_with_icu_collation():
    sql = bulk._Insert(bulk._common_values("x")).create
    sql = sql.replace('"idempotency_key" varchar(255)', '"idempotency_key" varchar(255) COLLATE "en-US-x-icu"')
    assert "en-US-x-icu" in sql
    with connection.cursor() as cursor:
        cursor.execute(sql)


def spec(key):
    return MessageSpec(channel="sms", to="+14155550001", body="x", idempotency_key=key)


@pytest.mark.django_db(transaction=True)
@postgresql_only
def test_two_callers_with_the_same_keys_never_deadlock_under_a_non_c_collation(monkeypatch):
    outcome = {}

    def second():
        try:
            _stage_with_icu_collation()
            outcome["result"] = schedule_messages([spec("a"), spec("B")], source="api")  # one batch: a, B (ICU)
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()

    real = bulk._Insert.run
    calls = []

    def run(self, rows):
        got = real(self, rows)
        calls.append(rows)
        if len(calls) == 1:  # after batch ["B"]: let the other caller start, and block on B
            thread.start()
            _wait_until_blocked_on_a_lock()
        return got

    monkeypatch.setattr(bulk._Insert, "run", run)
    thread = threading.Thread(target=second)
    first_error = None
    try:
        with transaction.atomic():
            _stage_with_icu_collation()
            schedule_messages([spec("a"), spec("B")], source="api", batch_size=1)  # batches ["B"], ["a"] (Python)
    except Exception as exc:
        first_error = exc
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert (first_error, outcome.get("error")) == (None, None)
    assert outcome["result"].created_ids == {}  # the first caller queued both keys
