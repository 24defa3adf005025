"""Test-session settings shared by every test module."""

import os
from pathlib import Path

import pytest

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
