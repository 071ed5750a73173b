import sys
from pathlib import Path

import pytest

from tests.deploy.installer import INSTALL_DIR, dry_run, installed, tool


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A temporary root holding everything one dry run of the installer renders."""
    if not tool("rsync"):
        pytest.skip("rsync is not installed: the installer copies the project with it")
    root = tmp_path_factory.mktemp("root")
    result = dry_run(root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def venv_in_root(rendered: Path) -> Path:
    """The dry run builds no virtualenv: point the root's .venv at the test interpreter's."""
    venv = installed(rendered, INSTALL_DIR) / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    return venv
