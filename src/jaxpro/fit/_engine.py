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

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpro import _cache
from jaxpro._devices import compile_lowered
from jaxpro.fit._batching import store_finished
from jaxpro.fit._data import Layout, device_ready_rows
from jaxpro.fit._linalg import svd
from jaxpro.fit._lm import LM
from jaxpro.fit._pass import Linearization, chunked_pass, direct_pass
from jaxpro.fit._solver import Driver, Options, Stage, decided, select
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
        method: "lm" or "trf"; for many fits also "compact" (the compact LM of
            :mod:`jaxpro.fit._compact`, which returns raw rows instead of packed
            outcomes).
        jac_scale: scale variables by the Jacobian's column norms (x_scale='jac').
        stages: the problems solved in sequence; the last is the real one.
        slots: for many independent fits, how many advance together on each
            device (see :func:`queued_program_fn`); 0 for a single fit.
    """

    residual: Callable
    method: str
    jac_scale: bool
    stages: tuple[StageSpec, ...]
    slots: int = 0

    @property
    def batched(self) -> bool:
        return self.slots > 0

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
        from jaxpro.core._mesh import device_mesh

        return device_mesh(self.shards, _AXIS)

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
            # theta through a barrier with the loop counter: XLA cannot hoist the
            # (loop-invariant) Jacobian out of the loop and store it whole; the
            # pass stays one sweep inside the loop (about 5% of a fit_many step)
            moved, _ = lax.optimization_barrier((theta, count))
            return count + 1, chunked_pass(residual, moved, regions, chosen, **kw)

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


def _driver(program: Program, datas, vectors, knobs):
    """The solver loop's pieces for one fit: ``(driver, x0)``."""
    x0, lb, ub, x_scale = vectors
    stages = []
    for spec, data, stage_knobs in zip(program.stages, datas, knobs, strict=True):
        ftol, xtol, gtol, max_nfev, f_scale, n_rows = stage_knobs
        options = Options(
            ftol, xtol, gtol, max_nfev.astype(jnp.int32), x_scale, program.jac_scale, n_rows
        )
        stages.append(Stage(_evaluator(program.residual, spec, data, f_scale), options))
    return Driver(_METHODS[program.method], stages, lb, ub), x0


def _outcome(driver: Driver, state, first_nfev, first_status):
    """The packed :class:`Outcome` of a finished fit (one flat float64 vector)."""
    method, lb, ub = driver.method, driver.lb, driver.ub
    options = driver.stages[-1].options
    lin = state.lin
    covariance, rank = _covariance(lin.R, options.n_rows)
    single = len(driver.stages) == 1
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
    dtype = state.x.dtype
    return jnp.concatenate([jnp.ravel(jnp.asarray(v, dtype)) for v in outcome])


def _program_fn(program: Program):
    def run(datas, vectors, reference, knobs):
        driver, x0 = _driver(program, datas, vectors, knobs)
        return _outcome(driver, *driver.run(x0, reference))

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


def queued_program_fn(program: Program):
    """``run(batched, shared, vectors, reference, knobs, todo, count)``: many fits, a queue per device.

    ``batched`` holds each fit's data (leading axis: fits), ``shared`` the data
    common to all (e.g. one x for every curve); ``vectors`` (fits, 4, p) and
    ``knobs`` (fits, 1, 6) are per fit. ``todo`` lists the fits to solve (indices
    into the leading axis, ``count`` of them; the rest are never touched).

    ``program.slots`` fits advance together, one solver iteration per step of
    vector instructions. A fit that finishes leaves its slot to the next one in
    ``todo``, so a step costs the same however the iteration counts vary and the
    total work is the sum of the fits' iterations, not the number of batches
    times the slowest fit's. Outcomes (covariance included) are computed once,
    after the loop, for every fit. Returns one packed outcome row per fit.
    """
    slots = program.slots
    if program.method == "compact":
        from jaxpro.fit import _compact

        return _on_devices(_compact.run_fn(program))

    def run(batched, shared, vectors, reference, knobs, todo, count):
        size = vectors.shape[0]
        count = jnp.reshape(count, ())

        def row(a, i):
            # i is always in range: a clamped slice, not a gather that fills
            return lax.dynamic_index_in_dim(a, i, keepdims=False)

        def parts(i):
            own = jax.tree.map(lambda a: row(a, i), batched)
            return _driver(program, (merge_regions(shared, own),), row(vectors, i), row(knobs, i))

        def start(i):
            driver, x0 = parts(i)
            return driver.start(x0, reference)

        def step(i, d):
            driver, _ = parts(i)
            d = driver.step(d)
            return d, driver.running(d)

        def restart(refill, d, x0):
            return select(refill, Driver.restart(d, x0, reference), d)

        slot = jnp.arange(slots)
        curve = todo[jnp.minimum(slot, size - 1)]
        alive = slot < count
        d0 = jax.vmap(start)(curve)
        store = jax.tree.map(lambda a: jnp.zeros((size, *a.shape[1:]), a.dtype), d0)

        def body(carry):
            curve, alive, taken, d, store = carry
            d, running = jax.vmap(step)(curve, d)
            done = decided(alive & ~running)
            store = store_finished(store, done, curve, d)
            position = taken + jnp.cumsum(done, dtype=taken.dtype) - 1
            refill = decided(done & (position < count))
            curve = jnp.where(refill, todo[jnp.clip(position, 0, size - 1)], curve)
            d = jax.vmap(restart)(refill, d, vectors[curve, 0])
            alive = (alive & ~done) | refill
            return curve, alive, taken + jnp.sum(done, dtype=taken.dtype), d, store

        carry = (curve, alive, jnp.minimum(slots, count), d0, store)
        store = lax.while_loop(lambda c: jnp.any(c[1]), body, carry)[-1]

        def finish(i, d):
            driver, _ = parts(i)
            return _outcome(driver, *driver.result(d))

        return jax.vmap(finish)(jnp.arange(size), store)

    return _on_devices(run)


