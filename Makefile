# Two commands: `make run` (start on the embedded default) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_EMAIL ?= admin@example.com
DEMO_PASSWORD ?= commagent-demo
# The end-to-end tests drive Debian's Chromium; Playwright must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
# `make run` polls its mailboxes (the demo folder included) this often; an exported
# COMMAGENT_SYNC_INTERVAL_SECONDS wins.
SYNC_INTERVAL ?= 30

.PHONY: run test lint typecheck test-sqlite test-postgres venv clean browser bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/commagent db upgrade
	@echo ""
	@echo "  Communication Agent on http://$(HOST):$(PORT)  (health: /healthz, API: /api/v1, docs: /docs)"
	@set -o pipefail; $(BIN)/commagent demo --email "$(DEMO_EMAIL)" --password "$(DEMO_PASSWORD)" --url "http://$(HOST):$(PORT)" | sed 's/^/  /'
	@echo ""
	COMMAGENT_SYNC_INTERVAL_SECONDS=$${COMMAGENT_SYNC_INTERVAL_SECONDS:-$(SYNC_INTERVAL)} $(BIN)/commagent serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's chromium package for the end-to-end tests (tests/e2e), installed once if missing.
# Without apt-get they skip locally; under CI=true a missing browser fails them.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1; then \
			sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
			echo "Installing Debian's chromium for the end-to-end tests"; \
			$$sudo apt-get update -qq && \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends chromium >/dev/null; \
		else \
			echo "chromium is missing and apt-get is not available: tests/e2e will be skipped"; \
		fi; \
	}

test-sqlite: $(STAMP) browser
	$(BIN)/pytest

# Under CI=true an unreachable PostgreSQL fails the run (see tests/conftest.py).
test-postgres: $(STAMP) browser
	COMMAGENT_TEST_DATABASE_URL=$(TEST_PG_URL) $(BIN)/pytest

test: lint typecheck test-sqlite test-postgres

# Every benchmark in its own process, one table (bench/run.py; `python -m bench.run --quick` for
# smaller sizes). Its PostgreSQL rows use scratch databases on the local server.
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
