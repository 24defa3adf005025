# jaxpro developer commands (GNU make).
#
#   make demo       create .venv, install jaxpro, run `jaxpro demo`
#   make test       create .venv, install jaxpro[test], run the default test suite
#   make test-slow  the slow tests only (pytest -m slow)
#   make lint       ruff check + ruff format --check
#   make bench      the curve-fitting benchmark (installs the bench extra)
#   make clean      remove .venv and caches
#
# The interpreter is the Python named in .python-version (found through pyenv,
# then on PATH, then under ~/.pyenv/versions); override with
# `make PYTHON=/path/to/python3.12 ...`. Python 3.12 or newer is required.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PY_VERSION := $(strip $(shell cat .python-version 2>/dev/null || echo 3.12))
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

# First candidate that exists and is Python >= 3.12.
ifndef PYTHON
PYTHON := $(shell \
  v='$(PY_VERSION)'; \
  for c in "$$(pyenv which python$$v 2>/dev/null)" "$$(command -v python$$v 2>/dev/null)" \
           $$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$$v*/bin/python$$v 2>/dev/null | sort -V -r) \
           "$$(command -v python3 2>/dev/null)"; do \
    if [ -n "$$c" ] && [ -x "$$c" ] && "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
      echo "$$c"; break; \
    fi; \
  done)
endif

.PHONY: help venv demo test test-slow lint bench clean

help:
	@sed -n '3,9p' Makefile | sed 's/^# \{0,1\}//'

$(VENV_PY):
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python >= 3.12 found (.python-version asks for $(PY_VERSION))." >&2; \
	  echo "       Install it (e.g. 'pyenv install $(PY_VERSION)') or run 'make PYTHON=/path/to/python3.12 ...'." >&2; \
	  exit 1; \
	fi
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' || { \
	  echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'); jaxpro needs 3.12 or newer." >&2; \
	  exit 1; }
	@echo "creating $(VENV) with $(PYTHON)"
	"$(PYTHON)" -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip

# Reinstalls only when pyproject.toml changes (or the venv is new).
$(STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -e ".[test]"
	@touch $@

$(BENCH_STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -e ".[test,bench]"
	@touch $@

venv: $(STAMP)

demo: venv
	$(VENV)/bin/jaxpro demo

test: venv
	$(VENV_PY) -m pytest -q -m "not slow"

test-slow: venv
	$(VENV_PY) -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no slow tests collected

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(BENCH_STAMP)
	$(VENV_PY) benchmarks/fit_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
