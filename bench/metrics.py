"""GET /metrics at scale: 1M job runs, 1M scheduled messages, 1M delivery attempts.

    .venv/bin/python bench/metrics.py [--runs 1000000 --messages 1000000 --repeat 5]

Creates `bench_metrics` on postgres://postgres@127.0.0.1:5432 (BENCH_SERVER_URL to change),
fills it with INSERT ... SELECT FROM generate_series, runs prune once (a tenth of the runs
are past the retention, so RunTotal holds folded totals as in production), VACUUM ANALYZEs
(as autovacuum would), then scrapes /metrics through Django's test client from a loopback
address and prints the median and range of the scrapes and each query's time in the last
one. Drops the database afterwards.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._db import bench_database  # noqa: E402

RUNS_SQL = """
INSERT INTO scheduling_jobrun (job_id, trigger, started_at, finished_at, duration_ms, status, skip_reason,
    processed, succeeded, failed, summary, error, traceback, host, pid, idempotency_key)
SELECT (%(job_ids)s::bigint[])[1 + g %% cardinality(%(job_ids)s::bigint[])], 'cron',
       %(now)s::timestamptz - (g * interval '1 second') * (33.0 * 86400 / %(n)s),
       %(now)s::timestamptz - (g * interval '1 second') * (33.0 * 86400 / %(n)s) + interval '2 seconds',
       CASE WHEN g %% 1000 = 7 THEN NULL ELSE (-ln(1 - random()) * 2000)::int END,
       CASE WHEN g %% 1000 = 7 THEN 'running' WHEN g %% 50 = 1 THEN 'failed' WHEN g %% 20 = 2 THEN 'partial'
            WHEN g %% 25 = 3 THEN 'skipped' ELSE 'succeeded' END,
       '', 1, 1, 0, '{}', '', '', 'bench', 1, ''
FROM generate_series(1, %(n)s) AS g
"""

MESSAGES_SQL = """
INSERT INTO messaging_scheduledmessage (id, channel, "to", subject, body, html, send_at, status, attempts,
    max_attempts, next_attempt_at, claimed_by, provider_message_id, last_error_code, last_error, generation,
    source, created_at, updated_at)
SELECT gen_random_uuid(), CASE WHEN g %% 2 = 0 THEN 'sms' ELSE 'email' END, '+14155550123', '', 'hello', '',
       send_at, status, 1, 5, send_at, '', '', '', '', 0, 'bench', send_at, send_at
FROM (
    SELECT g,
           CASE WHEN g %% 100 = 0 THEN %(now)s::timestamptz + (g %% 86400) * interval '1 second'
                ELSE %(now)s::timestamptz - (g * interval '1 second') * (30.0 * 86400 / %(n)s) END AS send_at,
           CASE WHEN g %% 100 = 0 THEN 'pending' WHEN g %% 100 = 1 THEN 'pending' WHEN g %% 50 = 3 THEN 'failed'
                WHEN g %% 3 = 0 THEN 'sent' ELSE 'delivered' END AS status
    FROM generate_series(1, %(n)s) AS g
) AS seeded
"""

ATTEMPTS_SQL = """
INSERT INTO messaging_deliveryattempt (message_id, started_at, duration_ms, outcome, error_code, error,
    provider_message_id, worker)
SELECT id, send_at, 120,
       CASE WHEN status = 'failed' THEN 'permanent' WHEN status = 'pending' THEN 'transient' ELSE 'sent' END,
       '', '', '', 'bench'
FROM messaging_scheduledmessage
WHERE send_at <= %(now)s
"""


def seed(runs: int, messages: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from scheduling.services import sync_jobs

    now = timezone.now()
    job_ids = [job.pk for job in sync_jobs()]
    with connection.cursor() as cursor:
        steps = (("runs", RUNS_SQL, runs), ("messages", MESSAGES_SQL, messages), ("attempts", ATTEMPTS_SQL, 0))
        for label, sql, n in steps:
            started = time.perf_counter()
            cursor.execute(sql, {"job_ids": job_ids, "now": now, "n": n})
            print(f"seeded {cursor.rowcount:>9,} {label} in {time.perf_counter() - started:.1f} s")


def prune() -> None:
    from django.utils import timezone

    from scheduling.services import prune_runs

    started = time.perf_counter()
    deleted = prune_runs(timezone.now())
    print(f"prune: folded and deleted {deleted:,} runs in {time.perf_counter() - started:.1f} s")


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        tables = ("scheduling_jobrun", "scheduling_runtotal", "messaging_scheduledmessage", "messaging_deliveryattempt")
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def scrape_times(repeat: int) -> tuple[list[float], list[tuple[float, str]], int]:
    from django.db import connection
    from django.test import Client

    client = Client(HTTP_HOST="localhost", REMOTE_ADDR="127.0.0.1")
    client.get("/metrics")  # warm: imports, connection, plans
    times, queries = [], []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append((time.perf_counter() - started, sql))

    for _ in range(repeat):
        queries.clear()
        with connection.execute_wrapper(timed):
            started = time.perf_counter()
            response = client.get("/metrics")
            times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return times, list(queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with bench_database("bench_metrics"):
        seed(args.runs, args.messages)
        prune()
        vacuum()
        times, queries, size = scrape_times(args.repeat)
        ms = [t * 1000 for t in times]
        print(
            f"scrape /metrics: median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}) "
            f"over {args.repeat}; {len(queries)} queries; {size:,} bytes"
        )
        for seconds, sql in queries:
            print(f"  {seconds * 1000:7.1f} ms  {' '.join(sql.split())[:110]}")


if __name__ == "__main__":
    main()
