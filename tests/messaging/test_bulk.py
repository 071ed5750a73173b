"""schedule_messages(): the bulk enqueue shared by campaigns, weekly summaries and usage alerts.

These tests run on PostgreSQL (the suite's database); the last one runs the others again on
SQLite in a subprocess, since the demo runs there and the INSERT is hand-written.
"""

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.bulk import MessageSpec, schedule_messages
from messaging.models import ScheduledMessage, Status
from messaging.services import SMS_BODY_MAX_CHARS, schedule_message
from tests.messaging.factories import make_client, make_lead
from tests.sqlite_rerun import postgresql_only, rerun_on_sqlite

pytestmark = pytest.mark.django_db


def sms_spec(n: int, **fields) -> MessageSpec:
    fields.setdefault("idempotency_key", f"bulk-test:{n}")
    fields.setdefault("body", f"Hello {n}")
    return MessageSpec(channel="sms", to=f"(415) 555-{n:04d}", **fields)


def test_queues_each_spec_as_schedule_message_would():
    client = make_client()
    lead = make_lead(client)
    send_at = timezone.now() + timedelta(hours=2)
    specs = [
        sms_spec(1, client=client, lead=lead, send_at=send_at, max_attempts=2),
        MessageSpec(channel="email", to="Owner@Example.COM", subject="Week", body="text", html="<p>text</p>"),
    ]
    result = schedule_messages(specs, source="campaign")
    assert [m.to for m in result.created] == ["+14155550001", "owner@example.com"]
    assert result.errors == {} and result.existing_keys == set()
    stored = ScheduledMessage.objects.get(idempotency_key="bulk-test:1")
    assert stored.pk == result.created[0].pk
    assert (stored.client, stored.lead, stored.send_at, stored.next_attempt_at) == (client, lead, send_at, send_at)
    assert (stored.status, stored.max_attempts, stored.source, stored.attempts) == (Status.PENDING, 2, "campaign", 0)
    email = ScheduledMessage.objects.get(pk=result.created[1].pk)
    assert (email.subject, email.html, email.idempotency_key, email.max_attempts) == ("Week", "<p>text</p>", None, 5)
    assert email.send_at <= timezone.now()


def test_every_column_is_what_schedule_message_stores():
    """The bulk INSERT sets a few columns per row and the rest once per call: row for row,
    each column holds what schedule_message() stores for the same message."""
    client = make_client()
    lead = make_lead(client)
    send_at = timezone.now() + timedelta(hours=1)
    fields = dict(client=client, lead=lead, send_at=send_at, max_attempts=3, body="Hi", subject="S")
    one, _ = schedule_message(channel="sms", to="(415) 555-0007", idempotency_key="one:7", source="campaign", **fields)
    bulk = schedule_messages([sms_spec(7, idempotency_key="bulk:7", **fields)], source="campaign").created[0]
    skip = {"id", "idempotency_key", "created_at", "updated_at"}
    columns = [f.attname for f in ScheduledMessage._meta.concrete_fields if f.attname not in skip]
    stored = ScheduledMessage.objects.in_bulk([one.pk, bulk.pk])
    assert [getattr(stored[bulk.pk], c) for c in columns] == [getattr(stored[one.pk], c) for c in columns]
    # The instance handed back is the stored row, including the columns set once per call.
    assert [getattr(bulk, c) for c in columns] == [getattr(stored[bulk.pk], c) for c in columns]
    assert abs(stored[bulk.pk].created_at - stored[one.pk].created_at) < timedelta(minutes=1)


def test_normalized_recipients_in_e164_form_are_taken_as_they_are_and_others_are_checked():
    specs = [
        MessageSpec(channel="sms", to="+14155550001", body="stored form", idempotency_key="n:1"),
        MessageSpec(channel="sms", to="(415) 555-0002", body="not in stored form", idempotency_key="n:2"),
        MessageSpec(channel="sms", to="+1 415 not a number", body="refused", idempotency_key="n:3"),
        MessageSpec(channel="email", to="Owner@Example.COM", subject="S", body="address", idempotency_key="n:4"),
        MessageSpec(channel="email", to="not an address", subject="S", body="refused", idempotency_key="n:5"),
    ]
    result = schedule_messages(specs, source="campaign", recipients_normalized=True)
    assert [m.to for m in result.created] == ["+14155550001", "+14155550002", "owner@example.com"]
    assert sorted(result.errors) == [2, 4]
    assert "phone number" in result.errors[2]["to"] and "email" in result.errors[4]["to"]


