"""Run deploy/install.sh as a dry run into a temporary root, the way CI and the docs do."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
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


# What `pg_lsclusters --no-header` prints on a Debian 12 host with its one cluster.
ONE_CLUSTER = "15  main    5432 online postgres /var/lib/postgresql/15/main pg.log\n"


def dry_run(root: Path, clusters: str = ONE_CLUSTER, **env: str) -> subprocess.CompletedProcess:
    """The installer's dry run, with `clusters` as this host's PostgreSQL clusters: a stand-in
    pg_lsclusters comes first on PATH, so the host's own clusters never count."""
    with tempfile.TemporaryDirectory() as bin_dir:
        fake = Path(bin_dir) / "pg_lsclusters"
        fake.write_text(f"#!/bin/sh\ncat <<'CLUSTERS'\n{clusters}CLUSTERS\n" if clusters else "#!/bin/sh\n")
        fake.chmod(0o755)
        environment = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
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
