"""`systemd-analyze verify` accepts the rendered unit, its ExecStart pointing at the root's venv."""

import subprocess
from pathlib import Path

import pytest

from tests.deploy.installer import INSTALL_DIR, installed, tool

UNIT = "/etc/systemd/system/messaging-cron-web.service"


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    analyze = tool("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # Can it verify at all here? A trivial unit must pass, or the container cannot run it.
    probe = tmp_path / "probe.service"
    probe.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    check = subprocess.run([analyze, "verify", str(probe)], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run in this container: {check.stderr.strip()[:200]}")
    unit = tmp_path / "messaging-cron-web.service"
    unit.write_text(unit_text)
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)


def test_systemd_analyze_verifies_the_rendered_unit(rendered, venv_in_root, tmp_path):
    text = installed(rendered, UNIT).read_text()
    # The unit names the installed paths; verify checks ExecStart exists, so use the root's copy.
    text = text.replace(f"{INSTALL_DIR}/", f"{installed(rendered, INSTALL_DIR)}/")
    result = verify(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_systemd_analyze_would_catch_a_missing_executable(rendered, venv_in_root, tmp_path):
    text = installed(rendered, UNIT).read_text()
    text = text.replace(f"{INSTALL_DIR}/.venv/bin/gunicorn", f"{venv_in_root}/bin/no-such-gunicorn")
    result = verify(text, tmp_path)
    assert result.returncode != 0 and "no-such-gunicorn is not executable" in result.stderr
