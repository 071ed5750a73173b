"""Run counts and durations per job and status, kept whole across prune.

Totals derived from JobRun rows would drop whenever prune deletes old runs, and a counter
that drops looks like a process restart to Prometheus (`increase()` would then count the
whole remaining total again). So prune folds the runs it deletes into RunTotal, in the same
transaction, and a total is always "live rows + folded rows".

Everything is aggregated in the database (one grouped query with a FILTER count per duration
bucket), never by loading runs.
"""

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from scheduling.models import JobRun, RunStatus, RunTotal

# Upper bounds, in seconds, of the run duration histogram (cumulative: "took at most").
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Runs that did (or tried) their work; skipped and abandoned runs have no meaningful duration.
TIMED_STATUSES: tuple[str, ...] = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)
FINISHED_STATUSES: tuple[str, ...] = (*TIMED_STATUSES, RunStatus.SKIPPED, RunStatus.ABANDONED)


def bucket_key(bound: float) -> str:
    return str(float(bound))


@dataclass
class RunTally:
    runs: int = 0
    duration_sum_ms: int = 0
    # bucket_key(bound) -> runs that took at most `bound` seconds.
    buckets: dict[str, int] = field(default_factory=dict)

    def add(self, other: "RunTally") -> None:
        self.runs += other.runs
        self.duration_sum_ms += other.duration_sum_ms
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count


Tallies = dict[tuple[int, str], RunTally]


def tally_runs(runs: QuerySet[JobRun]) -> Tallies:
    """(job id, status) -> tally of `runs`, in one grouped query."""
    per_bucket = {
        f"le_{i}": Count("pk", filter=Q(duration_ms__lte=round(bound * 1000)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    rows = (
        runs.order_by()
        .values("job_id", "status")
        .annotate(runs=Count("pk"), duration_sum_ms=Coalesce(Sum("duration_ms"), 0), **per_bucket)
    )
    return {
        (row["job_id"], row["status"]): RunTally(
            runs=row["runs"],
            duration_sum_ms=row["duration_sum_ms"],
            buckets={bucket_key(bound): row[f"le_{i}"] for i, bound in enumerate(DURATION_BUCKETS)},
        )
        for row in rows
    }


def folded_totals() -> Tallies:
    return {
        (total.job_id, total.status): RunTally(total.runs, total.duration_sum_ms, dict(total.duration_buckets))
        for total in RunTotal.objects.all()
    }


def run_totals() -> Tallies:
    """Every run ever recorded, pruned or not, per (job id, status): two queries.

    Call it inside one snapshot (a REPEATABLE READ transaction) so that a prune committing
    between the two queries cannot count a batch twice.
    """
    totals = tally_runs(JobRun.objects.all())
    for key, folded in folded_totals().items():
        totals.setdefault(key, RunTally()).add(folded)
    return totals


def fold_runs(runs: QuerySet[JobRun]) -> None:
    """Add `runs` to RunTotal; the caller deletes them in the same transaction.

    Only prune calls this, and prune runs under its job lock, so two folds never race to
    create the same (job, status) row.
    """
    with transaction.atomic():
        tallies = tally_runs(runs)
        if not tallies:
            return
        job_ids = {job_id for job_id, _ in tallies}
        existing = {
            (total.job_id, total.status): total
            for total in RunTotal.objects.select_for_update().filter(job_id__in=job_ids)
        }
        created, updated = [], []
        for (job_id, status), tally in tallies.items():
            total = existing.get((job_id, status))
            if total is None:
                total = RunTotal(job_id=job_id, status=status)
                created.append(total)
            else:
                updated.append(total)
            merged = RunTally(total.runs, total.duration_sum_ms, dict(total.duration_buckets))
            merged.add(tally)
            total.runs, total.duration_sum_ms, total.duration_buckets = (
                merged.runs,
                merged.duration_sum_ms,
                merged.buckets,
            )
        RunTotal.objects.bulk_create(created)
        RunTotal.objects.bulk_update(updated, ["runs", "duration_sum_ms", "duration_buckets"])
