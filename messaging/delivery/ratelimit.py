"""Send allowances: how fast a provider account (or one sender) may be called.

Every process on every host draws from one allowance when the database is PostgreSQL
(`shared_bucket.SharedBucket`: a row per allowance, a batch of send slots per round trip).
On SQLite (the one-host demo) the allowance is this process's own (`LocalBucket`).

Both space requests evenly, `1 / rate` seconds apart, rather than letting a burst through:
any one-second window then holds at most `rate` requests, which is how providers count. A
provider's 429 pauses an allowance for everyone (`pause`). A caller that must give up at some
time (its message's lease, the run's deadline) says so with `until` and is refused a slot
past it, so it never waits in vain and never sends late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


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
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = clock()

    def reserve(self, until: float | None = None) -> float | None:
        """Take the next slot and return its time, or None when it would come after `until`."""
        with self._lock:
            start = max(self._next, self._clock())
            if until is not None and start > until:
                return None
            self._next = start + 1.0 / self.rate
            return start

    def acquire(self, until: float | None = None, stop: threading.Event | None = None) -> bool:
        slot = self.reserve(until)
        return slot is not None and wait_until(slot, stop, self._clock, self._sleep)

    def pause(self, seconds: float, reason: str = "") -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


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
