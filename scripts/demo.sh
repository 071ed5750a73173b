#!/bin/sh
# `make demo`: SQLite, console providers, demo data, every job once, then the scheduler loop
# (what crontab does in production) beside the web server. Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# DEBUG is on, so the demo's CRON_SECRET need not be strong; never use it anywhere else.
export DATABASE_URL=sqlite:///db.sqlite3 DEBUG=true SMS_PROVIDER=console EMAIL_PROVIDER=console
export CRON_SECRET=demo-cron-secret
mkdir -p var/log
"$PY" manage.py migrate --verbosity 0
seeded=$("$PY" manage.py seed_demo)
# The first tick: every job once, then deliver what it queued (summaries, text-backs).
"$PY" manage.py cron run-due >> var/log/demo-first-tick.log 2>&1
"$PY" manage.py process_scheduled >> var/log/demo-first-tick.log 2>&1 || true
echo "First tick done: every job ran once (output in var/log/demo-first-tick.log)."
echo "$seeded"
"$PY" manage.py cron loop &
loop=$!
trap 'kill -TERM "$loop" 2>/dev/null || true; wait "$loop" 2>/dev/null || true' EXIT INT TERM
"$PY" manage.py runserver --noreload 127.0.0.1:8000
