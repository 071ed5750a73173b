"""A dry run of deploy/install.sh into a temporary root: what it renders, what it would run."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import manage_py
from tests.deploy.installer import APP_USER, DOMAIN, INSTALL_DIR, INSTALLER, dry_run, installed, tool, tree_digest

pytestmark = pytest.mark.skipif(
    not tool("rsync"), reason="rsync is not installed: the installer copies the project with it"
)

RENDERED_FILES = [
    f"{INSTALL_DIR}/.env",
    f"{INSTALL_DIR}/manage.py",
    "/etc/cron.d/messaging-cron",
    "/etc/systemd/system/messaging-cron-web.service",
    "/etc/logrotate.d/messaging-cron",
    "/etc/nginx/sites-available/messaging-cron",
]


def env_values(path: Path) -> dict[str, str]:
    pairs = re.findall(r"^([A-Z_]+)=(.*)$", path.read_text(), flags=re.M)
    assert len(pairs) == len(dict(pairs)), "a key is set twice"
    return dict(pairs)


def test_the_dry_run_renders_every_file_into_the_root(rendered):
    for path in RENDERED_FILES:
        assert installed(rendered, path).is_file(), path
    unit = installed(rendered, "/etc/systemd/system/messaging-cron-web.service").read_text()
    assert f"User={APP_USER}\n" in unit and f"ExecStart={INSTALL_DIR}/.venv/bin/gunicorn" in unit
    site = installed(rendered, "/etc/nginx/sites-available/messaging-cron").read_text()
    assert f"server_name {DOMAIN};" in site and "example.com" not in site
    assert f"su {APP_USER} {APP_USER}" in installed(rendered, "/etc/logrotate.d/messaging-cron").read_text()


def test_the_dry_run_prints_system_commands_and_runs_none(tmp_path):
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    would = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("would run:")]
    assert any("useradd --system" in line and line.endswith(APP_USER) for line in would)
    # From /: postgres may not enter the directory the installer was started from.
    assert any("runuser -u postgres -- env -C / psql" in line for line in would)
    assert any("manage.py migrate --noinput" in line for line in would)
    assert any("manage.py collectstatic" in line for line in would)
    assert "would run: systemctl daemon-reload" in would
    with pytest.raises(KeyError):
        pwd.getpwnam(APP_USER)  # not created
    # Nothing outside the root: only the dry-run root holds the files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc", "srv"]


def test_a_new_env_gets_generated_secrets_and_production_settings(rendered):
    env_file = installed(rendered, f"{INSTALL_DIR}/.env")
    values = env_values(env_file)
    assert values["DEBUG"] == "false"
    assert values["ALLOWED_HOSTS"] == DOMAIN and values["CSRF_TRUSTED_ORIGINS"] == f"https://{DOMAIN}"
    # check --deploy wants a SECRET_KEY of 50 characters or more (security.W009).
    assert re.fullmatch(r"[A-Za-z0-9_-]{67}", values["SECRET_KEY"])  # secrets.token_urlsafe(50)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", values["CRON_SECRET"])  # secrets.token_urlsafe(32)
    assert values["SECRET_KEY"] != values["CRON_SECRET"]
    assert re.fullmatch(r"postgres://messaging:[A-Za-z0-9_-]{43}@127\.0\.0\.1:5432/messaging", values["DATABASE_URL"])
    assert values["CACHE_URL"] == "dbcache://cron_cache"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640


def test_a_new_env_passes_check_deploy_without_a_warning(rendered, tmp_path):
    """The installer runs `check --deploy`, which only warns (exit 0): a warning about the
    generated settings (security.W009, a SECRET_KEY under 50 characters) would go unnoticed."""
    app = installed(rendered, INSTALL_DIR)
    # .env's own database is not there: an SQLite file stands in (environment beats .env).
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/check.sqlite3",
    }
    result = manage_py("check", "--deploy", "--fail-level", "WARNING", env=environment, cwd=app)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("clusters", "env", "port"),
    [
        # 5432 was taken when the cluster was made (another PostgreSQL, a chroot's host).
        ("15 main 5433 online postgres /var/lib/postgresql/15/main log\n", {}, "5433"),
        # The first online cluster, not the first listed.
        ("13 old 5432 down postgres /a log\n15 main 5434 online postgres /b log\n", {}, "5434"),
        # None online: the first one (the installer starts it).
        ("15 main 5435 down postgres /var/lib/postgresql/15/main log\n", {}, "5435"),
        # No cluster yet (the postgresql package comes with the install): the default port.
        ("", {}, "5432"),
        ("15 main 5433 online postgres /a log\n16 new 6543 online postgres /b log\n", {"DB_PORT": "6543"}, "6543"),
    ],
)
def test_a_new_env_takes_the_port_of_this_hosts_postgresql(tmp_path, clusters, env, port):
    result = dry_run(tmp_path, clusters=clusters, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    url = env_values(installed(tmp_path, f"{INSTALL_DIR}/.env"))["DATABASE_URL"]
    assert url.endswith(f"@127.0.0.1:{port}/messaging"), url
    assert f"-p {port} " in result.stdout


def test_a_database_url_on_a_port_no_local_cluster_holds_is_refused(tmp_path):
    env_file = installed(tmp_path, f"{INSTALL_DIR}/.env")
    env_file.parent.mkdir(parents=True)
    env_file.write_text("DATABASE_URL=postgres://messaging:pw@127.0.0.1:5432/messaging\n")
    result = dry_run(tmp_path, clusters="15 main 5433 online postgres /var/lib/postgresql/15/main log\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is on port 5432 of this host, but no local\nPostgreSQL cluster uses that port" in result.stderr
    assert "15 main 5433 online" in result.stderr
    assert "psql" not in result.stdout
    assert not installed(tmp_path, "/etc/cron.d/messaging-cron").exists()


def test_a_non_numeric_db_port_is_refused(tmp_path):
    result = dry_run(tmp_path, DB_PORT="5432;x")
    assert result.returncode == 1 and "DB_PORT must be a port number" in result.stderr


def test_a_second_dry_run_changes_nothing_and_keeps_the_secrets(tmp_path):
    assert dry_run(tmp_path).returncode == 0
    first = tree_digest(tmp_path)
    again = dry_run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert tree_digest(tmp_path) == first
    assert "kept as it is" in again.stdout and "unchanged" in again.stdout


def test_an_existing_env_keeps_its_values_and_only_gains_what_is_missing(tmp_path):
    env_file = installed(tmp_path, f"{INSTALL_DIR}/.env")
    env_file.parent.mkdir(parents=True)
    env_file.write_text(
        "DEBUG=false\nSECRET_KEY=my-own-secret-key-of-more-than-thirty-two-chars\n"
        "DATABASE_URL=postgres://app:pw@db.internal:5432/app\nCRON_SECRET_FILE=/etc/messaging-cron/cron_secret\n"
    )
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    values = env_values(env_file)
    assert values["SECRET_KEY"] == "my-own-secret-key-of-more-than-thirty-two-chars"
    assert values["DATABASE_URL"] == "postgres://app:pw@db.internal:5432/app"
    assert "CRON_SECRET" not in values  # read from its file: never added beside it
    assert values["ALLOWED_HOSTS"] == DOMAIN and values["CACHE_URL"] == "dbcache://cron_cache"
    # A database on another host: the installer creates nothing there, and says so.
    assert "the database is on db.internal" in result.stdout
    assert "psql" not in result.stdout


def test_a_placeholder_secret_stops_the_installer_with_what_to_do(tmp_path):
    env_file = installed(tmp_path, f"{INSTALL_DIR}/.env")
    env_file.parent.mkdir(parents=True)
    env_file.write_text("CRON_SECRET=change-me-long-random-string\n")
    result = dry_run(tmp_path)
    assert result.returncode == 1
    assert "CRON_SECRET in" in result.stderr and "still the example placeholder" in result.stderr
    assert not installed(tmp_path, "/etc/cron.d/messaging-cron").exists()


def test_an_upgrade_replaces_code_and_keeps_var_and_an_edited_nginx_site(tmp_path):
    assert dry_run(tmp_path).returncode == 0
    app = installed(tmp_path, INSTALL_DIR)
    (app / "dropped_from_the_project.py").write_text("")
    (app / "var" / "log" / "tick.log").write_text("old log\n")
    site = installed(tmp_path, "/etc/nginx/sites-available/messaging-cron")
    site.write_text(site.read_text() + "# edited by hand\n")
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (app / "dropped_from_the_project.py").exists()
    assert (app / "var" / "log" / "tick.log").read_text() == "old log\n"
    assert site.read_text().endswith("# edited by hand\n")
    assert installed(tmp_path, "/etc/nginx/sites-available/messaging-cron.dist").is_file()
    assert "kept your edited" in result.stdout


def test_a_real_install_refuses_to_start_when_not_root():
    command = ["bash", str(INSTALLER)]
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot try the installer as another user")
        # A copy `nobody` can read: the checkout may sit in a directory only root may enter.
        readable = Path(tempfile.mkdtemp(dir="/tmp"))
        (readable / "deploy").mkdir()
        copy = readable / "deploy" / "install.sh"
        shutil.copy(INSTALLER, copy)
        for path in (readable, readable / "deploy"):
            path.chmod(0o755)
        copy.chmod(0o644)
        command = ["runuser", "-u", "nobody", "--", "bash", str(copy)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(readable, ignore_errors=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "run me as root" in result.stderr and "--root" in result.stderr
