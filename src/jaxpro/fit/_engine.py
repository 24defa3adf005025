"""The compiled least-squares program: data passes + LM or TRF + covariance, in one XLA computation.

Every public entry point (``curve_fit``, ``least_squares``, ``fit``) ends here.
A :class:`Program` is compiled once per (residual function, method, stages)
and cached; tolerances, bounds, scales and the starting point are run-time
arguments, so changing them never recompiles.

A program solves one or more *stages* in sequence inside the same loop (see
:func:`jaxpro.fit._solver.drive`): for long data, a fit to a random subsample
(exact, cheap) hands its answer and its triangular factor to the fit to all
the data, which then needs about three passes. Sharing the loop means the
solver logic, the costly part to compile, is compiled once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpro import _cache
from jaxpro.fit._data import Layout
from jaxpro.fit._linalg import svd
from jaxpro.fit._lm import LM
from jaxpro.fit._pass import Linearization, chunked_pass, direct_pass
from jaxpro.fit._solver import Options, Stage, drive
from jaxpro.fit._trf import TRF

_METHODS = {"lm": LM, "trf": TRF}


@dataclass(frozen=True)
class StageSpec:
    """Static description of one stage: its data layout and loss."""

    layout: Layout
    loss: Any


@dataclass(frozen=True)
class Program:
    """Everything static about a solve (hashable: it keys the executable cache).

    Attributes:
        residual: ``residual(theta, block) -> r`` on one block or chunk.
        method: "lm" or "trf".
        jac_scale: scale variables by the Jacobian's column norms (x_scale='jac').
        stages: the problems solved in sequence; the last is the real one.
        batched: the program is vmapped over many independent fits.
    """

    residual: Callable
    method: str
    jac_scale: bool
    stages: tuple[StageSpec, ...]
    batched: bool = False  # vmapped over many independent fits (see batched_program_fn)

    @property
    def layout(self) -> Layout:
        return self.stages[-1].layout

    @property
    def shards(self) -> int:
        return max(spec.layout.shards for spec in self.stages)

    def mesh(self):
        """The device mesh chunks are split over (None on one device)."""
        if self.shards == 1:
            return None
        from jax.sharding import Mesh

        return Mesh(np.array(jax.devices()[: self.shards]), (_AXIS,))

    def data_specs(self):
        """shard_map/sharding specs per stage: chunks split, everything else replicated."""
        from jax.sharding import PartitionSpec

        return tuple(
            {"regions": PartitionSpec(_AXIS)} if spec.layout.shards > 1 else PartitionSpec()
            for spec in self.stages
        )


class Outcome(NamedTuple):
    """What the compiled program returns (NumPy values once on the host)."""

    x: Any
    cost: Any
    chi2: Any
    R: Any
    qtr: Any
    gradient: Any
    status: Any
    nfev: Any
    njev: Any
    nit: Any
    active_mask: Any
    optimality: Any
    covariance: Any  # (J^T J)^{-1} from the SVD of R, inf where rank deficient
    rank: Any
    finite: Any
    first_nfev: Any  # evaluations of the first stage (the warm start), 0 if single-stage
    first_status: Any


_AXIS = "data"  # the mesh axis chunks are split over


def _evaluator(residual, spec: StageSpec, data, f_scale) -> Callable[..., Linearization]:
    """``evaluate(theta, reference, repeat_if, passes)`` for one stage's data."""
    kw = {"loss": spec.loss, "f_scale": f_scale}
    if spec.layout.shards > 1:
        kw["axis_name"] = _AXIS
    if spec.layout.kind == "direct":
        block = data["block"]

        def direct(theta, reference, repeat_if, passes):
            return direct_pass(residual, theta, block, **kw)

        return direct
    regions = data["regions"]

    def chunked(theta, reference, repeat_if, passes):
        def again(carry):
            count, current = carry
            chosen = jnp.where(count == 0, reference, current.R)
            return count + 1, chunked_pass(residual, theta, regions, chosen, **kw)

        def needed(carry):
            count, current = carry
            return (count == 0) | ((count <= passes) & current.ill_conditioned & repeat_if(current))

        p = theta.shape[0]
        zero = jnp.zeros((), theta.dtype)
        placeholder = Linearization(
            zero,
            jnp.eye(p, dtype=theta.dtype),
            jnp.zeros(p, theta.dtype),
            zero,
            jnp.asarray(True),
            jnp.asarray(False),
        )
        return lax.while_loop(needed, again, (0, placeholder))[1]

    return chunked


def _covariance(R, n_rows):
    """``(R^T R)^{-1}`` through the SVD, with SciPy's rank threshold."""
    _, s, Vt = svd(R)
    threshold = jnp.finfo(R.dtype).eps * jnp.maximum(n_rows, R.shape[0]) * s[0]
    kept = s > threshold
    inverse_sq = jnp.where(kept, 1.0 / jnp.where(kept, s, 1.0) ** 2, 0.0)
    covariance = (Vt.T * inverse_sq) @ Vt
    rank = jnp.sum(kept)
    covariance = jnp.where(rank < R.shape[0], jnp.inf, covariance)
    return covariance, rank


