"""logrotate accepts the rendered rules and would rotate the cron logs in var/log/."""

import grp
import os
import pwd
import subprocess

import pytest

from tests.deploy.installer import APP_USER, INSTALL_DIR, installed, tool


def test_logrotate_accepts_the_rules_and_matches_the_cron_logs(rendered, tmp_path):
    logrotate = tool("logrotate")
    if not logrotate:
        pytest.skip("logrotate is not installed (Debian package logrotate)")
    app = installed(rendered, INSTALL_DIR)
    (app / "var" / "log" / "tick.log").write_text('{"event": "tick"}\n')
    rules = installed(rendered, "/etc/logrotate.d/messaging-cron").read_text()
    # The rules name the installed paths and the service user: point them at the root and at us.
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    rules = rules.replace(f"{INSTALL_DIR}/", f"{app}/").replace(f"su {APP_USER} {APP_USER}", f"su {me} {group}")
    conf = tmp_path / "rules"
    conf.write_text(rules)
    result = subprocess.run(
        [logrotate, "--debug", "--force", "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"considering log {app}/var/log/tick.log" in result.stderr
    assert "error" not in result.stderr.lower()
