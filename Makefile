# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DEMO_ENV := DATABASE_URL=sqlite:///db.sqlite3 DEBUG=true SMS_PROVIDER=console EMAIL_PROVIDER=console

.PHONY: demo test lint venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(DEMO_ENV) $(PY) manage.py migrate --verbosity 0
	$(DEMO_ENV) $(PY) manage.py seed_demo
	$(DEMO_ENV) $(PY) manage.py cron run-due
	@# Deliver what the first tick queued (weekly summaries, text-backs) before the server starts.
	-$(DEMO_ENV) $(PY) manage.py process_scheduled
	$(DEMO_ENV) $(PY) manage.py runserver 127.0.0.1:8000

test: venv
	PYTHON=$(PY) scripts/ensure_postgres.sh
	scripts/ensure_chromium.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