def _program_fn(program: Program):
    method = _METHODS[program.method]

    def run(datas, vectors, reference, knobs):
        x0, lb, ub, x_scale = vectors
        stages = []
        for spec, data, stage_knobs in zip(program.stages, datas, knobs, strict=True):
            ftol, xtol, gtol, max_nfev, f_scale, n_rows = stage_knobs
            options = Options(
                ftol, xtol, gtol, max_nfev.astype(jnp.int32), x_scale, program.jac_scale, n_rows
            )
            stages.append(Stage(_evaluator(program.residual, spec, data, f_scale), options))
        state, first_nfev, first_status = drive(method, stages, x0, reference, lb, ub)
        options = stages[-1].options
        lin = state.lin
        covariance, rank = _covariance(lin.R, options.n_rows)
        single = len(stages) == 1
        outcome = Outcome(
            state.x,
            lin.cost,
            lin.chi2,
            lin.R,
            lin.qtr,
            lin.gradient,
            state.status,
            state.nfev,
            state.njev,
            state.nit,
            method.active_mask(state, lb, ub, options.xtol),
            method.optimality(state, lb, ub),
            covariance,
            rank,
            lin.finite,
            0 if single else first_nfev,
            0 if single else first_status,
        )
        # one flat float64 vector: a single device-to-host transfer per fit
        return jnp.concatenate([jnp.ravel(jnp.asarray(v, x0.dtype)) for v in outcome])

    mesh = program.mesh()
    if mesh is None:
        return run
    from jax.sharding import PartitionSpec

    # Every device runs the same (tiny) solver on replicated values; only the
    # passes are split, their partial sums combined with psum.
    replicated = PartitionSpec()
    return jax.shard_map(
        run,
        mesh=mesh,
        in_specs=(program.data_specs(), replicated, replicated, replicated),
        out_specs=replicated,
    )


def merge_regions(shared, batched):
    """One fit's data: each region's shared leaves (e.g. x) joined with its own (y, w)."""
    return {
        "regions": tuple(
            {**common, **own}
            for common, own in zip(shared["regions"], batched["regions"], strict=True)
        )
    }


def batched_program_fn(program: Program):
    """``run(batched, shared, vectors, reference, knobs)``: the program vmapped over fits.

    ``batched`` holds each fit's data (leading axis: fits), ``shared`` the data
    common to all (e.g. one x for every curve); ``vectors`` and ``knobs`` are
    per fit. Returns one packed outcome row per fit.
    """
    single = _program_fn(program)

    def run(batched, shared, vectors, reference, knobs):
        def one(data, vector, knob):
            return single((merge_regions(shared, data),), vector, reference, knob)

        return jax.vmap(one)(batched, vectors, knobs)

    devices = jax.devices()
    if len(devices) == 1:
        return run
    from jax.sharding import Mesh, PartitionSpec

    # Each device runs its own share of the fits in its own loop, so a device
    # stops when its fits are done instead of waiting for the slowest overall.
    split, whole = PartitionSpec("fits"), PartitionSpec()
    return jax.shard_map(
        run,
        mesh=Mesh(np.array(devices), ("fits",)),
        in_specs=(split, whole, split, whole, split),
        out_specs=split,
        check_vma=False,
    )


_INTEGER_FIELDS = ("status", "nfev", "njev", "nit", "rank", "first_nfev", "first_status")
_MATRIX_FIELDS = ("R", "covariance")
_VECTOR_FIELDS = ("x", "qtr", "gradient", "active_mask")


def _unpack(flat: np.ndarray, p: int) -> Outcome:
    """Inverse of the packing at the end of the program."""
    values, start = {}, 0
    for name in Outcome._fields:
        size = p * p if name in _MATRIX_FIELDS else p if name in _VECTOR_FIELDS else 1
        chunk = flat[start : start + size]
        start += size
        if name in _MATRIX_FIELDS:
            values[name] = chunk.reshape(p, p)
        elif name == "active_mask":
            values[name] = chunk.astype(np.int64)
        elif name in _VECTOR_FIELDS:
            values[name] = chunk
        elif name in _INTEGER_FIELDS:
            values[name] = int(chunk[0])
        elif name == "finite":
            values[name] = bool(chunk[0])
        else:
            values[name] = float(chunk[0])
    return Outcome(**values)


@dataclass(frozen=True)
class Solved:
    outcome: Outcome
    compile_seconds: float
    run_seconds: float


@dataclass(frozen=True)
class Prepared:
    """A program with its arguments on the device, ready to compile and run."""

    program: Program
    args: tuple
    key: tuple

    def build(self):
        from jaxpro._precision import float64
        from jaxpro.fit import _linalg

        if not self.program.batched:
            with float64():
                return jax.jit(_program_fn(self.program)).lower(*self.args).compile()
        with float64(), _linalg.batched():
            return jax.jit(batched_program_fn(self.program)).lower(*self.args).compile()