def _on_devices(run):
    """``run`` over every device's share of the fits (``run`` itself on one device)."""
    devices = jax.devices()
    if len(devices) == 1:
        return run
    from jax.sharding import PartitionSpec

    from jaxpro.core._mesh import device_mesh

    # Each device runs its own queue over its own share of the fits.
    split, whole = PartitionSpec("fits"), PartitionSpec()
    return jax.shard_map(
        run,
        mesh=device_mesh(devices, "fits"),
        in_specs=(split, whole, split, whole, split, split, split),
        out_specs=split,
        check_vma=False,
    )


_INTEGER_FIELDS = ("status", "nfev", "njev", "nit", "rank", "first_nfev", "first_status")
_MATRIX_FIELDS = ("R", "covariance")
_VECTOR_FIELDS = ("x", "qtr", "gradient", "active_mask")


@functools.lru_cache(maxsize=64)
def _offsets(p: int) -> tuple[tuple[str, int, int], ...]:
    """``(field, start, size)`` of each Outcome field in the packed vector."""
    spans, start = [], 0
    for name in Outcome._fields:
        size = p * p if name in _MATRIX_FIELDS else p if name in _VECTOR_FIELDS else 1
        spans.append((name, start, size))
        start += size
    return tuple(spans)


@functools.lru_cache(maxsize=64)
def _scalar_index(p: int) -> np.ndarray:
    return np.array(
        [start for name, start, size in _offsets(p) if name not in _MATRIX_FIELDS + _VECTOR_FIELDS]
    )


def _unpack(flat: np.ndarray, p: int) -> Outcome:
    """Inverse of the packing at the end of the program."""
    spans = _offsets(p)
    # one conversion for every scalar field (this runs per fit); the index
    # keeps it to the scalars, whatever p
    scalars = flat[_scalar_index(p)].tolist()
    values = []
    i = 0
    for name, start, size in spans:
        if name in _MATRIX_FIELDS:
            values.append(flat[start : start + size].reshape(p, p))
        elif name == "active_mask":
            values.append(flat[start : start + size].astype(np.int64))
        elif name in _VECTOR_FIELDS:
            values.append(flat[start : start + size])
        else:
            value = scalars[i]
            i += 1
            if name in _INTEGER_FIELDS:
                value = int(value)
            elif name == "finite":
                value = bool(value)
            values.append(value)
    return Outcome(*values)


@dataclass(frozen=True)
class Solved:
    outcome: Outcome
    compile_seconds: float
    run_seconds: float
    programs: tuple[tuple[str, float], ...] = ()  # (what was compiled, seconds), per program


@dataclass(frozen=True)
class Prepared:
    """A program with its arguments on the device, ready to compile and run."""

    program: Program
    args: tuple
    key: tuple
    # host work started in a thread of its own once XLA compiles (never part of the key)
    while_compiling: Callable[[], None] | None = None

    def build(self):
        from jaxpro._precision import float64
        from jaxpro.fit import _linalg

        if not self.program.batched and self.program.method == "compact":
            from jaxpro.fit import _compact_single

            # On a direct block, unrolled small linear algebra: XLA's CPU
            # backend then compiles the whole loop as one small kernel, least
            # fixed cost per call. On chunks, LAPACK's: that one kernel ran
            # each pass 5-10% slower than separate kernels do (two Gaussians,
            # 1e4-1e6 points), and the passes are the time there.
            direct = self.program.layout.kind == "direct"
            with float64(), _linalg.batched() if direct else contextlib.nullcontext():
                lowered = jax.jit(_compact_single.single_fn(self.program)).lower(*self.args)
                return compile_lowered(lowered)
        if not self.program.batched:
            with float64():
                lowered = jax.jit(_program_fn(self.program)).lower(*self.args)
                return compile_lowered(lowered)
        with float64(), _linalg.batched():
            lowered = jax.jit(queued_program_fn(self.program)).lower(*self.args)
            return compile_lowered(lowered, self.while_compiling)


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


