"""Every registered job is a management command: `python manage.py process_scheduled`.

There is no file per job. Django finds commands as files under `<app>/management/commands/`;
`install()` (called once the registry is filled, in SchedulingConfig.ready) adds one command
per registered job to Django's list of commands, as `scheduling` commands, and answers the
import Django then does for it with a module made from the job's spec. So `manage.py <job>`,
`call_command("<job>")`, `manage.py help` and shell completion see jobs exactly as they see
file-based commands, including jobs from CRON_EXTRA_JOB_MODULES and jobs registered later.
"""

import sys
import types
from collections.abc import Callable

from django.core import management
from django.core.exceptions import ImproperlyConfigured

from scheduling import registry

APP = "scheduling"
PACKAGE = f"{APP}.management.commands"


def command_module(spec: registry.JobSpec) -> types.ModuleType:
    """The module Django imports for the job's command: it holds one `Command` class."""
    from scheduling.cli import JobCommand

    name = f"{PACKAGE}.{spec.command}"
    module = types.ModuleType(name, f"The {spec.name} job as a management command.")
    module.Command = type("Command", (JobCommand,), {"job_name": spec.name, "__module__": name})  # type: ignore[attr-defined]
    return module


def _with_jobs(file_commands: Callable[[], dict[str, str]]) -> Callable[[], dict[str, str]]:
    def get_commands() -> dict[str, str]:
        commands = dict(file_commands())
        for spec in registry.all_jobs():
            if spec.command in commands:
                raise ImproperlyConfigured(
                    f"job {spec.name!r} would be the command {spec.command!r}, which "
                    f"{commands[spec.command]}/management/commands/{spec.command}.py already is: "
                    "commands come from the registry, so delete that file (or rename the job)"
                )
            module = sys.modules.get(f"{PACKAGE}.{spec.command}")
            if getattr(getattr(module, "Command", None), "job_name", None) != spec.name:
                sys.modules[f"{PACKAGE}.{spec.command}"] = command_module(spec)
            commands[spec.command] = APP
        return commands

    get_commands.job_commands = True  # type: ignore[attr-defined]
    return get_commands


def install() -> None:
    """Make the registry's jobs management commands (idempotent)."""
    if not getattr(management.get_commands, "job_commands", False):
        management.get_commands = _with_jobs(management.get_commands)
