"""Delivery throughput against the fake Twilio/Resend server, and the claim query's cost as
the table grows.

    .venv/bin/python bench/delivery.py [--messages 5000] [--concurrency 8]

Prints messages/s at 0 ms and 50 ms provider latency, the ratio to the provider-bound ideal
(N x latency / (2 x concurrency): a pool per channel), and the claim query's time with 1k vs 1M rows in the table.
With --workers (or --only-workers): at 0 ms latency and no limit, one run with --workers 1 and
one with --workers 2 side by side (msg/s each, ratio). With --pacing (or --only-pacing): SMS at
10/s and email at 2 req/s, two processes at once
against a fake that answers 429 past the rate (time against the ideal, peak in any 1 s
window, 429s), email in batches of 100 at 2 req/s (--only-batch: that alone), and the shared
limiter's database time per message.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from _db import bench_database


def empty_queue() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE messaging_scheduledmessage CASCADE")


def queue_due(count: int) -> None:
    from django.utils import timezone

    from messaging.models import Channel, ScheduledMessage

    now = timezone.now() - timedelta(seconds=1)
    rows = [
        ScheduledMessage(
            channel=Channel.SMS if i % 2 else Channel.EMAIL,
            to=f"+1415555{i % 10000:04d}" if i % 2 else f"lead{i}@example.com",
            subject="Bench",
            body=f"bench message {i}",
            send_at=now,
            next_attempt_at=now,
        )
        for i in range(count)
    ]
    ScheduledMessage.objects.bulk_create(rows, batch_size=5000)


fake_pids: list[int] = []  # the fake server processes started, for the CPU accounting


def _proc_cpu(pid: int, with_children: bool = False) -> float:
    """CPU seconds (user + system) of a process from /proc, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")": state is field 3 of stat(5), so utime (14) is index 11 here.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process, with the backends that already exited (they are
    counted in the postmaster's children times)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("postgres"):
                total += _proc_cpu(int(entry.name), with_children=True)
    return total


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (the forked workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@contextmanager
def fake_server(latency: float, *options: str):
    """The fake providers in a child process; yields its URL and, in `seen`, the count it saw
    (then what it saw, as a dict: send times, 429s)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fake_server.py")), "--latency", str(latency), *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list = []
    fake_pids.append(proc.pid)
    try:
        yield proc.stdout.readline().strip(), seen
    finally:
        proc.stdin.close()
        report = json.loads(proc.stdout.readline() or "{}")
        seen.extend([report.get("sent", 0), report])
        proc.wait(timeout=30)


def point_providers_at(url: str) -> None:
    from django.conf import settings

    from messaging.delivery.providers import reset_providers
    from tests.fakes.providers import (
        FAKE_ACCOUNT_SID,
        FAKE_AUTH_TOKEN,
        FAKE_FROM_EMAIL,
        FAKE_FROM_NUMBER,
        FAKE_RESEND_KEY,
    )

    settings.SMS_PROVIDER, settings.EMAIL_PROVIDER = "twilio", "resend"
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER, settings.TWILIO_API_BASE_URL = FAKE_FROM_NUMBER, url
    settings.RESEND_API_KEY, settings.RESEND_FROM_EMAIL, settings.RESEND_API_URL = FAKE_RESEND_KEY, FAKE_FROM_EMAIL, url
    settings.TWILIO_SEND_RATE = settings.RESEND_SEND_RATE = 0  # measure the pipeline, not the limiter
    reset_providers()


def throughput(count: int, latency: float, concurrency: int, workers: int = 1) -> dict:
    from django.conf import settings

    from scheduling.runner import run_job

    empty_queue()
    settings.DELIVERY_CONCURRENCY = concurrency
    queue_due(count)
    with fake_server(latency) as (url, seen):
        point_providers_at(url)
        fake_pid = fake_pids[-1]
        cpu_before = own_cpu(), _proc_cpu(fake_pid), postgres_cpu()
        started = time.perf_counter()
        # As `process_scheduled --workers N` passes it (forked workers inherit these settings).
        result = run_job("process-scheduled", "manual", options={"workers": workers})
        elapsed = time.perf_counter() - started
        cpu_after = own_cpu(), _proc_cpu(fake_pid), postgres_cpu()
    spent = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    cpu = dict(zip(("senders", "fake", "postgres"), spent, strict=True))
    sent = result.data.get("sent", 0)
    # Half SMS, half email, and a pool of `concurrency` threads per channel.
    ideal = count * latency / (2 * concurrency)
    return {
        "latency_ms": latency * 1000,
        "workers": result.data.get("workers", 1),
        "sent": sent,
        "provider_saw": seen[0],
        "seconds": elapsed,
        "per_second": sent / elapsed,
        "ideal_seconds": ideal,
        "ratio_to_ideal": (ideal / elapsed) if ideal else None,
        "cpu": cpu,
    }


def workers_side_by_side(count: int, concurrency: int) -> None:
    """0 ms latency, no limit: one run with --workers 1, then one with --workers 2."""
    rows = [throughput(count, 0.0, concurrency, workers) for workers in (1, 2)]
    for row in rows:
        cpu = row["cpu"]
        per_msg = {k: v * 1000 / max(row["sent"], 1) for k, v in cpu.items()}
        busy = sum(cpu.values()) / row["seconds"]
        print(
            f"  --workers {row['workers']}: {row['sent']} sent in {row['seconds']:.2f} s"
            f" = {row['per_second']:.0f} msg/s; CPU ms per message: senders {per_msg['senders']:.2f},"
            f" fake provider {per_msg['fake']:.2f}, PostgreSQL {per_msg['postgres']:.2f};"
            f" cores busy {busy:.2f} of {os.cpu_count()}"
        )
    ratio = rows[1]["per_second"] / rows[0]["per_second"]
    one = rows[0]
    per_msg = {k: v / max(one["sent"], 1) for k, v in one["cpu"].items()}
    # What two cores allow at the CPU cost per message measured with one worker: the senders'
    # CPU plus what the fake provider and PostgreSQL spend on the same cores per message.
    bound = min(os.cpu_count() or 1, 2) / sum(per_msg.values())
    print(
        f"  ratio --workers 2 / --workers 1: {ratio:.2f}x (cores: {os.cpu_count()}); two cores at the"
        f" measured CPU per message allow {bound:.0f} msg/s = {bound / one['per_second']:.2f}x one worker"
    )


def claim_query_ms(samples: int = 30) -> float:
    """Median time of the claim query (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 100), rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from messaging.models import ScheduledMessage, Status

    timings = []
    for _ in range(samples):
        with transaction.atomic():
            now = timezone.now()
            started = time.perf_counter()
            list(
                ScheduledMessage.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(status=Status.PENDING, send_at__lte=now, next_attempt_at__lte=now)
                .order_by("send_at")
                .values_list("pk", flat=True)[:100]
            )
            timings.append((time.perf_counter() - started) * 1000)
            transaction.set_rollback(True)
    connection.close()
    return statistics.median(timings)


def fill_history(total: int) -> None:
    """Bring the table to `total` rows: mostly sent history, plus 1,000 future pending."""
    from django.db import connection

    from messaging.models import ScheduledMessage

    missing = total - ScheduledMessage.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_scheduledmessage
              (id, channel, "to", subject, body, html, send_at, status, attempts, max_attempts,
               next_attempt_at, claimed_by, provider_message_id, last_error_code, last_error,
               source, created_at, updated_at, sent_at, generation)
            SELECT gen_random_uuid(), 'sms', '+14155550000', '', 'history', '',
                   now() - (g || ' seconds')::interval,
                   CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'sent' END, 1, 5,
                   now() - (g || ' seconds')::interval, '', '', '', '', 'bench', now(), now(), now(), 0
            FROM generate_series(1, %s) AS g
            """,
            [max(0, missing)],
        )
        cursor.execute("ANALYZE messaging_scheduledmessage")


def claim_scaling() -> dict:
    from django.utils import timezone

    empty_queue()
    # 1,000 rows: 100 pending due now among 900 of history.
    queue_due(100)
    fill_history(1_000)
    small = claim_query_ms()
    fill_history(1_000_000)
    large = claim_query_ms()
    return {
        "rows_small": 1_000,
        "ms_small": small,
        "rows_large": 1_000_000,
        "ms_large": large,
        "ratio": large / small,
        "now": timezone.now().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-claim", action="store_true", help="skip the 1M-row claim query measurement")
    parser.add_argument("--only-claim", action="store_true", help="only the claim query measurement")
    parser.add_argument("--pacing", action="store_true", help="also the provider-bound runs with send allowances on")
    parser.add_argument("--only-pacing", action="store_true", help="only the provider-bound runs")
    parser.add_argument("--workers", action="store_true", help="also 0 ms latency, --workers 1 vs --workers 2")
    parser.add_argument("--only-workers", action="store_true", help="only the --workers 1 vs 2 comparison")
    parser.add_argument("--only-batch", action="store_true", help="only email in Resend batches at 2 req/s")
    parser.add_argument("--paced-sms", type=int, default=200, help="SMS for the 10/s run")
    parser.add_argument("--paced-emails", type=int, default=40, help="emails for the 2/s run")
    args = parser.parse_args()
    # BENCH_DATABASE: another name, so two benchmarks on one server do not drop each other's.
    with bench_database(os.environ.get("BENCH_DATABASE", "bench_delivery")):
        from django.conf import settings

        settings.DELIVERY_BATCH_SIZE = 100
        print(f"delivery of {args.messages} due messages (half SMS, half email), concurrency {args.concurrency}")
        if args.workers or args.only_workers:
            print("0 ms provider latency, no send limit, one run sending from 1 then 2 processes:")
            workers_side_by_side(args.messages, args.concurrency)
            if args.only_workers:
                return
        if args.only_batch:
            import _pacing

            print("email through /emails/batch, allowance shared in PostgreSQL, fake answering 429 past 2 req/s:")
            _pacing.batched(fake_server, empty_queue, args.paced_emails * 50)
            return
        if args.pacing or args.only_pacing:
            import _pacing

            print("send allowances shared in PostgreSQL, fake provider answering 429 past its rate:")
            _pacing.report(fake_server, empty_queue, args.paced_sms, args.paced_emails)
            if args.only_pacing:
                return
        for latency in () if args.only_claim else (0.0, 0.05):
            row = throughput(args.messages, latency, args.concurrency)
            ratio = f"{row['ratio_to_ideal']:.2f}" if row["ratio_to_ideal"] else "n/a"
            print(
                f"  latency {row['latency_ms']:>4.0f} ms: {row['sent']} sent (provider saw {row['provider_saw']}) "
                f"in {row['seconds']:.2f} s = {row['per_second']:.0f} msg/s; provider-bound ideal "
                f"{row['ideal_seconds']:.2f} s, ratio ideal/actual {ratio}"
            )
        if not args.skip_claim:
            scaling = claim_scaling()
            print(
                f"claim query (100 due, LIMIT 100, FOR UPDATE SKIP LOCKED): {scaling['ms_small']:.2f} ms with "
                f"{scaling['rows_small']:,} rows, {scaling['ms_large']:.2f} ms with {scaling['rows_large']:,} rows "
                f"(ratio {scaling['ratio']:.2f})"
            )


if __name__ == "__main__":
    main()
