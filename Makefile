# Slipway: `make run` starts it on the embedded defaults, `make test` runs the suite on PostgreSQL and Redis.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
# Python >= 3.12: pyenv's 3.13.0 if present (.python-version), else whatever python3.13/3.12 is on PATH.
PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.13.0/bin/python3 python3.13 python3.12; do \
	command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/slipway
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint bench soak screenshots install chromium prometheus clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Slipway needs Python 3.12 or newer (python3.13 or python3.12 on PATH)."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
		|| $(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py load_demo
	@$(PY) manage.py ensure_admin
	@echo "Slipway is at http://127.0.0.1:$(PORT)/"
	@exec $(PY) manage.py serve --port $(PORT)

# Browser tests drive Debian's Chromium; install it when missing (root on CI and dev machines).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; \
		else echo "Install Chromium for the browser tests: sudo apt-get install chromium"; fi; }

# The Prometheus client's tests start Debian's Prometheus server (a Go binary) on a free port; install it when missing.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq prometheus) >/dev/null; \
		else echo "Install Prometheus for the monitoring client's tests: sudo apt-get install prometheus"; fi; }

test: $(STAMP) chromium prometheus
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) SLIPWAY_DATA_DIR=$(CURDIR)/var/test \
		SLIPWAY_FAST_PASSWORD_HASHING=1 \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(STAMP)
	DATABASE_URL= BENCH="$(BENCH)" $(PY) bench/run.py

# Not part of `make test`: the production runtime under mixed load with processes killed (docs/operations.md).
soak: $(STAMP)
	$(PY) ops/soak.py

# Not part of `make test`: docs/img's pictures, taken afresh from a throwaway `make run` demo (ops/screenshots.py).
screenshots: $(STAMP) chromium
	$(PY) ops/screenshots.py

clean:
	rm -rf $(VENV) var
