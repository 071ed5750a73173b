"""The installer's .env helper (standard library only: it runs before the virtualenv exists).

    envfile.py write ENV EXAMPLE KEY=VALUE...   create ENV from EXAMPLE with these values, or add
                                                to an existing ENV only the keys it does not set
    envfile.py dburl URL                        host, port, user, password, name, separated by
                                                \x1f (not whitespace: empty fields stay fields)

A VALUE of `{secret}` is replaced by a fresh secrets.token_urlsafe(32) (43 characters), and
`{secret:N}` by secrets.token_urlsafe(N) (Django's check --deploy wants a SECRET_KEY of 50
characters or more: {secret:50} gives 67), so a generated secret never appears on a command
line. An existing file's values are never changed: re-running the installer keeps its secrets.
"""

import os
import re
import secrets
import sys
import tempfile
from urllib.parse import unquote, urlsplit

SECRET = re.compile(r"\{secret(?::([1-9][0-9]*))?\}")
SECRET_BYTES = 32
FIELD_SEPARATOR = "\x1f"


def _generated(value: str) -> str:
    return SECRET.sub(lambda match: secrets.token_urlsafe(int(match[1] or SECRET_BYTES)), value)


def set_keys(text: str) -> set[str]:
    """Keys an env file sets (uncommented `KEY=value` lines)."""
    return set(re.findall(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=", text, flags=re.M))


def with_values(text: str, values: dict[str, str]) -> str:
    """`text` with each key set: an existing or commented-out `# KEY=` line is replaced in place."""
    for key, value in values.items():
        line = f"{key}={value}"
        pattern = re.compile(rf"^[ \t]*(#[ \t]*)?{key}[ \t]*=.*$", flags=re.M)
        set_line = re.compile(rf"^[ \t]*{key}[ \t]*=.*$", flags=re.M)
        target = set_line if set_line.search(text) else pattern
        if target.search(text):
            text = target.sub(lambda _match, line=line: line, text, count=1)
        else:
            text = text.rstrip("\n") + f"\n{line}\n"
    return text


def write_env(env_path: str, example_path: str, values: dict[str, str]) -> list[str]:
    """Create or complete the env file; returns the keys written."""
    if os.path.exists(env_path):
        with open(env_path, encoding="utf-8") as f:
            text = f.read()
        present = set_keys(text)
        # A secret read from KEY_FILE is set too: never add KEY beside it.
        values = {k: v for k, v in values.items() if k not in present and f"{k}_FILE" not in present}
        if not values:
            return []
    else:
        with open(example_path, encoding="utf-8") as f:
            text = f.read()
    text = with_values(text, {k: _generated(v) for k, v in values.items()})
    directory = os.path.dirname(os.path.abspath(env_path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".env.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o640)
    if os.path.exists(env_path):
        # The replacement keeps the old file's owner and group: an installer stopped after this
        # step must not leave a .env the service user can no longer read.
        old = os.stat(env_path)
        if hasattr(os, "chown") and os.geteuid() == 0:
            os.chown(tmp, old.st_uid, old.st_gid)
    os.replace(tmp, env_path)
    return list(values)


def database_parts(url: str) -> list[str]:
    parts = urlsplit(url)
    return [
        parts.hostname or "",
        str(parts.port or 5432),
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        parts.path.lstrip("/"),
    ]


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "write":
        values = dict(item.split("=", 1) for item in argv[3:])
        written = write_env(argv[1], argv[2], values)
        print(" ".join(written) if written else "")
        return 0
    if len(argv) == 2 and argv[0] == "dburl":
        print(FIELD_SEPARATOR.join(database_parts(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
