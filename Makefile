# `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
INSTALLED := $(VENV)/.installed
EDITABLE := --config-settings editable_mode=strict

.PHONY: help demo test test-fast bench lint typecheck arch pytest browser install clean

help:
	@echo "make demo       run the sandbox, the API and the demo page on SQLite under ./.idgate/"
	@echo "make test       lint, type-check, check the layers and run every test (what CI runs)"
	@echo "make test-fast  unit, contract and plugin tests only: seconds, for the inner loop"
	@echo "make bench      verifications/s, latency and CPU per request: idgate next to the naive handlers"
	@echo "make lint | typecheck | arch | pytest   one part of make test"

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "idgate needs Python 3.11 or newer on PATH" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	$(BIN)/python -m pip install -q -e '.[dev]' $(EDITABLE) >>$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

# Strict editable mode links the files that exist at install time (so mypy sees exactly what Python
# imports); re-link on every run so modules added since are picked up. It takes a few seconds.
# The example plugin (examples/policy-plugin) is installed beside idgate, as a product team's would be.
install: $(INSTALLED)
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . $(EDITABLE) >$(VENV)/relink.log 2>&1 \
		|| { cat $(VENV)/relink.log; exit 1; }
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e examples/policy-plugin >>$(VENV)/relink.log 2>&1 \
		|| { cat $(VENV)/relink.log; exit 1; }

demo: install
	$(BIN)/idgate demo

# The load generator is Debian's wrk; PortOne's own Node example runs when node is installed.
bench: install
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } >$(VENV)/bench-install.log 2>&1 \
		|| { cat $(VENV)/bench-install.log; echo "install wrk (Debian package wrk) and run make bench again" >&2; exit 1; }
	@if command -v npm >/dev/null; then npm install --prefix benchmarks/naive-node --no-audit --no-fund --no-package-lock -s >/dev/null 2>&1 || true; fi
	$(BIN)/python -m benchmarks.verify_load $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p idgate -p tests
	$(BIN)/mypy docs/verify_decision_log.py
	$(BIN)/mypy examples/policy-plugin/src examples/policy-plugin/tests

arch: install
	$(BIN)/lint-imports

# The browser tests drive Debian's chromium: the auditor page's at /usr/bin/chromium through Playwright
# (which never downloads a browser of its own; a Korean font for its screenshots), the docs page's
# chromium-headless-shell. CI machines start without them. Without chromium CI stops here; elsewhere
# the tests run and say loudly which did not.
browser:
	@if ! test -x /usr/bin/chromium || ! command -v chromium-headless-shell >/dev/null \
			|| ! fc-list :lang=ko 2>/dev/null | grep -q .; then \
		echo "installing Debian's chromium, chromium-headless-shell and fonts-nanum for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-headless-shell fonts-nanum; } >/tmp/idgate-browser-install.log 2>&1 \
			|| { test -x /usr/bin/chromium && echo "WARNING: could not install chromium-headless-shell or fonts-nanum" \
				"(see /tmp/idgate-browser-install.log): the docs page test needs the first; without the second" \
				"Korean shows as boxes in the screenshots" >&2 || true; }; \
	fi
	@test -x /usr/bin/chromium || { \
		tail -n 20 /tmp/idgate-browser-install.log >&2; \
		echo "" >&2; \
		echo "!!!! ERROR: could not install Debian's chromium (/usr/bin/chromium): the browser tests will NOT run." >&2; \
		echo "!!!! Install it as root (apt-get install -y chromium chromium-headless-shell fonts-nanum) and run make test again." >&2; \
		case "$$CI" in ""|0|false|no) ;; *) exit 1;; esac; \
	}

# Three processes on two cores: most tests spend their time waiting on servers, sockets and subprocesses.
PYTEST_WORKERS ?= 3

pytest: install browser
	$(BIN)/pytest -n $(PYTEST_WORKERS)
	cd examples/policy-plugin && ../../$(BIN)/pytest -q

test: lint typecheck arch pytest

test-fast: install
	$(BIN)/pytest -q tests/unit tests/contract tests/plugins

clean:
	rm -rf $(VENV) build .idgate .mypy_cache .pytest_cache .ruff_cache .hypothesis
