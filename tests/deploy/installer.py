"""Run deploy/install.sh as a dry run into a temporary root, the way CI and the docs do."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

INSTALLER = ROOT / "deploy" / "install.sh"
INSTALL_DIR = "/srv/messaging-cron"
# A user name no machine has, so the dry run must print useradd (and nothing may create it).
APP_USER = "mc-dry-run"
DOMAIN = "cron.example.org"


def tool(name: str) -> str | None:
    """A tool on PATH or in the sbin directories (a non-root PATH may lack them)."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def dry_run(root: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "APP_USER": APP_USER,
        "DOMAIN": DOMAIN,
        # The dry run renders the crontab with this interpreter (it has Django; no venv is built).
        "PYTHON": sys.executable,
        **env,
    }
    return subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def installed(root: Path, path: str) -> Path:
    """Where the dry run put a file that a real install writes to `path`."""
    return root / path.lstrip("/")


def tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: content hash and mode."""
    digest = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return digest
