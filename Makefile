# Developer and CI entry points for trio-asyncio.
#
#   make test        run the test suite in .venv (created on first use)
#   make test-all    run the test suite on every supported Python (3.10-3.13)
#   make demo        run examples/demo.py
#   make bench       run the benchmarks (python -m benchmarks)
#   make soak        churn connections, subprocesses, loops, executor jobs for
#                    SOAK_MINUTES (10); fail on errors, RSS growth, fd/thread leaks
#   make docs        build the HTML documentation into docs/_build/html
#   make lint        ruff check + ruff format --check
#   make clean       remove virtualenvs, build products and caches
#
# Variables:
#   PYTHON=python3       interpreter used to create .venv
#   PYTEST_ARGS=...      extra arguments for pytest, e.g. PYTEST_ARGS='-x -k loop'
#   PYTHON_VERSIONS=...  versions covered by test-all
#   SOAK_MINUTES=10      length of `make soak` (CI runs 2)
#   TEST_JOBS=3          Python versions test-all runs at once
#   CONFORMANCE_JOBS=3   Python versions conformance runs at once
#   LIBRARY_SUITES_JOBS=2  Python versions library-suites runs at once
#   CI=true              makes test-all fail (not skip) when an interpreter is missing

PYTHON ?= python3
PYTEST_ARGS ?=
PYTHON_VERSIONS ?= 3.10 3.11 3.12 3.13
SOAK_MINUTES ?= 10
SOAK_ARGS ?=
# How many Python versions test-all and conformance run at once.
TEST_JOBS ?= 3
CONFORMANCE_JOBS ?= 3

VENV := .venv
VPY := $(VENV)/bin/python
# Stamp files record that a venv holds an up-to-date install of this project;
# they are older than pyproject.toml after an edit, which triggers a reinstall.
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
BENCH_STAMP := $(VENV)/.installed-bench
DEMO_STAMP := $(VENV)/.installed-demo
SOAK_STAMP := $(VENV)/.installed-soak

PIP_FLAGS := --quiet --disable-pip-version-check
PYTEST := -m pytest -p no:cacheprovider
LINT_PATHS := trio_asyncio tests benchmarks examples soak

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

.PHONY: venv .venv test test-all demo bench soak docs lint format clean

# ---------------------------------------------------------------- environment

venv .venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test]'
	@touch $@

$(DOCS_STAMP): $(STAMP)
	@echo "==> installing the docs extra into $(VENV)"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test,docs]'
	@touch $@

$(DEMO_STAMP): $(STAMP)
	@echo "==> installing the demo extra into $(VENV)"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test,demo]'
	@touch $@

$(BENCH_STAMP): $(STAMP)
	@echo "==> installing the bench extra into $(VENV)"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test,bench]'
	@touch $@

$(SOAK_STAMP): $(STAMP)
	@echo "==> installing the soak extra into $(VENV)"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test,soak]'
	@touch $@

# ---------------------------------------------------------------------- tests

test: $(STAMP)
	$(VPY) $(PYTEST) $(PYTEST_ARGS)

# One virtualenv per Python version (.venv-3.10, ...), TEST_JOBS versions at
# a time (.ci/per-python: each run's output is printed whole when it ends).
# A version whose interpreter cannot be found is skipped with a notice,
# except under CI=true, where it counts as a failure. All versions are
# tried; the target fails at the end if any of them failed.
test-all:
	@bash .ci/per-python test $(TEST_JOBS) "$(PYTHON_VERSIONS)" \
	    '"$$PY" $(PYTEST) $(PYTEST_ARGS)'

# ---------------------------------------------------------------- other tools

demo: $(DEMO_STAMP)
	$(VPY) examples/demo.py

bench: $(BENCH_STAMP)
	$(VPY) -m benchmarks $(BENCH_ARGS)

# The soak test (soak/README.rst): CSV and plot in build/soak/.
soak: $(SOAK_STAMP)
	$(VPY) -m soak --minutes $(SOAK_MINUTES) --out build/soak $(SOAK_ARGS)

# Real asyncio libraries against real servers (tests/integration/README.rst:
# services, TRIO_ASYNCIO_TEST_* addresses; under CI=true a missing service fails).
INTEGRATION_STAMP := $(VENV)/.installed-integration

$(INTEGRATION_STAMP): $(STAMP)
	@echo "==> installing the integration extra into $(VENV)"
	$(VPY) -m pip install $(PIP_FLAGS) -e '.[test,integration]'
	@touch $@

.PHONY: integration
integration: $(INTEGRATION_STAMP)
	$(VPY) $(PYTEST) tests/integration $(PYTEST_ARGS)

docs: $(DOCS_STAMP)
	$(VPY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "==> docs built in docs/_build/html/index.html"

lint: $(STAMP)
	@paths=""; for p in $(LINT_PATHS); do [ -e "$$p" ] && paths="$$paths $$p"; done; \
	if [ -z "$$paths" ]; then echo "nothing to lint"; exit 0; fi; \
	status=0; \
	echo "==> ruff check$$paths"; $(VENV)/bin/ruff check $$paths || status=1; \
	echo "==> ruff format --check$$paths"; $(VENV)/bin/ruff format --check $$paths || status=1; \
	exit $$status

# Not required by anything; rewrites files in place.
format: $(STAMP)
	@paths=""; for p in $(LINT_PATHS); do [ -e "$$p" ] && paths="$$paths $$p"; done; \
	$(VENV)/bin/ruff check --fix $$paths; $(VENV)/bin/ruff format $$paths

clean:
	rm -rf $(VENV) .venv-3.* build dist docs/_build .pytest_cache .hypothesis .ruff_cache
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +

# ---------------------------------------------------------------- library suites

# Other libraries' own test suites (anyio, janus, async-timeout; aiohttp with
# LIBRARY_SUITES_ARGS='--suite all'), pinned, each run on the stdlib loop and
# on ours; a test failing on ours only fails (tests/library_suites).
LIBRARY_SUITES_ARGS ?=
LIBRARY_SUITES_JOBS ?= 2

.PHONY: library-suites
library-suites:
	@bash .ci/per-python library-suites $(LIBRARY_SUITES_JOBS) "$(PYTHON_VERSIONS)" \
	    '"$$PY" -m tests.library_suites.run $(LIBRARY_SUITES_ARGS)'

# ---------------------------------------------------------------- conformance

# CPython's own test.test_asyncio on our loop (tests/conformance), on every
# supported Python, CONFORMANCE_JOBS versions at a time, each in its
# .venv-X.Y (.ci/per-python, as test-all). A missing interpreter or stdlib
# test package is skipped with a notice, or fails under CI=true. JSON
# reports go to build/conformance/.
#   CONFORMANCE_ARGS=...  extra arguments, e.g. CONFORMANCE_ARGS='--mode loop -k "*streams*"'
CONFORMANCE_ARGS ?=

.PHONY: conformance
conformance:
	@bash .ci/per-python conformance $(CONFORMANCE_JOBS) "$(PYTHON_VERSIONS)" \
	    '"$$PY" -m tests.conformance.run $(CONFORMANCE_ARGS)'
