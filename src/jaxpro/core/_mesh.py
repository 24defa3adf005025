"""Devices and meshes: the one place jaxpro turns a ``devices=`` argument into a ``Mesh``.

Every domain that splits work over devices (a batch of problems, the chunks of
long data, Markov chains) asks here, so the argument is checked the same way
everywhere and the mesh is always built from ``jax.sharding.Mesh`` (never the
legacy ``jax.pmap``).

JAX's CPU backend shows a single device by default, so a CPU runs one device's
work at a time. :func:`use_cpu_cores` gives it one device per core. That is a
process-wide choice that must be made before JAX starts its backend, so it is
never made for you at import: call it first thing, or set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` yourself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxpro.errors import BackendStartedError, InputError

__all__ = [
    "device_mesh",
    "global_array",
    "request_cpu_devices",
    "resolve_devices",
    "use_cpu_cores",
]


def request_cpu_devices(count: int) -> bool:
    """Ask JAX for ``count`` CPU devices; True if granted, False if its backend already runs.

    Uses only JAX's public configuration: ``jax_num_cpu_devices`` refuses an
    update (RuntimeError) once the backend has started, and that refusal is
    how a started backend is recognised (tested in tests/core/test_mesh.py,
    so a JAX release that stops refusing shows up there).
    """
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        return False
    return True


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
    if not request_cpu_devices(count):
        raise BackendStartedError(
            "JAX's backend is already running, so its CPU device count is fixed; call "
            "jaxpro.use_cpu_cores() before any JAX computation (or set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={count} before starting Python)"
        )
    return count


def resolve_devices(devices: Any = None, *, argument: str = "devices") -> list:
    """The devices a computation should use.

    Args:
        devices: None (every device of JAX's default backend), a positive int
            ``k`` (the first ``k`` of them), or a sequence of distinct
            ``jax.Device`` objects.
        argument: the argument's name in error messages.

    Returns:
        A non-empty list of ``jax.Device``.

    Raises:
        InputError: ``devices`` is none of the above, asks for more devices
            than there are, or repeats a device.
    """
    import jax

    available = jax.devices()
    if devices is None:
        return list(available)
    if isinstance(devices, bool):
        raise InputError(
            "must be None, a device count or a list of devices", argument=argument, received=devices
        )
    if isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise InputError(
                f"must be between 1 and the {len(available)} device(s) JAX sees"
                " (on a CPU, jaxpro.use_cpu_cores() before JAX starts gives one device per core)",
                argument=argument,
                received=devices,
            )
        return list(available[:devices])
    if isinstance(devices, Sequence) and not isinstance(devices, str) and len(devices) > 0:
        chosen = list(devices)
        if not all(isinstance(d, jax.Device) for d in chosen):
            raise InputError(
                "must hold jax.Device objects (from jax.devices())",
                argument=argument,
                received=devices,
            )
        if len({d.id for d in chosen}) != len(chosen):
            raise InputError("names a device twice", argument=argument, received=devices)
        return chosen
    raise InputError(
        "must be None, a device count or a non-empty list of devices",
        argument=argument,
        received=devices,
    )


def device_mesh(devices: Any = None, axis_name: str = "batch"):
    """A one-dimensional ``jax.sharding.Mesh`` over ``devices``.

    After ``jaxpro.core.distributed.initialize()`` the default spans every
    process's devices.

    Args:
        devices: as for :func:`resolve_devices`.
        axis_name: the mesh axis' name (what ``PartitionSpec`` and collectives
            such as ``lax.psum`` refer to).

    Returns:
        ``Mesh(devices, (axis_name,))``.
    """
    from jax.sharding import Mesh

    if not isinstance(axis_name, str) or not axis_name:
        raise InputError("must be a non-empty string", argument="axis_name", received=axis_name)
    return Mesh(np.array(resolve_devices(devices)), (axis_name,))


def global_array(mesh, spec, local):
    """One array over ``mesh`` from this process's part of it.

    Args:
        mesh: a ``jax.sharding.Mesh`` (over one process's devices or all processes').
        spec: the ``PartitionSpec`` of the whole array.
        local: this process's rows along the split axis (its shard), or the
            whole value where ``spec`` replicates it. With one process: the
            whole array.

    Returns:
        A ``jax.Array`` with ``NamedSharding(mesh, spec)``.
    """
    import jax
    from jax.sharding import NamedSharding

    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(local))
