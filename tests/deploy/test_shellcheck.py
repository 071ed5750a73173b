"""shellcheck is clean on every shell script we ship (deploy/ and scripts/)."""

import subprocess

import pytest

from tests.conftest import ROOT
from tests.deploy.installer import tool

SCRIPTS = sorted([*ROOT.glob("deploy/*.sh"), *ROOT.glob("scripts/*.sh")])


def test_every_shell_script_is_shellcheck_clean():
    shellcheck = tool("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (scripts/ensure_deploy_tools.sh installs it as root)")
    assert any(path.name == "install.sh" for path in SCRIPTS)
    result = subprocess.run([shellcheck, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_would_catch_a_fault(tmp_path):
    shellcheck = tool("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (scripts/ensure_deploy_tools.sh installs it as root)")
    faulty = tmp_path / "faulty.sh"
    faulty.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")  # unquoted: SC2086
    result = subprocess.run([shellcheck, str(faulty)], capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout
