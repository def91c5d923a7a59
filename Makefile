# `make run` starts the whole service; `make test` runs lint, types and every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test chaos lint typecheck unit lock clean browser-deps

help:
	@echo "make run    start PostgreSQL + Redis (embedded unless DATABASE_URL/REDIS_URL are set),"
	@echo "            migrate, and run the API on :3000 with one worker (Ctrl-C stops it all)"
	@echo "make test   ruff + mypy + the whole test suite against real PostgreSQL and Redis"
	@echo "make chaos  500 orders through worker kills, Redis wipes, dropped DB connections"
	@echo "            and API restarts; prints the invariants (a smaller run is in make test)"
	@echo "make lock   re-pin requirements.lock (runtime) and requirements-dev.lock from pyproject.toml"

$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/order-engine up

lint: install
	$(BIN)/ruff check src tests migrations

typecheck: install
	$(BIN)/mypy src tests

test: lint typecheck browser-deps
	$(BIN)/pytest

# The dashboard's browser tests (tests/browser) drive Debian's chromium with playwright.
browser-deps:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else \
		echo "browser tests need /usr/bin/chromium: sudo apt-get install -y --no-install-recommends chromium"; \
	fi

chaos: install
	$(BIN)/python -m tests.chaos

unit: install
	$(BIN)/pytest tests/unit

lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
