"""The compiled least-squares program: data pass + LM or TRF + covariance, in one XLA computation.

:func:`solve` is what every public entry point (``curve_fit``, ``least_squares``,
``fit``) calls. It compiles once per (residual function, method, loss, data
layout, parameter count) and caches the executable; tolerances, bounds,
scales and the starting point are run-time arguments, so changing them never
recompiles.
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
from jaxpro.fit._lm import lm
from jaxpro.fit._pass import Linearization, chunked_pass, direct_pass
from jaxpro.fit._solver import Objective, Options
from jaxpro.fit._trf import active_mask, trf
from jaxpro.fit._trust import coleman_li_scaling

# A repeated chunked pass squares away the remaining ill-conditioning of its
# preconditioner; three passes cover cond(J) up to 1/eps (shifted CholeskyQR3).
_SETTLE_PASSES_START = 3
_SETTLE_PASSES_STEP = 2


@dataclass(frozen=True)
class Program:
    """Everything static about a solve (hashable: it keys the executable cache).

    Attributes:
        residual: ``residual(theta, block) -> r`` on one block or chunk.
        method: "lm" or "trf".
        loss: loss name or callable.
        jac_scale: scale variables by the Jacobian's column norms (x_scale='jac').
        layout: the data layout.
    """

    residual: Callable
    method: str
    loss: Any
    jac_scale: bool
    layout: Layout


class Outcome(NamedTuple):
    """What the compiled program returns (NumPy arrays once on the host)."""

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


def _objective(program: Program, data, f_scale) -> Objective:
    kw = {"loss": program.loss, "f_scale": f_scale}
    residual = program.residual
    if program.layout.kind == "direct":
        block = data["block"]

        def direct(theta, reference, repeat_if=None, passes=0):
            return direct_pass(residual, theta, block, **kw)

        return Objective(direct)
    regions = data["regions"]

    def evaluate(theta, reference, repeat_if=lambda lin: True, passes=_SETTLE_PASSES_STEP):
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

    return Objective(evaluate)


def _covariance(R, n_rows):
    """``(R^T R)^{-1}`` through the SVD, with SciPy's rank threshold."""
    _, s, Vt = jnp.linalg.svd(R)
    threshold = jnp.finfo(R.dtype).eps * jnp.maximum(n_rows, R.shape[0]) * s[0]
    kept = s > threshold
    inverse_sq = jnp.where(kept, 1.0 / jnp.where(kept, s, 1.0) ** 2, 0.0)
    covariance = (Vt.T * inverse_sq) @ Vt
    rank = jnp.sum(kept)
    covariance = jnp.where(rank < R.shape[0], jnp.inf, covariance)
    return covariance, rank


def _program_fn(program: Program):
    def run(data, vectors, reference, knobs):
        x0, lb, ub, x_scale = vectors
        ftol, xtol, gtol, max_nfev, f_scale, n_rows = knobs
        max_nfev = max_nfev.astype(jnp.int64)
        objective = _objective(program, data, f_scale)
        lin0 = objective.evaluate(x0, reference, passes=_SETTLE_PASSES_START)
        options = Options(ftol, xtol, gtol, max_nfev, x_scale, program.jac_scale, n_rows)
        if program.method == "lm":
            state = lm(objective, x0, lin0, options)
            active = jnp.zeros(x0.shape[0])
            optimality = jnp.linalg.norm(state.lin.gradient, ord=jnp.inf)
        else:
            state = trf(objective, x0, lin0, lb, ub, options)
            active = active_mask(state.x, lb, ub, xtol)
            g = state.lin.gradient
            v, _ = coleman_li_scaling(state.x, g, lb, ub)
            optimality = jnp.linalg.norm(g * v, ord=jnp.inf)
        lin = state.lin
        covariance, rank = _covariance(lin.R, n_rows)
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
            active,
            optimality,
            covariance,
            rank,
            lin.finite,
        )
        # one flat float64 vector: a single device-to-host transfer per fit
        return jnp.concatenate([jnp.ravel(jnp.asarray(v, x0.dtype)) for v in outcome])

    return run


_INTEGER_FIELDS = ("status", "nfev", "njev", "nit", "rank")
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
    vectors: np.ndarray  # host copy of (x0, lb, ub, x_scale), to restart from another x0

    def build(self):
        from jaxpro._precision import float64

        # builds may run on worker threads; the x64 mode is thread-local
        with float64():
            return jax.jit(_program_fn(self.program)).lower(*self.args).compile()


def prepare(
    program: Program,
    data,
    x0: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    *,
    x_scale: np.ndarray,
    ftol: float,
    xtol: float,
    gtol: float,
    max_nfev: int,
    f_scale: float,
    n_rows: int,
    reference: np.ndarray | None = None,
) -> Prepared:
    """Put the arguments on the device (zero-copy where possible). Call inside ``float64()``.

    Args:
        reference: ``(p, p)`` triangular factor of the Jacobian at ``x0`` known
            beforehand (e.g. from a fit to a subsample); it preconditions the
            first chunked pass. Identity when None.
    """
    p = np.asarray(x0).shape[0]
    vectors = np.stack([np.asarray(v, np.float64) for v in (x0, lb, ub, x_scale)])
    knobs = np.array([ftol, xtol, gtol, max_nfev, f_scale, n_rows], dtype=np.float64)
    reference = np.eye(p) if reference is None else np.asarray(reference, np.float64)
    device_args = jax.device_put((data, vectors, reference, knobs))
    leaves, treedef = jax.tree.flatten(device_args)
    key = (program, treedef, tuple((leaf.shape, leaf.dtype.str) for leaf in leaves))
    return Prepared(program, device_args, key, vectors)


def compile_all(*prepared: Prepared) -> list[tuple[Any, float]]:
    """Executables for each prepared program, compiling the missing ones concurrently."""
    return _cache.compiled_many([(item.key, item.build) for item in prepared])


def run(
    prepared: Prepared, executable, compile_seconds: float = 0.0, *, x0=None, reference=None
) -> Solved:
    """Execute, optionally from another start ``x0`` / preconditioner ``reference``."""
    args = list(prepared.args)
    if x0 is not None:
        vectors = prepared.vectors.copy()
        vectors[0] = x0
        args[1] = jax.device_put(vectors)
    if reference is not None:
        args[2] = jax.device_put(np.asarray(reference, np.float64))
    start = time.perf_counter()
    flat = np.asarray(executable(*args))
    outcome = _unpack(flat, prepared.vectors.shape[1])
    return Solved(outcome, compile_seconds, time.perf_counter() - start)


def solve(program: Program, data, x0, lb, ub, **settings) -> Solved:
    """Prepare, compile (cached) and run in one call. Call inside ``float64()``."""
    item = prepare(program, data, x0, lb, ub, **settings)
    [(executable, seconds)] = compile_all(item)
    return run(item, executable, seconds)
