"""Send allowances: how fast a provider account (or one sender) may be called.

Every process on every host draws from one allowance when the database is PostgreSQL
(`shared_bucket.SharedBucket`: a row per allowance, a batch of send slots per round trip).
On SQLite (the one-host demo) the allowance is this process's own (`LocalBucket`).

Both space requests evenly, `1 / rate` seconds apart (a little more: PACE_SHARE), rather than letting a burst through:
any one-second window then holds at most `rate` requests, which is how providers count. A
provider's 429 pauses an allowance for everyone (`pause`). A caller that must give up at some
time (its message's lease, the run's deadline) says so with `until` and is refused a slot
past it, so it never waits in vain and never sends late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

# Requests go 5% under the configured rate: the time from a slot to the request's arrival at
# the provider varies by some milliseconds, and at exactly `rate` that jitter would put
# rate + 1 requests into some one-second windows (a 429 from a strict provider).
PACE_SHARE = 0.95


class Bucket(Protocol):
    name: str
    rate: float

    def acquire(self, until: float | None = None, stop: threading.Event | None = None) -> bool:
        """Wait for this caller's slot; False (nothing taken) when it would come after `until`
        (a time.monotonic() value) or `stop` was set while waiting."""

    def pause(self, seconds: float, reason: str = "") -> None:
        """No slot for anyone for `seconds` (the provider said so)."""


def wait_until(
    when: float,
    stop: threading.Event | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Sleep until `when` (monotonic); False when `stop` is set first."""
    delay = when - clock()
    if delay <= 0:
        return not (stop is not None and stop.is_set())
    if stop is not None:
        return not stop.wait(delay)
    sleep(delay)
    return True


class LocalBucket:
    """This process's allowance: threads take evenly spaced slots under a lock and wait for
    theirs outside it, so they are served in arrival order."""

    def __init__(
        self,
        name: str,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a bucket needs a rate above 0 (0 means no bucket at all)")
        self.name, self.rate = name, float(rate)
        self.interval = 1.0 / (self.rate * PACE_SHARE)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = clock()
        self._pauses = 0

    def reserve(self, until: float | None = None) -> float | None:
        """Take the next slot and return its time, or None when it would come after `until`."""
        with self._lock:
            start = max(self._next, self._clock())
            if until is not None and start > until:
                return None
            self._next = start + self.interval
            return start

    def acquire(self, until: float | None = None, stop: threading.Event | None = None) -> bool:
        while True:
            with self._lock:
                pauses = self._pauses
            slot = self.reserve(until)
            if slot is None or not wait_until(slot, stop, self._clock, self._sleep):
                return False
            with self._lock:
                if self._pauses == pauses:
                    return True
            # Paused while we waited: that slot lies inside the pause; take a new one.

    def pause(self, seconds: float, reason: str = "") -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
            self._pauses += 1


_buckets: dict[str, Bucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(name: str, rate: float | None) -> Bucket | None:
    """The allowance `name` at `rate` requests/s (None when the rate is 0: unlimited),
    shared by the whole process, and across processes on PostgreSQL."""
    wanted = float(rate) if rate else 0.0
    if wanted <= 0:
        return None
    with _buckets_lock:
        bucket = _buckets.get(name)
        if bucket is None or bucket.rate != wanted:
            bucket = _buckets[name] = _new_bucket(name, wanted)
        return bucket


def _new_bucket(name: str, rate: float) -> Bucket:
    from django.db import connection

    if connection.vendor == "postgresql":
        from messaging.delivery.shared_bucket import SharedBucket

        return SharedBucket(name, rate)
    return LocalBucket(name, rate)


def reset_buckets() -> None:
    """Forget this process's buckets (settings changed). Shared allowances stay in the
    database: other processes still use them."""
    with _buckets_lock:
        _buckets.clear()


class NoTurn(Exception):
    """Raised inside a provider call when its send slot would come too late (or the run is
    stopping): nothing was sent."""


class Turn:
    """One send's place in its allowances, taken at the last moment: by the provider's HTTP
    client right before the request goes out (`wait_for_turn`), so work done before it (an
    SDK building its client, a slow thread) cannot bunch requests up at the provider."""

    def __init__(self, buckets: list[Bucket], until: float | None, stop: threading.Event | None) -> None:
        self.buckets, self.until, self.stop = buckets, until, stop
        self.taken = False
        self.refused = False  # no slot before `until`, or stopped while waiting
        self.error: BaseException | None = None  # the limiter itself failed (its database)

    def take(self) -> None:
        if self.taken:
            return  # one slot per send, whatever the SDK does inside it
        self.taken = True
        for bucket in self.buckets:
            try:
                granted = bucket.acquire(until=self.until, stop=self.stop)
            except Exception as exc:  # the shared allowance unreadable: never a provider error
                self.refused, self.error = True, exc
                raise NoTurn(f"send allowance {bucket.name} unavailable: {exc}") from exc
            if not granted:
                self.refused = True
                raise NoTurn(f"no send slot in {bucket.name} in time")


_current = threading.local()


@contextmanager
def taking_turn(turn: Turn) -> Iterator[Turn]:
    """Provider calls made by this thread inside the block wait for `turn`."""
    _current.turn = turn
    try:
        yield turn
    finally:
        _current.turn = None


def wait_for_turn() -> None:
    """Called by the provider HTTP clients right before a request: waits for the send slot of
    the call under way in this thread, if it has one (raises NoTurn when it comes too late).
    Requests outside a paced send (reconciliation look-ups, alert emails) do not wait."""
    turn = getattr(_current, "turn", None)
    if turn is not None:
        turn.take()
