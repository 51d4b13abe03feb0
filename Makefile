# Every target bootstraps the virtual environment it needs from the pinned
# requirements, so a fresh clone needs nothing but Python 3.11+ and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

export PACT_DO_NOT_TRACK := true

.PHONY: run test check pacts openapi bench lock clean

run: $(VENV)/.runtime
	$(BIN)/python scripts/run_system.py

# .bench: the smoke tests of the benchmarks run the profiler too; node_modules: the
# bi-directional contract check runs the pinned openapi-pact-comparator.
test: $(VENV)/.bench node_modules/.package-lock.json
	$(BIN)/pytest

check: $(VENV)/.bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pacts: $(VENV)/.dev
	PACTS_REWRITE=1 $(BIN)/pytest tests/contracts -k consumer

# Rewrites openapi/*.json, each service's document as it serves it; review the diff like code.
openapi: $(VENV)/.dev
	$(BIN)/python scripts/write_openapi.py

# Real processes on free ports, load from wrk and Python generators (about 8 minutes on 2
# cores); writes bench/results/latest.{md,png} and overload.png. BENCH_ARGS='--scenarios spike'
# runs one scenario.
bench: $(VENV)/.bench
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.runtime: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed: set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(VENV)/.bench: $(VENV)/.dev requirements-bench.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

# The Node.js tools pinned in package-lock.json, installed with the machine's npm.
node_modules/.package-lock.json: package-lock.json
	npm ci --loglevel=error --no-audit --no-fund >/dev/null
	touch $@

# Re-resolves the pins from the ranges in pyproject.toml, in a scratch environment.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
	.lock-venv/bin/python -m pip freeze --exclude-editable > requirements.txt
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -vxF -f requirements.txt \
		| sed '1i -r requirements.txt' > requirements-dev.txt
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	.lock-venv/bin/python -m pip freeze --exclude-editable \
		| grep -vxF -f requirements.txt | grep -vxF -f requirements-dev.txt \
		| sed '1i -r requirements-dev.txt' > requirements-bench.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache var bench/results/runs
