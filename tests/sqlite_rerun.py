"""Run a test file again on SQLite (the demo's database) in a subprocess, for code whose SQL
differs between the backends. The rerun sets SQLITE_RERUN=1: tests that only make sense on
PostgreSQL, and the rerun test itself, skip on it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ON_SQLITE = os.environ.get("SQLITE_RERUN") == "1"
postgresql_only = pytest.mark.skipif(ON_SQLITE, reason="PostgreSQL only")


def rerun_on_sqlite(test_file: str, tmp_path: Path) -> str:
    """Run `test_file` on a fresh SQLite database; its pytest output (AssertionError if it fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'rerun.sqlite3'}", SQLITE_RERUN="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:randomly"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done.stdout
