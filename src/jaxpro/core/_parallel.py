"""``pmap_batch``: a function mapped over a batch, the batch split over every device.

The modern answer to "how do I parallelise this over several GPUs with
``pmap``": one ``jax.jit`` program of ``jax.vmap(fn)`` whose inputs carry a
``NamedSharding`` over a one-axis ``Mesh``, so XLA runs each device's share of
the batch where it lives; a reduction over the batch (``collective=``) runs as
``jax.shard_map`` with a ``lax.psum`` across the devices. A batch that does not
divide by the device count is padded with copies of its last element (valid
input for ``fn``, unlike zeros) and the padding is stripped from the result or
left out of the reduction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxpro import _cache
from jaxpro._result import Plan, Result, Timings, jsonable
from jaxpro.core._mesh import resolve_devices
from jaxpro.errors import InputError

__all__ = ["BatchLayout", "BatchResult", "batch_layout", "pmap_batch"]

AXIS = "batch"  # the mesh axis the batch is split over
COLLECTIVES = ("sum", "mean")
# to_dict() carries the outputs themselves up to this many elements in all;
# beyond it, their shapes and dtypes only (a JSON file of 10^8 numbers helps nobody).
MAX_JSON_ELEMENTS = 100_000


@dataclass(frozen=True)
class BatchLayout:
    """How a batch is laid out over devices.

    Attributes:
        batch: elements in the caller's batch.
        devices: the devices used (at most one per element).
        per_device: elements each device computes (padding included).
        padding: copies of the last element appended so the batch divides evenly.
    """

    batch: int
    devices: tuple
    per_device: int
    padding: int

    @property
    def device_count(self) -> int:
        return len(self.devices)


def batch_layout(batch: int, devices: Any = None) -> BatchLayout:
    """Split ``batch`` elements over ``devices`` (see :func:`resolve_devices`).

    A batch smaller than the device count uses one device per element; otherwise
    each device gets ``ceil(batch / devices)`` elements and the last device's
    share is completed with padding.
    """
    chosen = resolve_devices(devices)
    used = chosen[: max(1, min(len(chosen), batch))]
    per_device = math.ceil(batch / len(used))
    return BatchLayout(batch, tuple(used), per_device, per_device * len(used) - batch)


@dataclass(frozen=True, repr=False)
class BatchResult(Result):
    """The outcome of :func:`pmap_batch`.

    Attributes:
        values: ``jax.vmap(fn)(*batched_args)`` (a pytree of arrays, batch axis
            first), or its sum or mean over the batch when ``collective`` was given.
        layout: the :class:`BatchLayout` (devices, per-device batch, padding).
        plan: method, reasons and settings (devices, per-device batch, padding).
        timings: compilation (0 when the program was already compiled) and run.
    """

    values: Any
    layout: BatchLayout
    plan: Plan
    timings: Timings
    kind: str = "batch"

    def _outputs(self) -> list[tuple[str, Any]]:
        import jax

        flat, _ = jax.tree_util.tree_flatten_with_path(self.values)
        return [(jax.tree_util.keystr(path) or "values", leaf) for path, leaf in flat]

    def summary(self) -> str:
        lines = [
            f"pmap_batch: {self.layout.batch} elements over {self.layout.device_count} device(s),"
            f" {self.layout.per_device} per device, {self.layout.padding} padding",
            self.plan.summary(),
        ]
        lines += [
            f"output {name}: shape {tuple(np.shape(leaf))}, dtype {getattr(leaf, 'dtype', '?')}"
            for name, leaf in self._outputs()
        ]
        lines.append(self.timings.summary())
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        outputs = self._outputs()
        fields: dict[str, Any] = {
            "outputs": {
                name: {"shape": list(np.shape(leaf)), "dtype": str(getattr(leaf, "dtype", ""))}
                for name, leaf in outputs
            }
        }
        if sum(int(np.size(leaf)) for _, leaf in outputs) <= MAX_JSON_ELEMENTS:
            fields["values"] = {name: np.asarray(leaf) for name, leaf in outputs}
        else:
            fields["values_omitted"] = f"more than {MAX_JSON_ELEMENTS} elements"
        return fields

    def plot(self, **kwargs: Any):
        """Elements computed per device (batch and padding), as a matplotlib Figure."""
        from matplotlib.figure import Figure

        layout = self.layout
        counts = [layout.per_device] * layout.device_count
        padding = [0] * layout.device_count
        padding[-1] = layout.padding
        real = [c - p for c, p in zip(counts, padding, strict=True)]
        labels = [str(d) for d in layout.devices]
        figure = Figure(figsize=(max(4.0, 0.9 * len(labels) + 2), 3.2), layout="constrained")
        axes = figure.subplots()
        axes.bar(labels, real, label="batch")
        axes.bar(labels, padding, bottom=real, label="padding", color="0.7")
        axes.set_ylabel("elements")
        axes.set_title(f"pmap_batch: {layout.batch} elements", fontsize="medium")
        axes.legend(loc="best", fontsize="small")
        axes.tick_params(axis="x", labelrotation=30)
        return figure


def pmap_batch(
    fn: Callable,
    *batched_args: Any,
    axis: int | Sequence[int | None] | None = 0,
    devices: Any = None,
    collective: str | None = None,
) -> BatchResult:
    """Map ``fn`` over a batch, the batch split over every device; equals ``jax.vmap(fn)``.

    Args:
        fn: a JAX-traceable function of one element of each argument.
        *batched_args: pytrees of arrays. Every leaf of a batched argument has
            the batch along ``axis``; all batches have the same length.
        axis: the batch axis of every argument (an int), or one entry per
            argument (an int, or None for an argument passed whole to every
            call, like ``in_axes`` of ``jax.vmap``).
        devices: None (every device), a device count, or a list of ``jax.Device``.
        collective: None (return every element's output), ``"sum"`` or
            ``"mean"`` (reduce the outputs over the batch: each device reduces
            its share, then ``lax.psum`` across devices by ``jax.shard_map``).

    Returns:
        A :class:`BatchResult`; ``values`` has the batch as its first axis
        (as ``jax.vmap``'s default ``out_axes=0``), or no batch axis when reduced.
        The arrays stay on the devices, sharded over the batch.

    Raises:
        InputError: ``fn`` is not callable, no argument is batched, a batched
            leaf lacks ``axis`` or has a batch of another length, the batch is
            empty, or ``axis``, ``devices`` or ``collective`` is invalid.
    """
    start = time.perf_counter()
    if not callable(fn):
        raise InputError("must be a callable", argument="fn", received=fn)
    if not batched_args:
        raise InputError("needs at least one argument to map over", argument="batched_args")
    if collective is not None and collective not in COLLECTIVES:
        raise InputError(
            f"must be None or one of {COLLECTIVES}", argument="collective", received=collective
        )
    import jax

    axes = _argument_axes(axis, len(batched_args))
    leaves, treedef = jax.tree.flatten(tuple(batched_args))
    leaf_axes = _leaf_axes(batched_args, axes)
    batch = _batch_size(batched_args, axes)
    layout = batch_layout(batch, devices)

    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(layout.devices), (AXIS,))
    specs = [P() if a is None else P(*([None] * a), AXIS) for a in leaf_axes]
    placed = [
        jax.device_put(_pad(leaf, a, layout.padding), NamedSharding(mesh, spec))
        for leaf, a, spec in zip(leaves, leaf_axes, specs, strict=True)
    ]
    key = (
        "core.pmap_batch",
        fn,
        axes,
        treedef,
        tuple(
            (np.shape(leaf), str(leaf.dtype), spec)
            for leaf, spec in zip(placed, specs, strict=True)
        ),
        tuple(d.id for d in layout.devices),
        collective,
        batch,
    )

    def build():
        program = _program(fn, axes, treedef, specs, mesh, layout, collective)
        # No jaxpro compiler options here (see jaxpro._devices): the user's
        # function keeps XLA's default numerics, so values match jax.vmap's.
        return jax.jit(program).lower(*placed).compile()

    executable, compile_seconds = _cache.compiled(key, build)
    run_start = time.perf_counter()
    values = executable(*placed)
    if collective is None and layout.padding:
        # An array whose length does not divide by the device count cannot
        # stay split over them (JAX shards evenly): strip the padding on the
        # first device, one copy of the result (replicating it would hold one
        # copy per device).
        values = jax.tree.map(lambda out: jax.device_put(out, layout.devices[0])[:batch], values)
    values = jax.block_until_ready(values)
    run_seconds = time.perf_counter() - run_start
    plan = _plan(layout, axes, collective, jax.default_backend(), len(jax.devices()))
    return BatchResult(
        values=values,
        layout=layout,
        plan=plan,
        timings=Timings(
            compile=compile_seconds, run=run_seconds, total=time.perf_counter() - start
        ),
    )


def _argument_axes(axis: Any, count: int) -> tuple[int | None, ...]:
    """``axis`` as one entry per argument, each an int or None."""
    if isinstance(axis, Sequence) and not isinstance(axis, str):
        if len(axis) != count:
            raise InputError(
                f"needs one entry per argument ({count}), or a single int",
                argument="axis",
                received=axis,
            )
        entries = tuple(axis)
    else:
        entries = (axis,) * count
    for entry in entries:
        if entry is not None and (
            isinstance(entry, bool) or not isinstance(entry, int | np.integer)
        ):
            raise InputError("entries must be ints or None", argument="axis", received=axis)
    if all(entry is None for entry in entries):
        raise InputError(
            "must batch at least one argument (not all None)", argument="axis", received=axis
        )
    return tuple(None if e is None else int(e) for e in entries)


def _leaf_axes(arguments: tuple, axes: tuple) -> list[int | None]:
    """The batch axis of every leaf, negative axes made positive; each leaf checked."""
    import jax

    out: list[int | None] = []
    for index, (argument, axis) in enumerate(zip(arguments, axes, strict=True)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(argument)[0]:
            name = f"batched_args[{index}]{jax.tree_util.keystr(path)}"
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                if (
                    axis is None
                    and np.ndim(leaf) == 0
                    and isinstance(leaf, int | float | complex | bool | np.generic)
                ):
                    out.append(None)
                    continue
                raise InputError(
                    "every leaf must be an array (pass other settings through a closure or"
                    " functools.partial)",
                    argument=name,
                    received=leaf,
                )
            if axis is None:
                out.append(None)
                continue
            ndim = len(leaf.shape)
            if not -ndim <= axis < ndim:
                raise InputError(f"has no axis {axis} to map over", argument=name, received=leaf)
            out.append(axis % ndim)
    return out


def _batch_size(arguments: tuple, axes: tuple) -> int:
    """The common batch length; an argument with another length is named."""
    import jax

    first: tuple[str, int] | None = None
    for index, (argument, axis) in enumerate(zip(arguments, axes, strict=True)):
        if axis is None:
            continue
        for path, leaf in jax.tree_util.tree_flatten_with_path(argument)[0]:
            name = f"batched_args[{index}]{jax.tree_util.keystr(path)}"
            length = int(leaf.shape[axis])
            if first is None:
                first = (name, length)
            elif length != first[1]:
                raise InputError(
                    f"has {length} elements along its batch axis {axis}, but {first[0]} has"
                    f" {first[1]}: every batched argument needs the same batch length",
                    argument=name,
                    received=leaf,
                )
    if first is None:
        raise InputError("no batched array among the arguments", argument="batched_args")
    if first[1] == 0:
        raise InputError("the batch is empty", argument=first[0])
    return first[1]


def _pad(leaf: Any, axis: int | None, padding: int):
    """``leaf`` with ``padding`` copies of its last element along ``axis``."""
    if axis is None or padding == 0:
        return leaf
    import jax
    import jax.numpy as jnp

    xp = jnp if isinstance(leaf, jax.Array) else np
    leaf = xp.asarray(leaf)
    last = xp.take(leaf, xp.asarray([leaf.shape[axis] - 1]), axis=axis)
    return xp.concatenate([leaf, xp.repeat(last, padding, axis=axis)], axis=axis)


def _program(fn, axes, treedef, specs, mesh, layout: BatchLayout, collective):
    """The function to compile: vmap, or a shard_map of vmap with a masked psum."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mapped = jax.vmap(fn, in_axes=axes)
    if collective is None:

        def whole(*leaves):
            out = mapped(*jax.tree.unflatten(treedef, leaves))
            # The batch stays split over the devices in the result too.
            return jax.tree.map(
                lambda o: lax.with_sharding_constraint(o, NamedSharding(mesh, P(AXIS))), out
            )

        return whole

    batch, per_device = layout.batch, layout.per_device

    def local(*leaves):
        out = mapped(*jax.tree.unflatten(treedef, leaves))
        first = lax.axis_index(AXIS) * per_device
        real = first + jnp.arange(per_device) < batch  # padding is left out

        def reduce(o):
            mask = real.reshape((per_device,) + (1,) * (o.ndim - 1))
            total = lax.psum(jnp.sum(jnp.where(mask, o, jnp.zeros_like(o)), axis=0), AXIS)
            return total / batch if collective == "mean" else total

        return jax.tree.map(reduce, out)

    return jax.shard_map(local, mesh=mesh, in_specs=tuple(specs), out_specs=P())


def _plan(layout: BatchLayout, axes, collective, platform: str, available: int) -> Plan:
    devices = layout.device_count
    method = "jit+NamedSharding" if collective is None else f"shard_map+psum ({collective})"
    reasons = [
        f"batch of {layout.batch} split over {devices} {platform} device(s) on a one-axis Mesh:"
        f" {layout.per_device} element(s) per device, one jit(vmap(fn)) program (no jax.pmap)"
    ]
    if layout.padding:
        where = "stripped from the result" if collective is None else "left out of the reduction"
        reasons.append(
            f"{layout.padding} padding element(s) (copies of the last element) make the batch"
            f" divide by {devices}; {where}"
        )
    if layout.padding and collective is None:
        reasons.append(
            f"the result is gathered on {layout.devices[0]}: an array cannot stay split over"
            f" {devices} devices unevenly (a batch divisible by {devices} stays split)"
        )
    if devices < available and layout.batch < available:
        reasons.append(f"only {devices} of {available} devices: one element each")
    if collective is not None:
        reasons.append(
            f"each device reduces its share, then lax.psum across devices ({collective} over the"
            " batch); only the reduced value leaves the devices"
        )
    if available == 1 and platform == "cpu":
        reasons.append(
            "one CPU device: call jaxpro.use_cpu_cores() before JAX starts (or set XLA_FLAGS="
            "--xla_force_host_platform_device_count=N) to give each core a device"
        )
    settings = {
        "devices": [str(d) for d in layout.devices],
        "device_count": devices,
        "batch": layout.batch,
        "per_device": layout.per_device,
        "padding": layout.padding,
        "axis": list(axes),
        "collective": collective,
        "mesh_axis": AXIS,
    }
    return Plan(method=method, reasons=tuple(reasons), settings=jsonable(settings))
