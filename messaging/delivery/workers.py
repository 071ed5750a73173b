"""One delivery run over several processes: at 0 ms provider latency a process is CPU-bound in
the SDKs (about 2 ms of CPU per call), so `process_scheduled --workers N` forks N workers.

They share what already makes many runs on many hosts safe: the queue through SKIP LOCKED
claims, the allowances through the shared bucket (one row per allowance in PostgreSQL), and
the run's deadline (each worker's context has the parent's). Each worker opens its own
database connections (the parent closes its own before forking) and its own provider clients.
The parent waits, forwards SIGTERM/SIGINT (a worker finishes its sends in flight and gives
back the rest), and adds every worker's counts to the one run. A worker that dies without
reporting makes the run fail, saying so: its claimed messages stay `sending` until their
lease ends, and the next run reconciles them as after any crash.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from django.conf import settings
from django.db import connection, connections

from messaging.delivery import shared_bucket
from messaging.delivery.providers import reset_providers
from messaging.models import ScheduledMessage, Status
from scheduling.context import JobContext, request_stop, stop_requested
from scheduling.dbname import application_name

Work = Callable[[JobContext], None]
_PR_SET_PDEATHSIG = 1


def workers_for(requested: int | None, now: datetime) -> int:
    """How many processes to send from: `requested` (None: DELIVERY_WORKERS), 0 meaning one
    per core, never more than the messages due now (a process per message at most). One on
    SQLite (the demo), whose claims take no row locks to share a queue by."""
    if connection.vendor != "postgresql":
        return 1
    wanted = settings.DELIVERY_WORKERS if requested is None else requested
    if wanted == 0:
        wanted = os.cpu_count() or 1
    if wanted <= 1:
        return 1
    due = ScheduledMessage.objects.filter(status=Status.PENDING, send_at__lte=now, next_attempt_at__lte=now)
    return max(1, min(wanted, due[:wanted].count()))


def deliver_in_workers(ctx: JobContext, count: int, work: Work) -> None:
    """Run `work` in `count` forked processes and add their counts to `ctx`."""
    # A forked child must not use the parent's sockets: each opens its own connections.
    connections.close_all()
    shared_bucket.database.close()
    fork = multiprocessing.get_context("fork")
    workers: list[_Worker] = []
    for index in range(1, count + 1):
        reader, writer = fork.Pipe(duplex=False)
        process = fork.Process(
            target=_work_in_child, args=(ctx, os.getpid(), writer, work), name=f"deliver-worker-{index}"
        )
        process.start()
        writer.close()
        workers.append(_Worker(index, process, reader))
    ctx.log.info("delivery_workers_started", extra={"workers": count, "pids": [w.process.pid for w in workers]})
    _wait_for(workers)
    _report(ctx, workers)


class _Worker:
    def __init__(self, index: int, process: multiprocessing.process.BaseProcess, reader: Connection) -> None:
        self.index, self.process, self.reader = index, process, reader
        self.snapshot: dict[str, Any] | None = None

    def receive(self) -> None:
        try:
            self.snapshot = self.reader.recv()
        except (EOFError, OSError):  # died before reporting
            pass
        self.reader.close()

    def describe_death(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"


def _wait_for(workers: list[_Worker]) -> None:
    forwarded = False
    listening = {w.reader: w for w in workers}
    while listening or any(w.process.is_alive() for w in workers):
        if stop_requested() and not forwarded:
            forwarded = True  # each worker finishes its sends in flight and reports
            for worker in workers:
                if worker.process.is_alive():
                    os.kill(worker.process.pid, signal.SIGTERM)
        sentinels = [w.process.sentinel for w in workers if w.process.is_alive()]
        for ready in wait([*listening, *sentinels], timeout=0.2):
            if ready in listening:
                listening.pop(ready).receive()
        for reader in [r for r, w in listening.items() if not w.process.is_alive() and not r.poll()]:
            listening.pop(reader).receive()  # dead without a word: EOF
    for worker in workers:
        worker.process.join()


def _report(ctx: JobContext, workers: list[_Worker]) -> None:
    sent_by_worker = []
    for worker in workers:
        snapshot = worker.snapshot
        if snapshot is None:
            sent_by_worker.append(0)
            ctx.fail_run(
                f"delivery worker {worker.index} (pid {worker.process.pid}) {worker.describe_death()} before "
                f"reporting; the messages it had claimed are reconciled by a later run once their lease "
                f"({settings.DELIVERY_LEASE_SECONDS} s) ends"
            )
            continue
        error = snapshot.pop("error", "")
        ctx.absorb(snapshot)
        sent_by_worker.append(snapshot["data"].get("sent", 0))
        if error:
            ctx.fail_run(f"delivery worker {worker.index} (pid {worker.process.pid}) stopped: {error}")
    ctx.data["workers"] = len(workers)
    ctx.data["sent_by_worker"] = sent_by_worker


def _work_in_child(parent: JobContext, parent_pid: int, writer: Connection, work: Work) -> None:
    _stop_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    reset_providers()  # provider clients of its own (their HTTP sessions)
    ctx = parent.for_worker()
    error = ""
    try:
        with application_name(ctx.job_name):
            work(ctx)
    except BaseException as exc:  # reported to the parent, which fails the run with it
        error = f"{type(exc).__name__}: {exc}"
        ctx.log.exception("delivery_worker_error")
    finally:
        try:
            writer.send({**ctx.snapshot(), "error": error})
        except OSError:  # the parent is gone (killed): nobody records this run any more
            pass
        writer.close()
        connections.close_all()
        shared_bucket.database.close()


def _request_stop(signum: int, frame: Any) -> None:
    # Only sets the flag, as the command's handler does: a send in flight is never cut.
    request_stop(signal.Signals(signum).name)


def _stop_with_parent(parent_pid: int) -> None:
    """A worker whose parent dies (kill -9) gets SIGTERM: it finishes its sends in flight,
    gives back its other claims and exits, instead of sending on for a run nobody records."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent check below still catches most
        pass
    if os.getppid() != parent_pid:
        request_stop("parent exited")
