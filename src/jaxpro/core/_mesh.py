"""Devices and meshes: the one place jaxpro turns a ``devices=`` argument into a ``Mesh``.

Every domain that splits work over devices (a batch of problems, the chunks of
long data, Markov chains) asks here, so the argument is checked the same way
everywhere and the mesh is always built from ``jax.sharding.Mesh`` (never the
legacy ``jax.pmap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxpro.errors import InputError

__all__ = ["device_mesh", "resolve_devices"]


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

    Args:
        devices: as for :func:`resolve_devices`.
        axis_name: the mesh axis' name (what ``PartitionSpec`` and collectives
            such as ``lax.psum`` refer to).

    Returns:
        ``Mesh(devices, (axis_name,))``.
    """
    import numpy as np
    from jax.sharding import Mesh

    if not isinstance(axis_name, str) or not axis_name:
        raise InputError("must be a non-empty string", argument="axis_name", received=axis_name)
    return Mesh(np.array(resolve_devices(devices)), (axis_name,))
