#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers; start the local cluster if it is installed
# and down. TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) says where.
set -euo pipefail
url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
py="${PYTHON:-.venv/bin/python}"

reachable() {
  "$py" - "$url" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

if reachable; then exit 0; fi
if command -v pg_lsclusters >/dev/null 2>&1; then
  echo "PostgreSQL is not answering at $url; starting the local cluster(s)..."
  pg_lsclusters --no-header | while read -r version cluster _port status _rest; do
    if [ "$status" != "online" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true
    fi
  done
  for _ in $(seq 1 30); do
    if reachable; then exit 0; fi
    sleep 1
  done
fi
echo "PostgreSQL is not reachable at $url. Start it, or set TEST_DATABASE_URL to a server the tests may use." >&2
exit 1