def test_created_ids_name_each_specs_message_without_building_instances():
    specs = [sms_spec(n) for n in range(3)]
    result = schedule_messages(specs, source="campaign")
    assert "created_by_index" not in vars(result)  # instances are built on first use only
    stored = dict(ScheduledMessage.objects.values_list("idempotency_key", "pk"))
    assert {i: stored[f"bulk-test:{i}"] for i in range(3)} == result.created_ids


def test_a_second_run_creates_nothing():
    specs = [sms_spec(n) for n in range(5)]
    first = schedule_messages(specs, source="campaign")
    again = schedule_messages(specs, source="campaign")
    assert len(first.created) == 5
    assert again.created == [] and again.existing_keys == {f"bulk-test:{n}" for n in range(5)}
    assert ScheduledMessage.objects.count() == 5


def test_a_key_queued_by_schedule_message_is_left_alone():
    queued, _ = schedule_message(channel="sms", to="+14155550002", body="first", idempotency_key="bulk-test:2")
    result = schedule_messages([sms_spec(1), sms_spec(2), sms_spec(3)], source="campaign")
    assert sorted(m.idempotency_key for m in result.created) == ["bulk-test:1", "bulk-test:3"]
    assert result.existing_keys == {"bulk-test:2"}
    queued.refresh_from_db()
    assert queued.body == "first" and queued.source == "api"


def test_invalid_specs_are_reported_by_index_and_field_and_the_others_queued():
    specs = [
        sms_spec(0),
        MessageSpec(channel="sms", to="not a number", body="Hi", idempotency_key="bad-to"),
        sms_spec(2, body="x" * (SMS_BODY_MAX_CHARS + 1)),
        MessageSpec(channel="email", to="a@example.com", body="", idempotency_key="bad-email"),
        MessageSpec(channel="fax", to="x", body="Hi"),
        sms_spec(5, send_at=timezone.now().replace(tzinfo=None)),
    ]
    result = schedule_messages(specs, source="campaign")
    assert [m.idempotency_key for m in result.created] == ["bulk-test:0"]
    assert sorted(result.errors) == [1, 2, 3, 4, 5]
    assert set(result.errors[1]) == {"to"}
    assert set(result.errors[2]) == {"body"} and "1,600" in result.errors[2]["body"]
    assert set(result.errors[3]) == {"body", "subject"}
    assert set(result.errors[4]) == {"channel"}
    assert set(result.errors[5]) == {"send_at"}
    assert ScheduledMessage.objects.count() == 1


def test_a_key_repeated_in_the_specs_is_queued_once_the_first_spec_winning():
    result = schedule_messages([sms_spec(1, body="first"), sms_spec(1, body="second")], source="campaign")
    assert [m.body for m in result.created] == ["first"]
    assert result.existing_keys == {"bulk-test:1"}
    assert ScheduledMessage.objects.get().body == "first"


def test_messages_without_a_key_are_always_queued():
    specs = [MessageSpec(channel="sms", to="+14155550100", body="no key")] * 3
    assert len(schedule_messages(specs, source="api").created) == 3
    assert len(schedule_messages(specs, source="api").created) == 3


def test_created_keeps_the_order_of_the_specs():
    keys = ["k:9", "k:1", "k:5", "k:3"]
    specs = [sms_spec(n, idempotency_key=key) for n, key in enumerate(keys)]
    result = schedule_messages(specs, source="campaign", batch_size=3)
    assert [m.idempotency_key for m in result.created] == keys


