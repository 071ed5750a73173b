from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Cron jobs"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        # Each app declares its jobs in its own `jobs.py`; scheduling imports none of them.
        autodiscover_modules("jobs")
        # Extra job modules (e.g. the test suite's sample jobs in subprocesses).
        for module in getattr(settings, "CRON_EXTRA_JOB_MODULES", []):
            import_module(module)
        from scheduling import commands

        # Every registered job becomes a management command (no file per job).
        commands.install()
