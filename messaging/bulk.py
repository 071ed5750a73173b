"""Queueing many messages at once: `schedule_messages()`, the bulk form of `schedule_message()`.

Same validation (validate_message: same limits, same normalised recipient) and the same
idempotency keys, but one query per batch instead of 3-5 per message: `INSERT ... SELECT *
FROM unnest(<an array per column>) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id` on
PostgreSQL, `INSERT ... VALUES (...), (...) ON CONFLICT ...` on SQLite.

Why a hand-written INSERT and not bulk_create: `bulk_create(ignore_conflicts=True)` returns
no ids on PostgreSQL, so the caller cannot tell what it created; `update_conflicts=True`
returns ids but rewrites every row that already exists (a new row version, a row lock on a
message a worker may be sending) and still does not say which rows were new. DO NOTHING
RETURNING gives exactly the rows this call inserted, on PostgreSQL and on SQLite (3.35+), and
touches nothing else. The ids are UUIDs made here, so the returned ids name the specs.

Unlike schedule_message(), an invalid spec is not raised: each one is reported under its
index in `BulkResult.errors` ({index: {field: reason}}) and the valid ones are queued, since
a campaign or a job wants the others to go. A spec is validated even when its key is
already queued (schedule_message() returns the queued message first): a bulk caller learns
about bad data the same way on every run.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from messaging.models import Client, Lead, ScheduledMessage
from messaging.services import validate_message

logger = logging.getLogger("messaging.enqueue")

# Rows per INSERT: a statement of a few MB at the largest bodies, and a transaction short enough
# not to hold other writers of the same keys for long. On SQLite, Django's limit of 999
# parameters (what old SQLite builds allow; a row has about 26) makes batches of about 38 rows.
BATCH_SIZE = 500


@dataclass(frozen=True)
class MessageSpec:
    """One message to queue; the arguments of schedule_message() but `source`."""

    channel: str
    to: str
    body: str
    subject: str = ""
    html: str = ""
    send_at: datetime | None = None
    client: Client | None = None
    lead: Lead | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None

    def as_kwargs(self) -> dict[str, object]:
        """schedule_message()'s keyword arguments for this spec (the models as they are, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class BulkResult:
    created: list[ScheduledMessage] = field(default_factory=list)  # in the order of the specs
    existing_keys: set[str] = field(default_factory=set)  # keys already queued (or repeated in specs)
    errors: dict[int, dict[str, str]] = field(default_factory=dict)  # spec index -> {field: reason}
    created_by_index: dict[int, ScheduledMessage] = field(default_factory=dict)  # spec index -> its message

    @property
    def created_keys(self) -> set[str]:
        return {m.idempotency_key for m in self.created if m.idempotency_key}


def describe_errors(errors: dict[str, str]) -> str:
    """One line naming each wrong field, for a run's error list: "to: Enter a valid email address." """
    return "; ".join(f"{name}: {reason}" for name, reason in errors.items())


def _build(spec: MessageSpec, source: str, now: datetime) -> ScheduledMessage:
    """The message a valid spec queues; ValidationError naming each wrong field otherwise."""
    recipient = validate_message(
        channel=spec.channel,
        to=spec.to,
        body=spec.body,
        subject=spec.subject,
        html=spec.html,
        send_at=spec.send_at,
        now=now,
    )
    when = spec.send_at or now
    return ScheduledMessage(
        id=uuid.uuid4(),
        channel=spec.channel,
        to=recipient,
        body=spec.body,
        subject=spec.subject or "",
        html=spec.html or "",
        send_at=when,
        next_attempt_at=when,
        client=spec.client,
        lead=spec.lead,
        idempotency_key=spec.idempotency_key or None,
        source=source,
        max_attempts=spec.max_attempts or settings.DELIVERY_MAX_ATTEMPTS,
    )