def test_created_by_index_names_the_spec_of_each_message():
    queued, _ = schedule_message(channel="sms", to="+14155550001", body="first", idempotency_key="bulk-test:1")
    specs = [sms_spec(0), sms_spec(1), MessageSpec(channel="sms", to="nope", body="x"), sms_spec(3)]
    result = schedule_messages(specs, source="campaign")
    assert {i: m.idempotency_key for i, m in result.created_by_index.items()} == {0: "bulk-test:0", 3: "bulk-test:3"}


@postgresql_only  # SQLite's batches are smaller (see the last test)
def test_one_insert_per_batch_whatever_the_number_of_messages():
    with CaptureQueriesContext(connection) as few:
        schedule_messages([sms_spec(n) for n in range(10)], source="campaign", batch_size=100)
    with CaptureQueriesContext(connection) as many:
        schedule_messages([sms_spec(n) for n in range(100, 190)], source="campaign", batch_size=100)
    with CaptureQueriesContext(connection) as batched:
        schedule_messages([sms_spec(n) for n in range(200, 450)], source="campaign", batch_size=100)

    def inserts(queries):
        return [q["sql"] for q in queries.captured_queries if "ON CONFLICT" in q["sql"]]

    assert len(inserts(few)) == len(inserts(many)) == 1
    assert len(inserts(batched)) == 3
    # Per batch, on PostgreSQL, also the staging table (created when missing, in the batch's
    # transaction) and the transaction itself; COPY is not a query Django sees.
    assert len(few) == len(many) and len(batched) == 3 * len(few)
    assert ScheduledMessage.objects.count() == 350


def test_nothing_valid_means_no_query():
    with CaptureQueriesContext(connection) as queries:
        result = schedule_messages([MessageSpec(channel="sms", to="nope", body="x")], source="campaign")
    assert len(queries) == 0 and list(result.errors) == [0]


def test_logs_one_line_per_batch_without_bodies(caplog):
    specs = [sms_spec(n, body=f"secret body {n}") for n in range(5)]
    with caplog.at_level(logging.INFO, logger="messaging.enqueue"):
        schedule_messages(specs, source="campaign", batch_size=2)
    lines = [r for r in caplog.records if r.getMessage() == "messages_bulk_scheduled"]
    assert [(r.batch, r.rows, r.inserted, r.source) for r in lines] == [
        (0, 2, 2, "campaign"),
        (1, 2, 2, "campaign"),
        (2, 1, 1, "campaign"),
    ]
    assert not any("secret body" in str(r.__dict__) for r in caplog.records)


def _wait_until_blocked_on_a_lock(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # Inside a transaction the activity view is a snapshot: take a fresh one each time.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND (query LIKE 'INSERT%%' OR query LIKE 'WITH staged%%')"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second INSERT never waited for the first")


@pytest.mark.django_db(transaction=True)
@postgresql_only  # row locks
def test_two_callers_with_overlapping_keys_at_once_queue_each_key_once():
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            outcome["result"] = schedule_messages([sms_spec(n) for n in range(5, 15)], source="campaign")
        except Exception as exc:  # reported to the test thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    with transaction.atomic():
        first = schedule_messages([sms_spec(n) for n in range(10)], source="campaign")
        thread = threading.Thread(target=second)
        thread.start()
        _wait_until_blocked_on_a_lock()
    thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert len(first.created) == 10
    assert sorted(m.idempotency_key for m in outcome["result"].created) == sorted(
        f"bulk-test:{n}" for n in range(10, 15)
    )
    assert outcome["result"].existing_keys == {f"bulk-test:{n}" for n in range(5, 10)}
    assert ScheduledMessage.objects.count() == 15


@postgresql_only
def test_the_same_tests_pass_on_sqlite(tmp_path):
    """The hand-written INSERT on the demo's database: this file again, on SQLite."""
    output = rerun_on_sqlite(__file__, tmp_path)
    assert " passed, 3 skipped" in output  # this test, the row-lock one and the batch count


def test_more_messages_than_one_sqlite_statement_takes_are_all_queued():
    # SQLite's batches are bounded by Django's 999-parameter limit; PostgreSQL's are not.
    result = schedule_messages([sms_spec(n) for n in range(120)], source="campaign")
    assert len(result.created) == ScheduledMessage.objects.count() == 120
