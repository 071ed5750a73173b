"""deploy/envfile.py, the installer's .env helper (standard library only)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HELPER = ROOT / "deploy" / "envfile.py"
EXAMPLE = "# Debug.\nDEBUG=true\n# SECRET_KEY=change-me\nLOG_LEVEL=INFO\n"


def helper(*args: str) -> str:
    return subprocess.run([sys.executable, str(HELPER), *args], capture_output=True, text=True, check=True).stdout


def test_a_new_file_takes_the_example_with_values_set_in_place(tmp_path):
    example, env = tmp_path / "example", tmp_path / ".env"
    example.write_text(EXAMPLE)
    written = helper("write", str(env), str(example), "DEBUG=false", "SECRET_KEY={secret}", "CACHE_URL=dbcache://c")
    assert written.split() == ["DEBUG", "SECRET_KEY", "CACHE_URL"]
    lines = env.read_text().splitlines()
    assert lines[:2] == ["# Debug.", "DEBUG=false"]
    assert lines[2].startswith("SECRET_KEY=") and len(lines[2]) == len("SECRET_KEY=") + 43
    assert lines[3:] == ["LOG_LEVEL=INFO", "CACHE_URL=dbcache://c"]


def test_a_secret_can_ask_for_more_bytes(tmp_path):
    example, env = tmp_path / "example", tmp_path / ".env"
    example.write_text(EXAMPLE)
    helper("write", str(env), str(example), "SECRET_KEY={secret:50}", "URL=postgres://u:{secret}@h/d")
    text = env.read_text()
    key = text.split("SECRET_KEY=", 1)[1].split("\n", 1)[0]
    assert len(key) == 67  # secrets.token_urlsafe(50): Django's check --deploy wants 50 or more
    password = text.split("URL=postgres://u:", 1)[1].split("@", 1)[0]
    assert len(password) == 43


def test_an_existing_file_gains_only_missing_keys_and_a_secret_is_generated_once(tmp_path):
    example, env = tmp_path / "example", tmp_path / ".env"
    example.write_text(EXAMPLE)
    env.write_text("DEBUG=true\nSECRET_KEY_FILE=/etc/x\n")
    assert helper("write", str(env), str(example), "DEBUG=false", "SECRET_KEY={secret}", "CRON_SECRET={secret}")
    text = env.read_text()
    assert text.startswith("DEBUG=true\nSECRET_KEY_FILE=/etc/x\nCRON_SECRET=")
    assert "SECRET_KEY=" not in text.replace("SECRET_KEY_FILE=", "")
    assert helper("write", str(env), str(example), "CRON_SECRET={secret}").strip() == ""
    assert env.read_text() == text


def test_database_url_parts_keep_empty_fields():
    parts = helper("dburl", "postgres://app:p%40ss@db.internal:6432/app").rstrip("\n").split("\x1f")
    assert parts == ["db.internal", "6432", "app", "p@ss", "app"]
    assert helper("dburl", "postgres:///messaging").rstrip("\n").split("\x1f") == ["", "5432", "", "", "messaging"]


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_completed_file_keeps_its_owner_and_group(tmp_path):
    example, env = tmp_path / "example", tmp_path / ".env"
    example.write_text(EXAMPLE)
    env.write_text("DEBUG=true\n")
    os.chown(env, 65534, 65534)  # nobody: the service user
    helper("write", str(env), str(example), "CRON_SECRET={secret}")
    assert (env.stat().st_uid, env.stat().st_gid) == (65534, 65534)
    assert oct(env.stat().st_mode & 0o777) == "0o640"