@functools.lru_cache(maxsize=64)
def _identity(p: int) -> np.ndarray:
    """The first pass's reference preconditioner, made once per size (read-only)."""
    eye = np.eye(p)
    eye.setflags(write=False)
    return eye


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
    vectors = np.array((x0, lb, ub, x_scale), dtype=np.float64)
    knobs = np.array(
        [[s.ftol, s.xtol, s.gtol, s.max_nfev, s.f_scale, s.n_rows] for s in stages],
        dtype=np.float64,
    )
    datas = tuple(s.data for s in stages)
    args = (datas, vectors, _identity(p), knobs)
    mesh = program.mesh()
    if mesh is None:
        # The executable takes host arrays as they are (zero-copy on the CPU,
        # one transfer elsewhere, as device_put would do): a separate
        # jax.device_put of this tree cost ~90 us per call, a fifth of a
        # warm 1,000-point fit.
        device_args = args
    else:
        from jax.sharding import PartitionSpec

        from jaxpro.core._mesh import global_array as core_global_array

        def global_array(spec, local):
            # every process passes its own rows (its shard along the split
            # axis, the whole value where replicated); one process: the whole data
            return core_global_array(mesh, spec, local)

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
    p = prepared.args[1].shape[1]
    if prepared.program.method == "compact":
        from jaxpro.fit import _compact

        outcome = Outcome(**_compact.outcome_fields(flat, p))
    else:
        outcome = _unpack(flat, p)
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


def prepare_queue(program: Program, pieces, shared, while_compiling=None) -> Prepared:
    """Device arguments of a queued program, one piece per device.

    Args:
        pieces: per device, ``(batched, vectors, knobs, todo)``: its fits' data
            (leading axis: fits; views of the caller's arrays are placed without
            a copy where aligned), ``vectors`` (fits, 4, p), ``knobs`` (fits, 1, 6)
            and the indices of the fits to solve.
        shared: data common to every fit.
        while_compiling: host work to run in a thread of its own while XLA
            compiles the program (not run when the program is cached).
    """
    devices = jax.devices()[: len(pieces)]
    p = pieces[0][1].shape[-1]
    size = pieces[0][1].shape[0]

    def local(piece):
        batched, vectors, knobs, todo = piece
        # idle slots read the first fit's row; copies need only the rows fits use
        filled = np.full(size, todo[0] if todo.size else 0, np.int32)
        filled[: todo.size] = todo
        used = slice(int(todo.min()), int(todo.max()) + 1) if todo.size else slice(0, 0)
        batched = jax.tree.map(lambda a: device_ready_rows(a, used), batched)
        return batched, vectors, knobs, filled, np.array([todo.size], np.int32)

    locals_ = [local(piece) for piece in pieces]
    if len(devices) == 1:
        batched, vectors, knobs, todo, count = locals_[0]
        args = jax.device_put((batched, shared, vectors, np.eye(p), knobs, todo, count))
    else:
        from jax.sharding import NamedSharding, PartitionSpec

        from jaxpro.core._mesh import device_mesh

        mesh = device_mesh(devices, "fits")
        split, whole = (
            NamedSharding(mesh, PartitionSpec("fits")),
            NamedSharding(mesh, PartitionSpec()),
        )

        def assemble(*leaves):
            shape = (sum(leaf.shape[0] for leaf in leaves), *leaves[0].shape[1:])
            on_devices = [jax.device_put(leaf, d) for leaf, d in zip(leaves, devices, strict=True)]
            return jax.make_array_from_single_device_arrays(shape, split, on_devices)

        per_device = jax.tree.map(assemble, *locals_)
        batched, vectors, knobs, todo, count = per_device
        args = (
            batched,
            jax.device_put(shared, whole),
            vectors,
            jax.device_put(np.eye(p), whole),
            knobs,
            todo,
            count,
        )
    leaves, treedef = jax.tree.flatten(args)
    key = (program, treedef, tuple((leaf.shape, leaf.dtype.str) for leaf in leaves))
    return Prepared(program, args, key, while_compiling)


def launch(prepared: Prepared) -> tuple[jax.Array, float]:
    """Compile (cached) and start a batched program: ``(packed rows on the device, compile_s)``.

    Execution is asynchronous: the host may prepare the next call meanwhile;
    ``np.asarray`` of the rows waits for them (then :func:`unpack_rows`).
    """
    executable, compile_seconds = _cache.compiled(prepared.key, prepared.build)
    return executable(*prepared.args), compile_seconds
