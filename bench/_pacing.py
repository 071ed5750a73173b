"""Delivery at the provider's limit: two `process_scheduled` processes at once against the
fake server enforcing a rate (it answers 429 past it), and the shared limiter's cost per
message. Used by bench/delivery.py (`--pacing`, `--only-pacing`)."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_in_one_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def queue_channel(channel: str, count: int) -> None:
    from django.utils import timezone

    from messaging.models import ScheduledMessage

    now = timezone.now() - timedelta(seconds=1)
    rows = [
        ScheduledMessage(
            channel=channel,
            to=f"+1415555{i % 10000:04d}" if channel == "sms" else f"lead{i}@example.com",
            subject="Bench",
            body=f"paced message {i}",
            send_at=now,
            next_attempt_at=now,
        )
        for i in range(count)
    ]
    ScheduledMessage.objects.bulk_create(rows, batch_size=5000)


def _env(url: str, rate: float, concurrency: int) -> dict[str, str]:
    from tests.fakes.providers import (
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        FAKE_FROM_EMAIL,
        FAKE_FROM_NUMBER,
        FAKE_RESEND_KEY,
    )

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        "CRON_SECRET": "bench-cron-secret",
        "LOG_LEVEL": "WARNING",
        "SMS_PROVIDER": "twilio",
        "EMAIL_PROVIDER": "resend",
        "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FAKE_FROM_NUMBER,
        "TWILIO_API_BASE_URL": url,
        "RESEND_API_KEY": FAKE_RESEND_KEY,
        "RESEND_FROM_EMAIL": FAKE_FROM_EMAIL,
        "RESEND_API_URL": url,
        "TWILIO_SEND_RATE": str(rate),
        "RESEND_SEND_RATE": str(rate),
        "DELIVERY_CONCURRENCY": str(concurrency),
        "DELIVERY_BATCH_SIZE": "20",
        "RESEND_BATCH_SIZE": "1",  # one request per email: the allowance's own figure
    }


def two_processes(
    fake_server, empty_queue, channel: str, count: int, rate: float, concurrency: int = 4, **extra_env: str
) -> dict:
    """`count` due messages of one channel, two processes sharing the allowance `rate`/s."""
    from django.db import connection

    from messaging.models import ScheduledMessage, Status

    empty_queue()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM messaging_ratebucket")
    queue_channel(channel, count)
    service = "twilio" if channel == "sms" else "resend"
    with fake_server(0.0, f"--{service}-rate", str(int(rate))) as (url, seen):
        env = {**_env(url, rate, concurrency), **extra_env}
        started = time.perf_counter()
        workers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "process_scheduled"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        errors = [w.communicate(timeout=600)[1] for w in workers]
        elapsed = time.perf_counter() - started
    report = seen[1]
    times = report[f"{service}_times"]
    rows = ScheduledMessage.objects.filter(channel=channel)
    return {
        "channel": channel,
        "count": count,
        "rate": rate,
        "sent": rows.filter(status=Status.SENT).count(),
        "max_attempts_used": max(rows.values_list("attempts", flat=True), default=0),
        "seconds": elapsed,
        "send_span": times[-1] - times[0] if times else 0.0,
        "ideal_span": (count - 1) / rate,
        "peak_1s": peak_in_one_second(times),
        "rate_limited": report["rate_limited"],
        "requests": len(times),
        "exit_codes": [w.returncode for w in workers],
        "errors": [e[-500:] for e in errors if e.strip()],
    }


def limiter_cost(slots: int = 4000, threads: int = 8, rate: float = 400.0) -> dict:
    """Database time per message of the shared limiter: `threads` threads take `slots` slots
    from one allowance of `rate`/s, each grant one UPDATE ... RETURNING."""
    from messaging.delivery import shared_bucket
    from messaging.delivery.shared_bucket import SharedBucket

    shared_bucket.database.execute("DELETE FROM messaging_ratebucket WHERE name = %(n)s", {"n": "bench:cost"})
    bucket = SharedBucket("bench:cost", rate)
    before_seconds, before_trips = shared_bucket.database.seconds, shared_bucket.database.round_trips

    def worker() -> None:
        for _ in range(slots // threads):
            bucket.acquire()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    db_seconds = shared_bucket.database.seconds - before_seconds
    trips = shared_bucket.database.round_trips - before_trips
    return {
        "slots": bucket.granted,
        "rate": rate,
        "seconds": elapsed,
        "round_trips": trips,
        "ms_per_round_trip": db_seconds * 1000 / trips,
        "ms_per_message": db_seconds * 1000 / bucket.granted,
        "messages_per_round_trip": bucket.granted / trips,
    }


def report(fake_server, empty_queue, sms: int, emails: int) -> None:
    for channel, count, rate in (("sms", sms, 10.0), ("email", emails, 2.0)):
        row = two_processes(fake_server, empty_queue, channel, count, rate)
        print(
            f"  {channel} at {rate:.0f}/s, two processes: {row['sent']}/{row['count']} sent in {row['seconds']:.1f} s "
            f"(sends from first to last {row['send_span']:.1f} s, ideal {row['ideal_span']:.1f} s, "
            f"ratio {row['ideal_span'] / row['send_span']:.2f}; {row['count'] / row['seconds']:.2f} msg/s wall), "
            f"peak in any 1 s window {row['peak_1s']}, 429s {row['rate_limited']}, "
            f"most attempts used {row['max_attempts_used']}, exit codes {row['exit_codes']}"
        )
        for error in row["errors"]:
            print(f"    stderr: {error}")
    batched(fake_server, empty_queue, emails * 50)
    for rate in (100.0, 1000.0):
        cost = limiter_cost(rate=rate, slots=int(rate * 4))
        print(
            f"  limiter at {rate:.0f}/s, 8 threads: {cost['slots']} slots in {cost['round_trips']} round trips "
            f"({cost['messages_per_round_trip']:.1f} per trip), {cost['ms_per_round_trip']:.2f} ms per round trip, "
            f"{cost['ms_per_message']:.3f} ms of database time per message"
        )


def batched(fake_server, empty_queue, count: int, rate: float = 2.0) -> None:
    """Email through /emails/batch (100 a request) at `rate` requests/s, two processes."""
    row = two_processes(
        fake_server, empty_queue, "email", count, rate, RESEND_BATCH_SIZE="100", DELIVERY_BATCH_SIZE="100"
    )
    span = row["send_span"]
    print(
        f"  email in batches of 100 at {rate:.0f} req/s, two processes: {row['sent']}/{row['count']} sent in "
        f"{row['requests']} requests, {row['seconds']:.1f} s wall ({row['count'] / row['seconds']:.0f} emails/s); "
        f"first to last request {span:.1f} s (ideal {(row['requests'] - 1) / rate:.1f} s), "
        f"{row['count'] / (span + 1 / rate):.0f} emails/s at the provider, "
        f"peak requests in any 1 s window {row['peak_1s']}, 429s {row['rate_limited']}, "
        f"most attempts used {row['max_attempts_used']}, exit codes {row['exit_codes']}"
    )
    for error in row["errors"]:
        print(f"    stderr: {error}")
