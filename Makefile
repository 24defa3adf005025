# jaxpro developer commands (GNU make).
#
#   make demo       create .venv from the lock, run `jaxpro demo`
#   make test       create .venv from the lock, run the default test suite (the CI gate)
#   make test-slow  the slow tests only (pytest -m slow)
#   make test-random  the default suite in a random order (SEED=n to repeat one)
#   make test-latest  the default suite against the newest releases (.venv-latest, not the gate)
#   make lock       re-resolve requirements/lock-py312-linux.txt on purpose (uv)
#   make lint       ruff check + ruff format --check
#   make bench      the curve-fitting benchmark (installs the bench extra)
#   make bench-compare JAX_B=v [JAX_A=v]  jaxpro's fit benchmarks under two JAX versions
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
# The test gate installs exact versions from this lock (resolved for CPython 3.12 on
# x86-64 Linux by `make lock`), so an upstream release cannot turn CI red overnight.
# Users' `pip install jaxpro` keeps the lower-bounded ranges of pyproject.toml.
LOCK := requirements/lock-py312-linux.txt
PINS := requirements/pins.txt
LATEST := .venv-latest
TOOLS := .venv-tools
PYTEST_ARGS ?=

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

.PHONY: help venv demo test test-slow test-random test-latest lock lint bench bench-compare clean

help:
	@sed -n '3,13p' Makefile | sed 's/^# \{0,1\}//'

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

# Reinstalls only when pyproject.toml or the lock changes (or the venv is new).
# Exact versions from the lock, then jaxpro itself without resolving anything else;
# `pip check` fails when the lock no longer satisfies pyproject.toml (run `make lock`).
$(STAMP): pyproject.toml $(LOCK) | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet -r $(LOCK)
	$(VENV_PY) -m pip install --quiet --no-deps -e .
	$(VENV_PY) -m pip check
	@touch $@

# The peers of the benchmarks, with the locked versions held as constraints.
$(BENCH_STAMP): $(STAMP)
	$(VENV_PY) -m pip install --quiet -c $(LOCK) -e ".[test,bench]"
	@touch $@

venv: $(STAMP)

demo: venv
	$(VENV)/bin/jaxpro demo

test: venv
	$(VENV_PY) -m pytest -q -m "not slow"

test-slow: venv
	$(VENV_PY) -m pytest -q -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no slow tests collected

# pytest-randomly is installed but off by default (addopts has -p no:randomly);
# -p randomly turns it back on. The seed is printed in the header; SEED=n repeats it.
test-random: venv
	$(VENV_PY) -m pytest -q -m "not slow" -p randomly $(if $(SEED),--randomly-seed=$(SEED),) $(PYTEST_ARGS)

# The newest releases that satisfy pyproject.toml, ignoring the lock and its pins: run
# this when refreshing the lock and say what changed. Reinstalled (upgraded) every time.
test-latest: | $(VENV_PY)
	@[ -x $(LATEST)/bin/python ] || "$(PYTHON)" -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable | grep -iE '^(jax|jaxlib|numpyro|numpy|scipy)=='
	JAXPRO_UNLOCKED=1 $(LATEST)/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Re-resolve the lock on purpose (uv, in its own venv): newest releases allowed by
# pyproject.toml, except what requirements/pins.txt holds back. Then run `make test`.
lock: | $(VENV_PY)
	@[ -x $(TOOLS)/bin/uv ] || { "$(PYTHON)" -m venv $(TOOLS) && $(TOOLS)/bin/python -m pip install --quiet uv; }
	$(TOOLS)/bin/uv pip compile pyproject.toml --extra test --extra mcp --constraint $(PINS) \
	  --upgrade --python-version 3.12 --python-platform x86_64-manylinux_2_28 --no-annotate \
	  --custom-compile-command "make lock" --output-file $(LOCK)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(BENCH_STAMP)
	$(VENV_PY) benchmarks/fit_bench.py

# jaxpro's fit benchmarks under two JAX versions side by side (a venv each, the rest of
# the lock shared): run it before moving the pin in requirements/pins.txt. JAX_A defaults
# to the pinned version; BENCH_ARGS adds options (--rounds 3, --memory, --cells ...).
JAX_A ?= $(shell sed -n 's/^jax==//p' $(PINS))
BENCH_ARGS ?=
bench-compare: | $(VENV_PY)
	@[ -n "$(JAX_B)" ] || { echo "usage: make bench-compare JAX_B=<version> [JAX_A=<version>] [BENCH_ARGS=...]" >&2; exit 2; }
	$(VENV_PY) benchmarks/bench_compare.py --a $(JAX_A) --b $(JAX_B) --python "$(PYTHON)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .venv-jax-* .pytest_cache .ruff_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
