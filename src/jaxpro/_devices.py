"""Giving JAX one CPU device per core, so long fits split their passes over every core.

JAX's CPU backend shows a single device by default, and XLA runs a pass over
the data on one core. With one device per core, jaxpro splits the chunks of
long data (over 2**20 points per device) across them. This is a
process-wide choice that must be made before JAX starts its backend, so it is
never made for you at import: call :func:`use_cpu_cores` first thing, or set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` yourself.
"""

from __future__ import annotations

import os

from jaxpro.errors import BackendStartedError, InputError


def use_cpu_cores(count: int | None = None) -> int:
    """Give JAX's CPU backend ``count`` devices (default: one per available core).

    Args:
        count: number of CPU devices; None means ``len(os.sched_getaffinity(0))``.

    Returns:
        The number of CPU devices configured.

    Raises:
        BackendStartedError: JAX already initialised its backend in this process.
        InputError: ``count`` is not a positive integer.
    """
    if count is None:
        count = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError("must be a positive integer", argument="count", received=count)
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise BackendStartedError(
            "JAX's backend is already running, so its CPU device count is fixed; call "
            "jaxpro.use_cpu_cores() before any JAX computation (or set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={count} before starting Python)"
        )
    jax.config.update("jax_num_cpu_devices", count)
    return count
