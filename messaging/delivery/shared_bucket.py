"""An allowance held in PostgreSQL (messaging.RateBucket), shared by every process on every
host: one statement hands a process a batch of evenly spaced send slots.

Why not pyrate-limiter's PostgresBucket: it stores one row per request, and each acquire
locks the whole table (`LOCK TABLE ... NOWAIT`, refusing the caller when another holds it),
counts the window, inserts, and asks the database's clock apart: several round trips per
request, a table that grows and needs leaking, and no way to say "the provider paused us
until T". Here a grant is one UPDATE on one row, whatever the batch size.

The row keeps `next_slot`, the earliest time the next request may go, on the database's
clock (`clock_timestamp()`), so hosts whose clocks disagree share one pace. A grant of n
slots starts at max(next_slot, now) and moves next_slot on by n / rate. A process asks for
as many slots as it has threads waiting, and gets none that lie more than RESERVE_SECONDS
ahead (when the next free one is further, it asks again when it comes within reach): no more
than that much of the allowance is ever held, so slots held and not used cost little (the pace
only ever errs slow), and another process's 429 pause reaches every process within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import psycopg

from messaging.delivery.ratelimit import PACE_SHARE, wait_until

logger = logging.getLogger("messaging.delivery")

RESERVE_SECONDS = 0.25  # how far ahead one process may hold slots

GRANT_SQL = """
WITH slot AS (
    SELECT b.name, c.now, greatest(b.next_slot, c.now) AS start
    FROM messaging_ratebucket b, LATERAL (SELECT clock_timestamp() AS now) c
    WHERE b.name = %(name)s
    FOR UPDATE OF b
), grant_ AS (
    SELECT name, now, start,
        CASE WHEN %(until)s::float8 IS NOT NULL AND start > now + make_interval(secs => %(until)s::float8) THEN 0
             WHEN start > now + make_interval(secs => %(reserve)s::float8) THEN 0
             ELSE least(%(want)s::int, greatest(1,
                 ceil((%(reserve)s::float8 - extract(epoch FROM start - now)::float8) * %(rate)s::float8)::int))
        END AS n
    FROM slot
)
UPDATE messaging_ratebucket b
SET next_slot = g.start + make_interval(secs => g.n / %(rate)s::float8), updated_at = g.now
FROM grant_ g
WHERE b.name = g.name
RETURNING extract(epoch FROM g.start - g.now)::float8, g.n
"""

CREATE_SQL = """
INSERT INTO messaging_ratebucket (name, next_slot, pause_reason, updated_at)
VALUES (%(name)s, clock_timestamp(), '', clock_timestamp())
ON CONFLICT (name) DO NOTHING
"""

PAUSE_SQL = """
UPDATE messaging_ratebucket
SET next_slot = greatest(next_slot, clock_timestamp() + make_interval(secs => %(seconds)s::float8)),
    paused_until = greatest(coalesce(paused_until, '-infinity'),
                            clock_timestamp() + make_interval(secs => %(seconds)s::float8)),
    pause_reason = left(%(reason)s, 200),
    updated_at = clock_timestamp()
WHERE name = %(name)s
"""


class _Connection:
    """One autocommit connection per process for the limiter, apart from Django's
    per-thread ones: a grant commits at once and never waits on a delivery transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self.seconds = 0.0  # time spent in the database, for the benchmark
        self.round_trips = 0

    def execute(self, sql: str, params: dict) -> tuple | None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                    started = time.perf_counter()
                    # Prepared: planning the grant costs more than running it (about 1 ms vs 0.4).
                    cursor = self._conn.execute(sql, params, prepare=True)
                    row = cursor.fetchone() if cursor.description else None
                    self.seconds += time.perf_counter() - started
                    self.round_trips += 1
                    return row
                except psycopg.OperationalError:
                    self.close_locked()
                    if attempt == 2:
                        raise
        return None

    def _connect(self) -> psycopg.Connection:
        # Prepared statements need one server session: past a transaction-mode pooler when
        # CRON_LOCK_DATABASE_URL is set, as the job lock.
        from scheduling.locks import direct_connection

        return direct_connection("messaging-ratelimit")

    def close_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


database = _Connection()


class SharedBucket:
    def __init__(self, name: str, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a bucket needs a rate above 0 (0 means no bucket at all)")
        self.name, self.rate = name, float(rate)
        self.pace = self.rate * PACE_SHARE  # slots per second actually handed out
        self._lock = threading.Lock()
        self._slots: deque[float] = deque()  # monotonic times this process may send at
        self._waiting = 0
        self._pauses = 0  # how many times this process paused the bucket
        self._not_before = 0.0  # no round trip before this (monotonic): nothing to grant yet
        self._created = False
        self.granted = 0  # slots this process was given, for the benchmark

    def acquire(self, until: float | None = None, stop: threading.Event | None = None) -> bool:
        with self._lock:
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    # A slot left over from an earlier round (handed out for a thread that got
                    # one of its own) is stale once its time has passed: sending on it now
                    # would go outside the shared pace. Drop it and ask for a fresh one.
                    stale = time.monotonic() - 1.0 / self.pace
                    while self._slots and self._slots[0] < stale:
                        self._slots.popleft()
                    if not self._slots and time.monotonic() >= self._not_before:
                        if self._fetch(until) is False:
                            return False  # the next slot comes after `until`: nothing taken
                    if self._slots:
                        if until is not None and self._slots[0] > until:
                            return False
                        slot, pauses = self._slots.popleft(), self._pauses
                    else:
                        slot, pauses = None, -1
                        later = self._not_before
                if slot is None:
                    # Every slot up to RESERVE_SECONDS ahead is held (by us or others): ask
                    # again when the next one comes within reach, holding none meanwhile.
                    if not wait_until(later, stop):
                        return False
                    continue
                if not wait_until(slot, stop):
                    return False
                with self._lock:
                    if self._pauses == pauses:
                        return True
                # This process saw a 429 while we waited: our slot lies inside the pause.
        finally:
            with self._lock:
                self._waiting -= 1

    def pause(self, seconds: float, reason: str = "") -> None:
        with self._lock:
            self._slots.clear()  # slots held before the pause would land inside it
            self._pauses += 1
            self._ensure_row()
            database.execute(PAUSE_SQL, {"name": self.name, "seconds": max(0.0, seconds), "reason": reason})
        logger.warning("rate_bucket_paused", extra={"bucket": self.name, "seconds": seconds, "reason": reason})

    def _fetch(self, until: float | None, again: bool = True) -> bool:
        """One round trip (under self._lock): up to one slot per waiting thread, none past
        RESERVE_SECONDS ahead. False when the next slot comes after `until`."""
        self._ensure_row()
        asked = time.monotonic()
        params = {
            "name": self.name,
            "until": None if until is None else until - asked,
            "want": max(1, self._waiting),
            "reserve": RESERVE_SECONDS,
            "rate": self.pace,
        }
        row = database.execute(GRANT_SQL, params)
        if row is None:  # the row went away (deleted by hand, a test's flush): make it again
            self._created = False
            return self._fetch(until, again=False) if again else True
        answered = time.monotonic()
        offset, count = row
        # The database's "now" lies between asking and the answer: take the middle.
        first = (asked + answered) / 2 + offset
        if count == 0:
            if until is not None and first > until:
                return False
            self._not_before = first - RESERVE_SECONDS
            return True
        self._slots.extend(first + i / self.pace for i in range(count))
        self.granted += count
        return True

    def _ensure_row(self) -> None:
        if not self._created:
            database.execute(CREATE_SQL, {"name": self.name})
            self._created = True
