"""Set-based aggregate queries over windows of time, one query per metric family.

A window is (client id, label, start, end) in UTC: a client's local day (label = the date),
or a local week, or a month so far. Python computes each window's bounds from the client's
zone (zoneinfo, DST-correct, and a bad zone stays one client's problem); the database joins
every row to the window of its client that contains its timestamp and groups by window. So
each query covers all clients and all days at once, and the same SQL runs on PostgreSQL and
SQLite; only the way the window list is passed in (typed arrays on PostgreSQL, one JSON
parameter on SQLite) and the median (percentile_cont on PostgreSQL, Python on SQLite) differ.
"""

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import connection

from messaging.models import Call, Conversation, Lead, Message, ScheduledMessage

# The source messaging's agent check gives its escalations (messaging.automations.agent_check.SOURCE);
# a plain constant so analytics does not import a job module.
ESCALATION_SOURCE = "agent-stall"
# How far before a window the response query reads to learn whether a message continues a
# wait. A lead writing again after a longer silence starts a new wait even if the earlier
# message was never answered (the old one is no measure of today's responsiveness).
WAIT_LOOKBACK = timedelta(days=1)

SENT_STATUSES = ("sent", "delivered", "undelivered")
_SENT_IN = ", ".join(f"'{status}'" for status in SENT_STATUSES)

Key = tuple[int, date]  # (client id, window label)


@dataclass(frozen=True)
class Window:
    client_id: int
    label: date
    starts: datetime
    ends: datetime


def _vendor() -> str:
    if connection.vendor not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"analytics queries support PostgreSQL and SQLite, not {connection.vendor}")
    return connection.vendor


def _ts(value: datetime) -> datetime | str:
    # SQLite: the stored text form, so text comparison orders bounds and column values alike.
    if _vendor() == "sqlite":
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _windows_cte(windows: Sequence[Window], sets: Sequence[int] | None = None) -> tuple[str, list]:
    """The `w` CTE of the windows: (client_id, label, starts, ends), and with `sets` (one
    number per window) a leading set_no column, so windows of several sets that share a
    client and label stay apart."""
    numbered = sets is not None
    if _vendor() == "postgresql":
        # Typed arrays: no per-row casts in the join, and the planner sees how many windows there are.
        arrays = "%s::bigint[], %s::date[], %s::timestamptz[], %s::timestamptz[]"
        names = "client_id, label, starts, ends"
        if numbered:
            arrays, names = f"%s::int[], {arrays}", f"set_no, {names}"
        sql = f"w AS (SELECT * FROM unnest({arrays}) AS w({names}))"
        columns = [list(sets)] if numbered else []
        columns += [[w.client_id for w in windows], [w.label for w in windows]]
        return sql, [*columns, [w.starts for w in windows], [w.ends for w in windows]]
    rows = [[w.client_id, w.label.isoformat(), _ts(w.starts), _ts(w.ends)] for w in windows]
    extracted = "json_extract(value, '$[0]') AS client_id, json_extract(value, '$[1]') AS label, "
    extracted += "json_extract(value, '$[2]') AS starts, json_extract(value, '$[3]') AS ends"
    if numbered:
        rows = [[*row, number] for row, number in zip(rows, sets, strict=True)]
        extracted += ", json_extract(value, '$[4]') AS set_no"
    sql = f"w AS (SELECT {extracted} FROM json_each(%s))"
    return sql, [json.dumps(rows)]


def _span(windows: Sequence[Window]) -> tuple[datetime, datetime]:
    return min(w.starts for w in windows), max(w.ends for w in windows)


