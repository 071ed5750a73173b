"""The registry of jobs. Apps register their jobs here (from their `jobs.py`).

A job is a function `fn(ctx: JobContext) -> None` that does its work item by item through
the context; its name is the HTTP slug and, with `-` as `_`, its management command.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from scheduling import schedule
from scheduling.context import JobContext

JobFunc = Callable[[JobContext], None]


@dataclass(frozen=True)
class CliOption:
    """An option of the job's own command (`manage.py process_scheduled --workers 2`). Its
    value reaches the job as `ctx.options[dest]` (None when not given on the command line);
    runs started otherwise (HTTP, admin, the dashboard) have no such key."""

    flag: str
    type: Callable[[str], Any] = str
    help: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: JobFunc
    schedule: str
    timezone: str = "UTC"
    grace: timedelta = timedelta(minutes=5)
    max_runtime: timedelta = timedelta(minutes=10)
    allow_concurrent: bool = False
    description: str = ""
    # False for the jobs that must run however busy the machine is (the watchdog: an
    # overloaded machine is exactly when someone must hear that jobs are not running).
    guarded: bool = True
    options: dict = field(default_factory=dict)
    cli_options: tuple[CliOption, ...] = ()

    @property
    def command(self) -> str:
        return self.name.replace("-", "_")


_jobs: dict[str, JobSpec] = {}


def register(
    name: str,
    *,
    schedule: str,
    timezone: str = "UTC",
    grace: timedelta = timedelta(minutes=5),
    max_runtime: timedelta = timedelta(minutes=10),
    allow_concurrent: bool = False,
    description: str = "",
    guarded: bool = True,
    cli_options: tuple[CliOption, ...] = (),
) -> Callable[[JobFunc], JobFunc]:
    """Decorator: `@register("daily", schedule="5 * * * *")` over a job function."""

    def decorator(func: JobFunc) -> JobFunc:
        add(
            JobSpec(
                name=name,
                func=func,
                schedule=schedule,
                timezone=timezone,
                grace=grace,
                max_runtime=max_runtime,
                allow_concurrent=allow_concurrent,
                guarded=guarded,
                cli_options=cli_options,
                description=description or (func.__doc__ or "").strip().split("\n")[0],
            )
        )
        return func

    return decorator


# Names the scheduler itself uses: the tick's flock and log, and paths under /api/cron/.
RESERVED_NAMES = frozenset({"tick", "jobs", "runs"})


def add(spec: JobSpec) -> None:
    if not spec.name.replace("-", "").isalnum() or spec.name != spec.name.lower():
        raise ValueError(f"job name {spec.name!r} must be lower-case letters, digits and '-'")
    if spec.name in RESERVED_NAMES:
        raise ValueError(f"job name {spec.name!r} is reserved (taken: {', '.join(sorted(RESERVED_NAMES))})")
    schedule.validate(spec.schedule, spec.timezone)
    existing = _jobs.get(spec.name)
    if existing is not None and existing.func is not spec.func:
        raise ValueError(f"job {spec.name!r} is registered twice")
    _jobs[spec.name] = spec


def remove(name: str) -> None:
    """Forget a job (tests register throwaway jobs)."""
    _jobs.pop(name, None)


def get(name: str) -> JobSpec | None:
    return _jobs.get(name)


def all_jobs() -> list[JobSpec]:
    return sorted(_jobs.values(), key=lambda spec: spec.name)
