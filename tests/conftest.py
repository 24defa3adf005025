"""Test-session settings shared by every test module."""

import os
from pathlib import Path

import jax
import pytest

# One JAX configuration for every selection and order of tests. Before this, it
# depended on which modules pytest collected: a module that built a JAX array at
# import started the backend with one CPU device, and a module that enabled float64
# at import flipped the global flag, so the full suite ran the Bayes tests with one
# device (chains vectorised) and `pytest tests/cli` with four (chains in parallel):
# different programs, different draws, and a demo that passed alone failed in the
# full run. Here the flag is set and the backend started (JAX's default: one CPU
# device) before any test module is imported. Tests that need other devices run
# in a subprocess.
jax.config.update("jax_enable_x64", True)
jax.devices()

# Keep compiled programs between local runs without touching the user's cache;
# a fresh clone (CI) starts empty and measures the real compile times.
os.environ.setdefault(
    "JAXPRO_CACHE_DIR", str(Path(__file__).parent.parent / ".pytest_cache" / "jaxpro-xla")
)


@pytest.fixture(autouse=True, scope="module")
def _fresh_compiled_programs():
    """Drop compiled programs after each test module.

    XLA's CPU executables hold hundreds of memory mappings each; the whole
    suite in one process would otherwise come near the kernel's limit (65,530),
    where the next compilation aborts. Programs shared by later modules come
    back from the on-disk cache.
    """
    yield
    import jax

    from jaxpro import _cache

    _cache.clear()
    jax.clear_caches()


#: every item collected, before ``-m`` deselects any (a module may count its own)
ALL_ITEMS = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Record every collected item, and mark slow the tests a module lists in
    ``SLOW_TESTS`` (``Class::test`` names): runs first, so ``-m 'not slow'`` sees the
    marks. For test classes imported from elsewhere (SciPy's), whose methods jaxpro
    cannot decorate."""
    config.stash[ALL_ITEMS] = list(items)
    for item in items:
        listed = getattr(item.module, "SLOW_TESTS", None) if item.module else None
        if listed and item.cls is not None and f"{item.cls.__name__}::{item.name}" in listed:
            item.add_marker(pytest.mark.slow)
