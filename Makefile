# The two set-up commands: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://labfleet:labfleet@127.0.0.1:5432/postgres

.PHONY: bench-labs demo packages test test-sqlite test-postgresql lint install bench clean services wheel

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "labfleet needs Python 3.11+"' || \
	  (command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-dev)
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV))

$(VENV)/.installed: pyproject.toml scripts/link-seccomp.sh | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[controller,test]'
	@# libseccomp's Python bindings come from Debian (python3-seccomp), not PyPI:
	@# link the one extension module into the venv rather than all of dist-packages.
	@bash scripts/link-seccomp.sh $(BIN)/python
	@touch $@

# The pages' front-end packages (xterm.js, asciinema-player): npm, from web/package-lock.json.
web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed web/node_modules/.installed

packages:
	bash scripts/system-packages.sh

demo: install packages
	$(BIN)/labfleet demo --hosts 3

services: packages
	bash scripts/test-services.sh

lint: install
	$(BIN)/ruff check controller node_agent tests benchmarks

test-sqlite: install services
	$(BIN)/pytest -q

# The second pass covers what talks to the database; lab, kernel, fleet and playbook
# tests never touch it (nor does the demo, which keeps its own SQLite file), so
# running them twice would only double CI time.
PG_SUITES := tests/controller tests/node_agent tests/e2e/test_delivery.py tests/e2e/test_fleet.py \
	tests/e2e/test_labs.py tests/provision

test-postgresql: install services
	LABFLEET_TEST_DATABASE=postgresql LABFLEET_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/pytest -q $(wildcard $(PG_SUITES))

test: lint test-sqlite test-postgresql

# The wheel playbooks/ installs the agent from (labfleet_agent_wheel=dist/labfleet-*.whl).
wheel: install
	$(BIN)/pip wheel --no-deps --quiet -w dist .

bench: install services
	$(BIN)/python -m benchmarks.run_all

bench-labs: install
	$(BIN)/python -m benchmarks.labs.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