def _label(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _run(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _counts(windows: Sequence[Window], events: str, select: str, fields: Sequence[str], params: list) -> dict:
    """Join `events` (a SELECT of client_id, at, ...) to the windows and count per window.
    `events` takes `params`, then lo and hi, the windows' overall span: bounding each table by
    it first keeps the join to the rows that can fall in some window."""
    if not windows:
        return {}
    cte, cte_params = _windows_cte(windows)
    lo, hi = (_ts(v) for v in _span(windows))
    sql = (
        f"WITH {cte}, e AS ({events}) SELECT w.client_id, w.label, {select} FROM w "
        "JOIN e ON e.client_id = w.client_id AND e.at >= w.starts AND e.at < w.ends GROUP BY w.client_id, w.label"
    )
    return {
        (int(row[0]), _label(row[1])): dict(zip(fields, (int(v or 0) for v in row[2:]), strict=True))
        for row in _run(sql, cte_params + params + [lo, hi])
    }


def count_leads(windows: Sequence[Window]) -> dict[Key, dict[str, int]]:
    events = f"SELECT client_id, created_at AS at FROM {Lead._meta.db_table} WHERE created_at >= %s AND created_at < %s"
    return _counts(windows, events, "COUNT(*)", ["leads_created"], [])


def count_messages(windows: Sequence[Window]) -> dict[Key, dict[str, int]]:
    events = (
        f"SELECT c.client_id, m.created_at AS at, m.direction FROM {Message._meta.db_table} m "
        f"JOIN {Conversation._meta.db_table} c ON c.id = m.conversation_id "
        "WHERE m.created_at >= %s AND m.created_at < %s"
    )
    select = "SUM(CASE WHEN e.direction = 'in' THEN 1 ELSE 0 END), SUM(CASE WHEN e.direction = 'out' THEN 1 ELSE 0 END)"
    return _counts(windows, events, select, ["inbound_messages", "outbound_messages"], [])


def count_calls(windows: Sequence[Window]) -> dict[Key, dict[str, int]]:
    events = (
        f"SELECT client_id, started_at AS at, texted_back FROM {Call._meta.db_table} "
        "WHERE started_at >= %s AND started_at < %s AND status = 'missed'"
    )
    select = "COUNT(*), SUM(CASE WHEN e.texted_back THEN 1 ELSE 0 END)"
    return _counts(windows, events, select, ["missed_calls", "calls_texted_back"], [])


def count_scheduled(windows: Sequence[Window]) -> dict[Key, dict[str, int]]:
    """Sends by sent_at; failures at their last attempt (claimed_at; send_at when they failed
    before any attempt, e.g. opted out), because transition() updates rows without touching
    updated_at; escalations when queued (cancelled ones excluded)."""
    sched = ScheduledMessage._meta.db_table
    failed_at = "COALESCE(claimed_at, send_at)"
    events = (
        # Each branch bounded by the span; the outer join applies the windows.
        f"SELECT * FROM (SELECT client_id, channel, 'sent' AS kind, sent_at AS at FROM {sched} "
        f"WHERE status IN ({_SENT_IN}) "
        f"UNION ALL SELECT client_id, channel, 'failed', {failed_at} FROM {sched} WHERE status = 'failed' "
        f"UNION ALL SELECT client_id, channel, 'escalation', created_at FROM {sched} "
        "WHERE source = %s AND status <> 'cancelled') AS events WHERE at >= %s AND at < %s"
    )
    select = ", ".join(
        [
            "SUM(CASE WHEN e.kind = 'sent' AND e.channel = 'sms' THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN e.kind = 'failed' AND e.channel = 'sms' THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN e.kind = 'sent' AND e.channel = 'email' THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN e.kind = 'failed' AND e.channel = 'email' THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN e.kind = 'escalation' THEN 1 ELSE 0 END)",
        ]
    )
    fields = ["sms_sent", "sms_failed", "emails_sent", "emails_failed", "escalations"]
    return _counts(windows, events, select, fields, [ESCALATION_SOURCE])


def count_sms_sent(windows: Sequence[Window]) -> dict[Key, int]:
    """SMS sent (accepted by the provider) per window: what counts against the allowance."""
    events = (
        f"SELECT client_id, sent_at AS at FROM {ScheduledMessage._meta.db_table} "
        f"WHERE sent_at >= %s AND sent_at < %s AND channel = 'sms' AND status IN ({_SENT_IN})"
    )
    rows = _counts(windows, events, "COUNT(*)", ["sms_sent"], [])
    return {key: row["sms_sent"] for key, row in rows.items()}


def median_first_response(windows: Sequence[Window]) -> dict[Key, int]:
    """Median seconds from a message that starts a wait (an inbound message that opens the
    conversation or follows an outbound one) to the next outbound message, per window of the
    waiting message. Waits not answered yet are left out. See median_first_response_sets()."""
    return median_first_response_sets([windows])[0]


def median_first_response_sets(window_sets: Sequence[Sequence[Window]]) -> list[dict[Key, int]]:
    """median_first_response() of several sets of windows (e.g. days and weeks) in one
    query: the costly part, ordering every message of the span by conversation, is done once.

    Messages form turns (a stretch from one side): the wait starts with an inbound turn and
    ends where the next turn, an outbound one, starts. Two passes over messages in
    conversation order, the second over turn starts only."""
    windows = [w for window_set in window_sets for w in window_set]
    results: list[dict[Key, int]] = [{} for _ in window_sets]
    if not windows:
        return results
    sets = [number for number, window_set in enumerate(window_sets) for _ in window_set]
    conv, msg = Conversation._meta.db_table, Message._meta.db_table
    lo, _ = _span(windows)
    cte, cte_params = _windows_cte(windows, sets)
    runs = (
        "runs AS (SELECT c.client_id, m.conversation_id, m.created_at, m.id, m.direction, "
        "LAG(m.direction) OVER (PARTITION BY m.conversation_id ORDER BY m.created_at, m.id) AS previous "
        f"FROM {msg} m JOIN {conv} c ON c.id = m.conversation_id "
        "WHERE m.created_at >= %s AND c.client_id IN (SELECT client_id FROM w))"
    )
    turns = (
        "turns AS (SELECT client_id, created_at, direction, "
        "LEAD(created_at) OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS reply_at "
        "FROM runs WHERE previous IS NULL OR previous <> direction)"
    )
    waits = (
        "FROM w JOIN turns t ON t.client_id = w.client_id AND t.created_at >= w.starts AND t.created_at < w.ends "
        "WHERE t.direction = 'in' AND t.reply_at IS NOT NULL"
    )
    params = cte_params + [_ts(lo - WAIT_LOOKBACK)]
    if _vendor() == "postgresql":
        seconds = "EXTRACT(EPOCH FROM (t.reply_at - t.created_at))::float8"
        sql = (
            f"WITH {cte}, {runs}, {turns} SELECT w.set_no, w.client_id, w.label, "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {seconds}) {waits} GROUP BY w.set_no, w.client_id, w.label"
        )
        for number, client_id, label, value in _run(sql, params):
            results[int(number)][(int(client_id), _label(label))] = round(value)
        return results
    # SQLite has no percentile aggregate: fetch each wait and take the median here (demo sizes).
    seconds = "(julianday(t.reply_at) - julianday(t.created_at)) * 86400.0"
    sql = f"WITH {cte}, {runs}, {turns} SELECT w.set_no, w.client_id, w.label, {seconds} {waits}"
    samples: dict[tuple[int, int, date], list[float]] = defaultdict(list)
    for number, client_id, label, value in _run(sql, params):
        samples[(int(number), int(client_id), _label(label))].append(value)
    for (number, client_id, label), values in samples.items():
        results[number][(client_id, label)] = round(statistics.median(values))
    return results
