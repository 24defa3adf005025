"""float64 without touching the user's global JAX configuration.

jaxpro's least-squares and inference kernels need float64: certified problems
lose digits in float32. Rather than calling
``jax.config.update("jax_enable_x64", True)`` at import (which silently
changes every other JAX computation in the process), each jaxpro entry point
runs inside ``jax.enable_x64(True)``, a thread-local context. Inputs are
converted to float64 inside that context and results come back as NumPy
float64 arrays, so they are unaffected by the global setting afterwards.

Model functions written by the user run inside the same context, so their
``jnp`` calls produce float64 too; arrays they captured from outside (built
under float32) keep their lower precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Context in which JAX computes in float64, restoring the previous mode on exit."""
    import jax

    with jax.enable_x64(True):
        yield
