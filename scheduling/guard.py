"""Is the machine fit to start a job? Refuse when memory or CPU is already exhausted."""

import os
from pathlib import Path

from django.conf import settings


def available_memory_mb() -> float | None:
    """MemAvailable from /proc/meminfo, in MiB; None where there is no such file."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def overload_reason() -> str | None:
    """A readable reason when a threshold is crossed, else None."""
    free_mb = available_memory_mb()
    if free_mb is not None and free_mb < settings.CRON_MIN_FREE_MB:
        return f"overloaded: {free_mb:.0f} MB available, below CRON_MIN_FREE_MB={settings.CRON_MIN_FREE_MB}"
    load1 = os.getloadavg()[0]
    if load1 > settings.CRON_MAX_LOAD:
        return f"overloaded: load average {load1:.2f} above CRON_MAX_LOAD={settings.CRON_MAX_LOAD}"
    return None
