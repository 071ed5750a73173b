"""scheduling's modules import one another without a circle (type-only imports count too)."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT, start_manage, subprocess_env


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "scheduling":
                found.update(f"scheduling.{alias.name}" for alias in node.names)
            elif node.module.startswith("scheduling."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("scheduling."))
    return found


def test_scheduling_modules_form_no_import_circle():
    graph = {f"scheduling.{path.stem}": _imports(path) for path in (ROOT / "scheduling").glob("*.py")}
    visiting, done = set(), set()

    def visit(module: str, trail: list[str]) -> None:
        if module in done or module not in graph:
            return
        assert module not in visiting, " -> ".join([*trail[trail.index(module) :], module])
        visiting.add(module)
        for target in graph[module]:
            visit(target, [*trail, module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


@pytest.mark.django_db(transaction=True)
def test_a_successful_job_run_imports_no_url_module():
    """A job command stays cheap to start: a successful run does not resolve a URL (that
    imports every URL module: the admin, DRF, the webhooks' SDKs; 0.3 s of each start)."""
    worker = start_manage("watchdog")  # the first run creates the job rows; the second is every minute's
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, (out, err)
    worker = subprocess.run(
        [sys.executable, "-X", "importtime", "manage.py", "watchdog"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in worker.stderr.splitlines() if "|" in line}
    assert "scheduling.alerts" in imported  # the run finished and was judged: a real run
    assert not imported & {"config.urls", "rest_framework", "twilio"}
