"""The analytics jobs at scale: one `daily` run and one `weekly-summary` run on PostgreSQL.

    .venv/bin/python bench/analytics.py [--clients 1000 --messages 1000000 --leads 100000
                                         --calls 50000 --scheduled 200000 --days 30]

With DATABASE_URL set (PostgreSQL, empty of clients) it fills that database and leaves the
data there; otherwise it creates `bench_analytics` on postgres://postgres@127.0.0.1:5432
(BENCH_SERVER_URL to change), and drops it afterwards, so it never touches other data.

Data is written with COPY. The jobs run through scheduling.runner.run_job, as cron runs
them, with the clock set to a Tuesday 00:00 UTC (every client's Monday 08:00 has passed,
so every client is due a summary). Prints wall time and the SQL queries issued on the job's
connection (the advisory lock's own connection is not counted).
"""

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_SERVER_URL", "postgres://postgres@127.0.0.1:5432")
OWN_DATABASE = "bench_analytics"
ZONES = [
    "UTC",
    "America/Los_Angeles",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Africa/Johannesburg",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
]


def setup_django(database_url: str) -> None:
    # Set before settings load, so a .env file can never point the benchmark elsewhere.
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.update(
        {
            "LOG_LEVEL": "WARNING",
            "CRON_MIN_FREE_MB": "0",
            "CRON_MAX_LOAD": "100000",
            "SMS_PROVIDER": "console",
            "EMAIL_PROVIDER": "console",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def bench_database() -> Iterator[None]:
    given = os.environ.get("DATABASE_URL", "")
    if given:
        if not given.startswith(("postgres://", "postgresql://")):
            sys.exit(f"DATABASE_URL must be a PostgreSQL URL for this benchmark, not {given.split(':')[0]}")
        setup_django(given)
        from messaging.models import Client

        if Client.objects.exists():
            sys.exit("DATABASE_URL's database already has clients: point it at an empty database")
        yield
        return
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{OWN_DATABASE}"')
        conn.execute(f'CREATE DATABASE "{OWN_DATABASE}"')
    try:
        setup_django(f"{SERVER}/{OWN_DATABASE}")
        yield
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{OWN_DATABASE}" WITH (FORCE)')


def copy_rows(model, columns: list[str], rows: Iterable[tuple], now: datetime) -> int:
    """COPY rows into the model's table; the model's other columns get their defaults (a
    fresh UUID per row for a UUID key), so a new field with a default does not break this."""
    from django.db import connection, models

    given = [model._meta.get_field(name) for name in columns]
    fixed, fresh_uuid = [], None
    for field in model._meta.concrete_fields:
        if field in given or isinstance(field, models.AutoField):
            continue
        if isinstance(field, models.UUIDField) and field.primary_key:
            fresh_uuid = field
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            fixed.append((field, now))
        elif field.has_default() or not field.null:
            fixed.append((field, field.get_default()))
        else:
            fixed.append((field, None))
    names = [f.column for f in given] + [f.column for f, _ in fixed] + ([fresh_uuid.column] if fresh_uuid else [])
    tail = tuple(value for _, value in fixed)
    count = 0
    with connection.cursor() as cursor:
        quoted = ", ".join(connection.ops.quote_name(name) for name in names)
        with cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row + tail + ((uuid.uuid4(),) if fresh_uuid else ()))
                count += 1
    return count


def ids_of(model) -> list[int]:
    return list(model.objects.order_by("pk").values_list("pk", flat=True))


def generate(args: argparse.Namespace, now: datetime) -> dict[str, int]:
    from django.db import connection

    from messaging.models import Call, Client, Conversation, Lead, Message, ScheduledMessage

    rng = random.Random(42)
    start = now - timedelta(days=args.days)
    span = (now - start).total_seconds()

    def instant() -> datetime:
        return start + timedelta(seconds=rng.random() * span)

    copy_rows(
        Client,
        ["name", "timezone", "owner_email", "monthly_sms_allowance", "weekly_summary_enabled", "created_at"],
        (
            (
                f"Client {n}",
                ZONES[n % len(ZONES)],
                f"owner{n}@bench.example",
                rng.choice([50, 100, 200, 1000]),
                True,
                start,
            )
            for n in range(args.clients)
        ),
        now,
    )
    clients = ids_of(Client)
    lead_clients = [rng.choice(clients) for _ in range(args.leads)]
    copy_rows(
        Lead,
        ["client", "phone", "created_at", "last_activity_at"],
        ((c, f"+1415{n:07d}", t, t) for n, c in enumerate(lead_clients) for t in [instant()]),
        now,
    )
    # One conversation per lead; messages spread over them, in runs of one side then the other.
    copy_rows(
        Conversation,
        ["client", "lead", "phone", "created_at"],
        ((c, lead, f"+1415{n:07d}", start) for n, (c, lead) in enumerate(zip(lead_clients, ids_of(Lead), strict=True))),
        now,
    )
    conversations = ids_of(Conversation)
    per_conversation = max(1, args.messages // len(conversations))

    def messages() -> Iterator[tuple]:
        left = args.messages
        for index, conversation in enumerate(conversations):
            count = left if index == len(conversations) - 1 else min(left, per_conversation)
            left -= count
            at, direction = instant(), "in"
            for _ in range(count):
                yield conversation, direction, "bench", min(at, now - timedelta(seconds=1))
                at += timedelta(seconds=rng.expovariate(1 / 5400))
                if rng.random() < 0.7:
                    direction = "out" if direction == "in" else "in"

    copy_rows(Message, ["conversation", "direction", "body", "created_at"], messages(), now)
    copy_rows(
        Call,
        ["client", "caller", "status", "texted_back", "handled", "started_at"],
        (
            (rng.choice(clients), f"+1416{n:07d}", status, status == "missed" and rng.random() < 0.6, True, instant())
            for n in range(args.calls)
            for status in [rng.choice(["missed", "missed", "completed", "busy", "voicemail"])]
        ),
        now,
    )

    def scheduled() -> Iterator[tuple]:
        for n in range(args.scheduled):
            at = instant()
            channel = "sms" if rng.random() < 0.8 else "email"
            status = rng.choices(
                ["sent", "delivered", "undelivered", "failed", "pending", "cancelled"], [3, 8, 1, 1, 1, 1]
            )[0]
            sent = at if status in ("sent", "delivered", "undelivered") else None
            to = f"+1417{n:07d}" if channel == "sms" else f"lead{n}@bench.example"
            source = rng.choices(["api", "agent-stall", "missed-call", "follow-up"], [6, 1, 2, 1])[0]
            yield rng.choice(clients), channel, to, "Bench", "bench", at, at, status, sent, at, source, at

    copy_rows(
        ScheduledMessage,
        ["client", "channel", "to", "subject", "body", "send_at", "next_attempt_at", "status", "sent_at"]
        + ["claimed_at", "source", "created_at"],
        scheduled(),
        now,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        "clients": len(clients),
        "leads": args.leads,
        "conversations": len(conversations),
        "messages": args.messages,
        "calls": args.calls,
        "scheduled": args.scheduled,
    }


def timed_job(name: str, now: datetime) -> tuple[float, int, dict]:
    import time_machine
    from django.db import connection

    from scheduling.runner import run_job

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with time_machine.travel(now, tick=True), connection.execute_wrapper(count):
        started = time.perf_counter()
        result = run_job(name, "manual")
        elapsed = time.perf_counter() - started
    if result.status != "succeeded":
        sys.exit(f"{name}: {result.status}: {result.message}")
    return elapsed, queries, result.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--scheduled", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    # A Tuesday 00:00 UTC: Monday 08:00 has passed in every zone from UTC-12 to UTC+14.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    now = today - timedelta(days=(today.weekday() - 1) % 7)
    with bench_database():
        started = time.perf_counter()
        sizes = generate(args, now)
        print(
            f"data: {', '.join(f'{v:,} {k}' for k, v in sizes.items())} over {args.days} days "
            f"in {time.perf_counter() - started:.1f} s"
        )
        runs = [
            ("daily (first run: yesterday + back-fill)", "daily", now),
            ("daily (next hour: yesterday only)", "daily", now + timedelta(hours=1)),
            ("weekly-summary (every client due)", "weekly-summary", now + timedelta(hours=1, minutes=5)),
            ("weekly-summary (again: nothing due)", "weekly-summary", now + timedelta(hours=2)),
            # The summaries dropped, so every client is due again, with every day aggregated by
            # now: the usual case (an hourly `daily` keeps the days filled), without the back-fill.
            ("weekly-summary (due again, days aggregated)", "weekly-summary", now + timedelta(hours=2, minutes=5)),
        ]
        for label, job, at in runs:
            if "due again" in label:
                from messaging.models import ScheduledMessage

                ScheduledMessage.objects.filter(source="weekly-summary").delete()
            elapsed, queries, data = timed_job(job, at)
            shown = {k: v for k, v in data.items() if k not in ("processed", "succeeded", "failed")}
            print(f"{label:45} {elapsed:7.2f} s  {queries:6,} queries  {shown}")


if __name__ == "__main__":
    main()