def _field_errors(exc: ValidationError) -> dict[str, str]:
    if hasattr(exc, "error_dict"):
        return {name: " ".join(ValidationError(errors).messages) for name, errors in exc.error_dict.items()}
    return {"__all__": " ".join(exc.messages)}


def _insert(messages: Sequence[ScheduledMessage]) -> set[uuid.UUID]:
    """INSERT the messages, skipping any whose key is taken; the ids actually inserted."""
    model_fields = ScheduledMessage._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in model_fields)
    # pre_save + get_db_prep_save, as Django's own INSERT does: auto_now, UUIDs and datetimes
    # in each backend's form (SQLite stores UUIDs as 32 hex characters).
    rows = [[f.get_db_prep_save(f.pre_save(m, add=True), connection) for f in model_fields] for m in messages]
    if connection.vendor == "postgresql":
        # One typed array per column: the statement's text stays the same whatever the batch
        # size (a VALUES list of 13,000 placeholders costs psycopg more to parse than to send).
        arrays = ", ".join(f"%s::{f.cast_db_type(connection)}[]" for f in model_fields)
        source, params = f"SELECT * FROM unnest({arrays})", [list(column) for column in zip(*rows, strict=True)]
    else:
        row = "(" + ", ".join(["%s"] * len(model_fields)) + ")"
        source, params = f"VALUES {', '.join([row] * len(rows))}", [value for row in rows for value in row]
    sql = (
        f"INSERT INTO {quote(ScheduledMessage._meta.db_table)} ({columns}) {source} "
        f"ON CONFLICT ({quote('idempotency_key')}) DO NOTHING RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {uuid.UUID(str(value)) for (value,) in cursor.fetchall()}


def schedule_messages(
    specs: Sequence[MessageSpec], *, source: str, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> BulkResult:
    """Queue every valid spec whose idempotency key is not queued yet; see the module doc.

    One INSERT per `batch_size` valid specs (fewer on SQLite) and no other query. Each
    INSERT is atomic on its own; a caller that needs all or nothing (or the messages
    together with rows of its own) wraps the call in transaction.atomic(). A key repeated within `specs` is queued once
    (the first spec wins) and reported in `existing_keys`. Rows go in in key order, so two
    callers inserting overlapping keys at once wait for each other instead of deadlocking.
    """
    now = now or timezone.now()
    result = BulkResult()
    valid: list[tuple[int, ScheduledMessage]] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        try:
            message = _build(spec, source, now)
        except ValidationError as exc:
            result.errors[index] = _field_errors(exc)
            continue
        key = message.idempotency_key
        if key is not None:
            if key in seen:
                result.existing_keys.add(key)
                continue
            seen.add(key)
        valid.append((index, message))
    inserted: set[uuid.UUID] = set()
    ordered = sorted(valid, key=lambda item: (item[1].idempotency_key is None, item[1].idempotency_key or ""))
    fits = connection.ops.bulk_batch_size(ScheduledMessage._meta.concrete_fields, [m for _, m in ordered])
    batch_size = max(1, min(batch_size, fits))
    for number, start in enumerate(range(0, len(ordered), batch_size)):
        batch = [message for _, message in ordered[start : start + batch_size]]
        batch_inserted = _insert(batch)
        inserted |= batch_inserted
        logger.info(
            "messages_bulk_scheduled",
            extra={
                "source": source,
                "batch": number,
                "rows": len(batch),
                "inserted": len(batch_inserted),
                "existing": len(batch) - len(batch_inserted),
            },
        )
    for index, message in valid:
        if message.pk in inserted:
            message._state.adding = False
            message._state.db = connection.alias
            result.created.append(message)
            result.created_by_index[index] = message
        elif message.idempotency_key is not None:
            result.existing_keys.add(message.idempotency_key)
    if result.errors:
        logger.warning(
            "messages_bulk_invalid",
            extra={"source": source, "invalid": len(result.errors), "indexes": sorted(result.errors)[:20]},
        )
    return result