@dataclass(frozen=True)
class StageRun:
    """Run-time settings of one stage."""

    data: Any
    n_rows: int
    max_nfev: int
    ftol: float
    xtol: float
    gtol: float
    f_scale: float


def prepare(
    program: Program,
    stages: tuple[StageRun, ...],
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    x_scale: np.ndarray,
) -> Prepared:
    """Put the arguments on the device (zero-copy where possible). Call inside ``float64()``."""
    p = np.asarray(x0).shape[0]
    vectors = np.stack([np.asarray(v, np.float64) for v in (x0, lb, ub, x_scale)])
    knobs = np.array(
        [[s.ftol, s.xtol, s.gtol, s.max_nfev, s.f_scale, s.n_rows] for s in stages],
        dtype=np.float64,
    )
    datas = tuple(s.data for s in stages)
    args = (datas, vectors, np.eye(p), knobs)
    mesh = program.mesh()
    if mesh is None:
        device_args = jax.device_put(args)
    else:
        from jax.sharding import NamedSharding, PartitionSpec

        def global_array(spec, local):
            # every process passes its own rows (its shard along the split
            # axis, the whole value where replicated); one process: the whole data
            return jax.make_array_from_process_local_data(
                NamedSharding(mesh, spec), np.asarray(local)
            )

        def place(spec_tree, tree):
            return jax.tree.map(
                lambda spec, sub: jax.tree.map(lambda leaf: global_array(spec, leaf), sub),
                spec_tree,
                tree,
                is_leaf=lambda node: isinstance(node, PartitionSpec),
            )

        device_args = (
            tuple(
                place(spec, data) for spec, data in zip(program.data_specs(), datas, strict=True)
            ),
            *(global_array(PartitionSpec(), a) for a in args[1:]),
        )
    leaves, treedef = jax.tree.flatten(device_args)
    key = (program, treedef, tuple((leaf.shape, leaf.dtype.str) for leaf in leaves))
    return Prepared(program, device_args, key)


def solve(prepared: Prepared) -> Solved:
    """Compile (once; cached in-process and on disk) and run."""
    executable, compile_seconds = _cache.compiled(prepared.key, prepared.build)
    start = time.perf_counter()
    flat = np.asarray(executable(*prepared.args))
    outcome = _unpack(flat, prepared.args[1].shape[1])
    return Solved(outcome, compile_seconds, time.perf_counter() - start)


def unpack_rows(flat: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """Column views of a batch of packed outcomes (one row per fit)."""
    columns, start = {}, 0
    for name in Outcome._fields:
        size = p * p if name in _MATRIX_FIELDS else p if name in _VECTOR_FIELDS else 1
        block = flat[:, start : start + size]
        start += size
        if name in _MATRIX_FIELDS:
            columns[name] = block.reshape(-1, p, p)
        elif name in _VECTOR_FIELDS:
            columns[name] = block.astype(np.int64) if name == "active_mask" else block
        elif name in _INTEGER_FIELDS:
            columns[name] = block[:, 0].astype(np.int64)
        elif name == "finite":
            columns[name] = block[:, 0].astype(bool)
        else:
            columns[name] = block[:, 0]
    return columns


def prepare_batch(program: Program, batched, shared, vectors, knobs) -> Prepared:
    """Device arguments of a batched program (``vectors``: (B, 4, p); ``knobs``: (B, 1, 6))."""
    p = vectors.shape[-1]
    args = (batched, shared, vectors, np.eye(p), knobs)
    devices = jax.devices()
    size = vectors.shape[0]
    if len(devices) > 1 and size % len(devices) == 0:
        # independent fits: split the batch across devices (XLA partitions the
        # vmapped program; only the loop's "any fit still running" is shared)
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(devices), ("fits",))
        split, whole = (
            NamedSharding(mesh, PartitionSpec("fits")),
            NamedSharding(mesh, PartitionSpec()),
        )
        device_args = (
            jax.device_put(batched, split),
            jax.device_put(shared, whole),
            jax.device_put(vectors, split),
            jax.device_put(args[3], whole),
            jax.device_put(knobs, split),
        )
    else:
        device_args = jax.device_put(args)
    leaves, treedef = jax.tree.flatten(device_args)
    key = (program, treedef, tuple((leaf.shape, leaf.dtype.str) for leaf in leaves))
    return Prepared(program, device_args, key)


def run_batch(prepared: Prepared) -> tuple[dict[str, np.ndarray], float, float]:
    """Compile (cached) and run a batched program: ``(columns, compile_s, run_s)``."""
    executable, compile_seconds = _cache.compiled(prepared.key, prepared.build)
    start = time.perf_counter()
    flat = np.asarray(executable(*prepared.args))
    p = prepared.args[2].shape[-1]
    return unpack_rows(flat, p), compile_seconds, time.perf_counter() - start
