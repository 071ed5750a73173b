"""The shared send allowance on PostgreSQL: one row, a batch of slots per round trip, a pause
that reaches every holder. Two SharedBucket objects of one name stand for two processes (the
real two-process runs are in test_delivery_pacing.py)."""

import threading
import time
import uuid

import pytest
from django.db import connection

from messaging.delivery import shared_bucket
from messaging.delivery.ratelimit import LocalBucket, bucket_for, reset_buckets
from messaging.delivery.shared_bucket import SharedBucket
from messaging.models import RateBucket

pytestmark = pytest.mark.django_db


@pytest.fixture
def name():
    """A bucket name of this test's own (the limiter commits on a connection of its own, so
    its rows outlive the test's transaction): deleted afterwards."""
    value = f"test:{uuid.uuid4().hex[:12]}"
    yield value
    shared_bucket.database.execute("DELETE FROM messaging_ratebucket WHERE name = %(n)s", {"n": value})
    reset_buckets()


def take(buckets: list, count: int, threads: int = 4) -> list[float]:
    """`count` acquires spread over `threads` threads and `buckets`; the times they got through."""
    times: list[float] = []
    lock = threading.Lock()
    per_thread = count // threads

    def worker(i: int) -> None:
        bucket = buckets[i % len(buckets)]
        for _ in range(per_thread):
            assert bucket.acquire()
            with lock:
                times.append(time.monotonic())

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sorted(times)


def peak_in_one_second(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


def test_postgresql_gets_the_shared_bucket_and_a_zero_rate_none(name):
    assert connection.vendor == "postgresql"
    assert isinstance(bucket_for(name, 5), SharedBucket)
    assert bucket_for(name, 0) is None


def test_two_holders_of_one_allowance_share_its_pace(name):
    rate = 20.0
    first, second = SharedBucket(name, rate), SharedBucket(name, rate)

    times = take([first, second], 40, threads=8)

    assert first.granted > 0 and second.granted > 0  # both took part
    assert peak_in_one_second(times) <= rate + 1  # one allowance, not one each
    assert times[-1] - times[0] >= (40 - 1) / rate - 0.1


def test_one_round_trip_hands_out_a_batch_of_slots(name):
    bucket = SharedBucket(name, 200.0)
    before = shared_bucket.database.round_trips

    take([bucket], 200, threads=8)

    trips = shared_bucket.database.round_trips - before
    assert bucket.granted >= 200 and trips <= 200 / 4  # several slots per statement


def test_a_pause_reaches_every_holder(name):
    first, second = SharedBucket(name, 10.0), SharedBucket(name, 10.0)
    assert second.acquire()

    first.pause(1.5, reason="429 from the provider")

    started = time.monotonic()
    assert second.acquire(until=started + 0.5) is False  # refused at once, nothing taken
    assert time.monotonic() - started < 0.2
    assert second.acquire()
    assert 1.3 <= time.monotonic() - started <= 2.0
    row = RateBucket.objects.get(name=name)
    assert row.pause_reason == "429 from the provider" and row.paused_until is not None


def test_a_refused_caller_leaves_its_slot_to_the_next(name):
    bucket = SharedBucket(name, 2.0)
    assert bucket.acquire()

    assert bucket.acquire(until=time.monotonic()) is False
    started = time.monotonic()
    assert bucket.acquire()

    assert time.monotonic() - started <= 0.6  # the next slot, not the one after


def test_stop_wakes_a_waiting_caller(name):
    bucket = SharedBucket(name, 10.0)
    bucket.pause(30)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()

    started = time.monotonic()
    assert bucket.acquire(stop=stop) is False
    assert time.monotonic() - started < 1.0


def test_a_bucket_row_deleted_under_a_holder_is_made_again(name):
    bucket = SharedBucket(name, 10.0)
    assert bucket.acquire()
    shared_bucket.database.execute("DELETE FROM messaging_ratebucket WHERE name = %(n)s", {"n": name})

    assert bucket.acquire()


def test_local_bucket_is_the_one_process_fallback():
    assert LocalBucket("x", 1).rate == 1.0
