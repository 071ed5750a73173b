"""Process-wide token buckets so worker threads share one provider budget.

Each provider account has a request-rate limit (Resend: 2 req/s by default);
pacing ourselves is cheaper than collecting 429s and backing off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Thread-safe token bucket; `rate` tokens/second, up to `burst` banked.

    A rate of 0 or None means unlimited. `clock` and `sleep` are injectable
    so tests can drive time without sleeping.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(rate) if rate else 0.0
        # A default burst of 1 spaces requests evenly: any one-second window
        # then holds at most `rate` requests, which is how providers count.
        self.burst = float(burst) if burst else 1.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def reserve(self) -> float:
        """Take a token now and return how long to wait before using it.

        Tokens may go negative: each caller reserves its slot under the lock
        and then waits outside it, so threads are served in arrival order
        without holding the lock while sleeping.
        """
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._updated = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def acquire(self) -> float:
        """Block until a token is available; returns the time waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(name: str, rate: float | None) -> TokenBucket:
    """The shared bucket for `name`, rebuilt if the configured rate changed."""
    wanted = float(rate) if rate else 0.0
    with _buckets_lock:
        bucket = _buckets.get(name)
        if bucket is None or bucket.rate != wanted:
            bucket = TokenBucket(wanted)
            _buckets[name] = bucket
        return bucket


def reset_buckets() -> None:
    with _buckets_lock:
        _buckets.clear()
