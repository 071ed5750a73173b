"""The campaigns tick at scale: 1,000 running campaigns x 1,000 recipients on PostgreSQL.

    .venv/bin/python bench/campaigns.py [--campaigns 1000 --recipients 1000 --cap 10]

Creates `bench_campaigns` on postgres://postgres@127.0.0.1:5432 (BENCH_SERVER_URL to change),
fills it with COPY, and drops it afterwards. Prints, for a tick that launches `cap` messages
for every campaign and for a tick with every campaign at cap:
- the wall time of `manage.py process_campaigns` as cron starts it (Python start-up included),
- the time and SQL queries of the same tick in this process (queries on the tick's connection),
- the queries of the at-cap tick with batches of half the size (what batching costs),
- the launching tick in process with one thread and with two, twice, side by side.
"""

import argparse
import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from _db import ROOT, bench_database

DATABASE = "bench_campaigns"


def fill(campaigns: int, recipients: int, cap: int) -> None:
    from django.db import connection

    from campaigns.models import Campaign, CampaignRecipient
    from messaging.models import Client

    clients = Client.objects.bulk_create(Client(name=f"Bench {i}", timezone="UTC") for i in range(10))
    Campaign.objects.bulk_create(
        Campaign(
            client=clients[i % 10],
            name=f"bench {i}",
            channel="sms",
            body="Hi {{ first_name }}, our winter offer is on: 20% off until Friday.",
            max_in_flight=cap,
            status="running",
        )
        for i in range(campaigns)
    )
    ids = list(Campaign.objects.order_by("pk").values_list("pk", flat=True))
    now = datetime.now(UTC).isoformat()
    table = CampaignRecipient._meta.db_table
    with connection.cursor() as cursor:
        with cursor.copy(
            f'COPY {table} (campaign_id, "to", first_name, last_name, fields, state, reason, created_at) FROM STDIN'
        ) as copy:
            for number, campaign_id in enumerate(ids):
                buffer = io.StringIO()
                for i in range(recipients):
                    # A number of its own for every recipient (valid: 415, exchanges 200-999).
                    n = number * recipients + i
                    phone = f"+1415{200 + n // 10_000 % 800}{n % 10_000:04d}"
                    buffer.write(f"{campaign_id}\t{phone}\tR{i}\t\t{{}}\tpending\t\t{now}\n")
                copy.write(buffer.getvalue())
        cursor.execute(f"ANALYZE {table}")


def tick_in_process(label: str, batch_size: int | None = None, threads: int | None = None) -> tuple[float, int, int]:
    from django.db import connection
    from django.utils import timezone

    from campaigns.tick import process_campaigns

    # Counted through an execute wrapper: CaptureQueriesContext would format every statement
    # (10,000-element arrays included) and double the time it measures.
    count = [0]

    def counter(execute, sql, params, many, context):  # noqa: ANN001, ANN202
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        result = process_campaigns(timezone.now(), batch_size=batch_size, threads=threads)
        elapsed = time.perf_counter() - started
    # Only the calling thread's queries are counted: with two threads, say nothing.
    queries = f"{count[0]} queries" if threads == 1 else "queries not counted (two connections)"
    print(
        f"{label}: {elapsed:.3f} s, {queries}, launched {result.launched}, "
        f"visited {result.visited}, errors {len(result.errors)}"
    )
    return elapsed, count[0], result.launched


def tick_as_cron(label: str) -> float:
    env = {**os.environ, "CRON_MIN_FREE_MB": "0", "CRON_MAX_LOAD": "100000"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", "process_campaigns"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    from scheduling.models import JobRun

    run = JobRun.objects.filter(job__name="process-campaigns").order_by("-started_at").first()
    print(
        f"{label}: {elapsed:.3f} s wall incl. start-up (run {run.duration_ms} ms, launched {run.summary['launched']})"
    )
    return elapsed


def check_wall() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def send_everything() -> None:
    """As if process-scheduled had sent every campaign message: room for `cap` more each."""
    from messaging.models import ScheduledMessage

    ScheduledMessage.objects.filter(status="pending").update(status="sent")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=10)
    args = parser.parse_args()
    with bench_database(DATABASE):
        started = time.perf_counter()
        fill(args.campaigns, args.recipients, args.cap)
        print(
            f"filled {args.campaigns} campaigns x {args.recipients} recipients "
            f"in {time.perf_counter() - started:.1f} s; manage.py check: {check_wall():.3f} s wall"
        )
        tick_as_cron("launching tick, manage.py process_campaigns")
        tick_as_cron("at-cap tick, manage.py process_campaigns")
        tick_in_process("at-cap tick, in process, one thread", threads=1)
        half = max(1, int(os.environ.get("CAMPAIGNS_TICK_BATCH_SIZE", "200")) // 2)
        tick_in_process(f"at-cap tick, in process, one thread, batches of {half}", batch_size=half, threads=1)
        # The launching tick again, side by side: one thread, then two (CAMPAIGNS_TICK_THREADS),
        # twice; each after every message is sent, so each has room for `cap` again.
        # (Queries are counted on the calling thread's connection: with two threads, half the batches.)
        for round_number in (1, 2):
            for threads in (1, 2):
                send_everything()
                tick_in_process(
                    f"launching tick, round {round_number}, {threads} thread(s), in process", threads=threads
                )


if __name__ == "__main__":
    main()
