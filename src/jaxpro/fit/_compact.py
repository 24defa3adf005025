"""A compact Levenberg-Marquardt for ``fit_many``'s ordinary curves: small to compile, fast to run.

``fit_many``'s full program (:func:`jaxpro.fit._engine.queued_program_fn` with
MINPACK's trust-region LM) handles everything: rank deficiency, the trust-region
subproblem through an SVD, repeated passes for ill-conditioned Jacobians. Its
single XLA kernel takes ~2.5 s to compile on a 2-core CPU, which is what a user
who fits one batch per process waits for. Most curves need none of that
machinery: a well-conditioned Jacobian and a handful of Gauss-Newton-like steps.

This program fits those curves with the textbook method, and hands every other
curve back to the full program (started afresh from its ``p0``, so such a curve
gets exactly the answer it would have got without this path):

- each evaluation gives the Gram matrix of ``[J | r]`` (jaxpro's chunked pass,
  one fused reduction): ``A = J^T J``, ``g = J^T r``, ``c = r^T r``;
- steps solve ``(S + lam I) z = -g_s`` with ``S`` the Jacobian-scaled ``A``
  (unit diagonal; Marquardt's scaling, MINPACK's ``x_scale='jac'``) by an
  unrolled Cholesky factorisation; ``lam`` follows Nielsen's update
  (Madsen, Nielsen and Tingleff, *Methods for non-linear least squares
  problems*, 2004, section 3.2) and a step is taken when its gain ratio
  exceeds MINPACK's 1e-4;
- convergence is judged on the *undamped* Gauss-Newton step from the current
  point, read from the same factorisation only where the damping changes
  the step by at most ~1%, so damping can never fake it: the relative
  reduction in the sum of squares that step predicts at most ``ftol``
  (status 2), its scaled length at most ``xtol`` times the scaled
  parameters' (status 3; both: 4), or the largest scaled gradient cosine at
  most ``gtol`` (status 1), SciPy's codes and meanings. Unless the step that
  led to the point already passed MINPACK's own test, that step is then
  taken as the closing one (kept unless the cost clearly rises), so a fit
  ends, like MINPACK's, just after a step whose predicted gain was below the
  tolerance;
- convergence is never declared where the scaled normal matrix is not
  safely positive definite (condition number above ~1e6, where its inverse,
  the covariance, would lose more than ~6 of 16 digits); damped steps may
  cross such regions. A curve whose start is not finite, or that has not
  converged within :data:`BUDGET` evaluations (a rank-deficient one among
  them) ends with status 0 and goes to the full program.

Curves flow through a fixed number of slots as in the full program: a slot
whose curve finishes takes the next one, so the work is the sum of the curves'
own iteration counts. Each finished curve's ``A``, ``g`` and ``c`` come back
raw; the covariance ``(J^T J)^{-1}`` and ``R`` are computed on the host from
the Cholesky factor of the scaled ``A`` (:func:`columns`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpro.fit._batching import store_finished
from jaxpro.fit._linalg import cholesky_upper, norm, solve_upper
from jaxpro.fit._pass import _symmetric, chunk_sums

__all__ = [
    "BUDGET",
    "MAX_PARAMETERS",
    "columns",
    "eligible",
    "outcome_fields",
    "run_fn",
]

# Evaluations a curve may take here before the full program takes it over:
# ordinary curves converge in 5-15 (exponential decays from a common start: 6
# on average); one that needs more is better served by the trust-region LM.
BUDGET = 50
# The unrolled Cholesky factorisation grows as p^3 in the program.
MAX_PARAMETERS = 8
# Smallest pivot accepted in the Cholesky factor of the unit-diagonal scaled
# normal matrix: its condition number is at least 1 / pivot^2, so 1e-3 keeps
# it below ~1e6 (the normal equations then lose at most ~6 digits).
PIVOT_FLOOR = 1e-3
_ACCEPT = 1e-4  # MINPACK's smallest gain ratio for a step to be taken
# The damping's start, relative to the unit diagonal of S: Nielsen's values
# for a rough start (p0) and for one believed good (a converged warm start on
# a subsample, where 1e-3 cost a million-point fit 1-2 extra passes, ~20%).
_LAMBDA0 = 1e-3
_LAMBDA_WARM = 1e-6
_LAMBDA_MAX = 1e16  # damping beyond this: no step can reduce the cost any more
_GIVEN_UP = 0
# relative rise of the cost still taken as rounding for the closing step (sums
# of n squares round to ~1e-16 sqrt(n) relative; a real rise is far larger)
_CLOSING_SLACK = 1e-10


def eligible(method: str, loss, jac_scale: bool, bounded: bool, p: int) -> bool:
    """Whether the compact program may fit these curves first.

    Unbounded least squares that LM would solve, or bounded least squares that
    TRF would solve (then a trial point outside the bounds is rejected, so the
    compact path only ever returns interior optima, which TRF reaches as well;
    a curve whose optimum lies on a bound runs out of evaluations and goes to
    TRF).

    Args:
        method: the resolved method ("lm" or "trf").
        loss: the resolved loss (only "linear" qualifies).
        jac_scale: variables scaled by the Jacobian's column norms (``x_scale='jac'``).
        bounded: whether any curve has a finite bound.
        p: number of parameters.
    """
    usual = loss == "linear" and jac_scale and p <= MAX_PARAMETERS
    return usual and (method == "trf" if bounded else method == "lm")


class _Slot(NamedTuple):
    """One slot's fit in progress."""

    curve: jax.Array  # index of the fit it holds
    alive: jax.Array
    fresh: jax.Array  # the next evaluation is the curve's start
    final: jax.Array  # the step that led here passed MINPACK's test: no closing step
    theta: jax.Array
    A: jax.Array  # J^T J at theta
    g: jax.Array  # J^T r at theta
    c: jax.Array  # r^T r at theta
    lam: jax.Array
    nu: jax.Array
    status: jax.Array
    nfev: jax.Array
    nit: jax.Array


def _scaled(A, g):
    """``(S, g_s, d)``: ``S = D^-1 A D^-1`` (unit diagonal), ``g_s = D^-1 g``, ``d = diag(D)``."""
    d = jnp.sqrt(jnp.diagonal(A))
    d = jnp.where(d > 0, d, 1.0)  # a zero column keeps scale 1, as in MINPACK
    return A / (d[:, None] * d[None, :]), g / d, d


def _solve(S, gs, lam):
    """``z = -(S + lam I)^{-1} g_s`` and the Cholesky factor used."""
    U = cholesky_upper(S + lam * jnp.eye(S.shape[0], dtype=S.dtype))
    return -solve_upper(U, solve_upper(U, gs, transpose=True)), U


def _tests(slot: _Slot, z, gs, d, U, ftol, xtol, gtol):
    """The status if the slot's current point passes a convergence test, else 0.

    ``z`` is the step from the current point solved with the damping ``lam``
    and ``U`` the Cholesky factor of ``S + lam I``. The tests are those of the
    undamped Gauss-Newton step, so they are made only where the damping
    changes the step by at most ~1% (``lam`` below 1% of the smallest squared
    pivot): damping never fakes convergence. Nor is convergence declared
    where the scaled normal matrix is ill-conditioned (a pivot below
    :data:`PIVOT_FLOOR`): the step and the covariance would not be
    trustworthy there.
    """
    pivot = jnp.min(jnp.diagonal(U))
    valid = (pivot > PIVOT_FLOOR) & (slot.lam <= 0.01 * pivot * pivot) & jnp.all(jnp.isfinite(z))
    c = slot.c
    predicted = -jnp.sum(z * gs)  # ~ z^T S z: the Gauss-Newton step's gain in r^T r
    f_ok = predicted <= ftol * c
    x_ok = norm(z) <= xtol * norm(d * slot.theta)
    g_ok = jnp.max(jnp.abs(gs)) <= gtol * jnp.sqrt(c)
    # SciPy's codes: 1 gtol, 2 ftol, 3 xtol, 4 ftol and xtol
    code = jnp.where(f_ok & x_ok, 4, jnp.where(f_ok, 2, jnp.where(x_ok, 3, jnp.where(g_ok, 1, 0))))
    return jnp.where(valid & ~slot.fresh, code, 0).astype(jnp.int32)


def _advance(slot: _Slot, vectors, knobs, gram, blind: bool = False) -> tuple[_Slot, jax.Array]:
    """One evaluation of one slot's fit: ``(slot, finished)``.

    ``gram(theta, needed)`` gives ``(A, g, c)`` at ``theta``; where ``needed``
    is false its value is not used (a single fit skips the pass then; under
    ``vmap`` every slot's pass is computed anyway). With ``blind`` (a single
    fit), a closing step whose predicted gain is below the cost's rounding
    is taken without a pass, as the full engine's final Gauss-Newton step is
    (``_solver.final_newton_step``): a pass could not tell whether it helps.

    From the current point: one factorisation of the damped scaled normal
    matrix gives both the convergence tests and the step. A point that passes
    them is the last accepted one unless the step that led to it already
    passed MINPACK's own test (``slot.final`` records that); otherwise its
    step is taken as the closing one and kept unless the cost clearly rises.
    """
    ftol, xtol, gtol = knobs[0], knobs[1], knobs[2]
    max_nfev = jnp.minimum(knobs[3], BUDGET)
    dtype = slot.theta.dtype
    theta0, lb, ub = vectors[0], vectors[1], vectors[2]
    S, gs, d = _scaled(slot.A, slot.g)
    z, U = _solve(S, gs, slot.lam)
    code = _tests(slot, z, gs, d, U, ftol, xtol, gtol)
    converged = code > 0
    trial = jnp.where(slot.fresh, theta0, slot.theta + z / d)
    # a step out of the bounds is rejected like one that raises the cost: more
    # damping shortens it towards the gradient until it stays inside (an optimum
    # on a bound is never reached: the damping or the BUDGET runs out and TRF
    # takes the curve); a closing step out of them is not taken either
    inside = jnp.all((trial >= lb) & (trial <= ub))
    unobservable = False
    if blind:  # the closing step's gain is below the rounding of r^T r over n rows
        rounding = 4.0 * jnp.finfo(dtype).eps * jnp.sqrt(jnp.maximum(knobs[5], 1.0))
        unobservable = (-jnp.sum(z * gs) <= rounding * slot.c) & jnp.all(jnp.isfinite(z))
    blind_step = converged & ~slot.final & unobservable & inside
    skip = converged & (slot.final | blind_step)  # converged: this evaluation is not used
    A1, g1, c1 = gram(trial, ~skip)
    finite = jnp.isfinite(c1) & jnp.all(jnp.isfinite(A1)) & jnp.all(jnp.isfinite(g1))
    predicted = -(2.0 * jnp.sum(z * gs) + jnp.sum(z * (S @ z)))
    rho = (slot.c - c1) / predicted
    # the closing step gains less than ftol: its cost may differ from the current
    # one by rounding alone, so it is kept unless the cost clearly rises (a
    # comparison decided by rounding would make answers jump with the data's last bit)
    closing = c1 <= slot.c * (1.0 + _CLOSING_SLACK)
    accept = (
        finite
        & inside
        & ~skip
        & (slot.fresh | jnp.where(converged, closing, (rho > _ACCEPT) & (predicted > 0)))
    )

    def pick(new, old):
        return jnp.where(accept, new, old)

    used = jnp.where(skip, 0, 1)
    moved = slot._replace(
        theta=jnp.where(accept | blind_step, trial, slot.theta),
        A=pick(A1, slot.A),
        g=pick(g1, slot.g),
        c=pick(c1, slot.c),
        nfev=slot.nfev + used,
        nit=slot.nit + jnp.where(slot.fresh, 0, used),
    )
    shrink = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
    # a fresh slot keeps the damping it was started with
    lam = jnp.where(slot.fresh, slot.lam, jnp.where(accept, slot.lam * shrink, slot.lam * slot.nu))
    nu = jnp.where(accept, 2.0, 2.0 * slot.nu)
    # the step just taken passed MINPACK's own test (its actual and predicted
    # relative gains at most ftol, or its length at most xtol): should the new
    # point pass the tests, it is the answer, with no closing step after it
    small = (
        accept
        & ~slot.fresh
        & (
            ((predicted <= ftol * slot.c) & (slot.c - c1 <= ftol * slot.c))
            | (norm(z) <= xtol * norm(d * slot.theta))
        )
    )
    failed = (slot.fresh & ~finite) | (
        ~converged & ((moved.nfev >= max_nfev) | (lam > _LAMBDA_MAX))
    )
    status = jnp.where(converged, code, jnp.where(failed, _GIVEN_UP, slot.status))
    moved = moved._replace(
        lam=lam, nu=nu, status=status, fresh=jnp.zeros_like(slot.fresh), final=small
    )
    return moved, slot.alive & (converged | failed)


def columns(raw: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """The program's raw rows as :func:`jaxpro.fit._engine.unpack_rows` columns (host, NumPy).

    Each row holds theta, ``A = J^T J``, ``g = J^T r``, ``c = r^T r``, status,
    evaluations and iterations. The covariance ``(J^T J)^{-1}`` comes from the
    Cholesky factor of the scaled ``A``, vectorised over the curves (a p x p
    loop of array operations: a LAPACK call per curve would cost more than the
    fits); ``R = U D`` is that factor unscaled (``R^T R = J^T J``) and ``qtr``
    solves ``R^T qtr = g``.
    """
    raw = np.asarray(raw)
    m = raw.shape[0]
    theta = raw[:, :p]
    A = raw[:, p : p + p * p].reshape(m, p, p)
    g = raw[:, p + p * p : 2 * p + p * p]
    c, status, nfev, nit = raw[:, 2 * p + p * p :].T
    d = np.sqrt(np.maximum(np.diagonal(A, axis1=1, axis2=2), 0.0))
    d = np.where(d > 0, d, 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        S = A / (d[:, :, None] * d[:, None, :])
        U = np.zeros_like(S)  # upper triangular, U^T U = S, column by column
        for j in range(p):
            U[:, j, j] = np.sqrt(S[:, j, j] - np.einsum("mk,mk->m", U[:, :j, j], U[:, :j, j]))
            for i in range(j + 1, p):
                U[:, j, i] = (S[:, j, i] - np.einsum("mk,mk->m", U[:, :j, j], U[:, :j, i])) / U[
                    :, j, j
                ]
        inverse = np.zeros_like(U)  # U^{-1}, upper triangular
        for j in range(p):
            inverse[:, j, j] = 1.0 / U[:, j, j]
            for i in range(j - 1, -1, -1):
                inverse[:, i, j] = (
                    -np.einsum("mk,mk->m", U[:, i, i + 1 : j + 1], inverse[:, i + 1 : j + 1, j])
                    / U[:, i, i]
                )
        covariance = np.einsum("mik,mjk->mij", inverse, inverse) / (d[:, :, None] * d[:, None, :])
        R = U * d[:, None, :]
        qtr = np.zeros_like(g)  # forward substitution with R^T
        for i in range(p):
            qtr[:, i] = (g[:, i] - np.einsum("mk,mk->m", R[:, :i, i], qtr[:, :i])) / R[:, i, i]
    finite = np.isfinite(covariance).all(axis=(1, 2)) & np.isfinite(c)
    covariance[~finite] = np.inf
    whole = np.int64
    return {
        "x": theta,
        "cost": 0.5 * c,
        "chi2": c,
        "R": R,
        "qtr": qtr,
        "gradient": g,
        "status": status.astype(whole),
        "nfev": nfev.astype(whole),
        "njev": nfev.astype(whole),  # every evaluation gives the Jacobian with the residuals
        "nit": nit.astype(whole),
        "active_mask": np.zeros((m, p), whole),
        "optimality": np.abs(g).max(axis=1),
        "covariance": covariance,
        "rank": np.where(finite, p, 0).astype(whole),
        "finite": finite,
        "first_nfev": np.zeros(m, whole),
        "first_status": np.zeros(m, whole),
    }


def outcome_fields(raw: np.ndarray, p: int) -> dict:
    """One fit's raw row (:func:`single_fn`: :func:`columns`' row, then the first
    stage's evaluations and status) as the fields of an ``Outcome`` (host, NumPy).

    As :func:`columns` for one row, with NumPy's LAPACK in place of the loops
    vectorised over curves (those cost more than the factorisation for one).
    """
    raw = np.asarray(raw, dtype=np.float64)
    theta = raw[:p].copy()
    g = raw[p + p * p : 2 * p + p * p].copy()
    c, status, nfev, nit, first_nfev, first_status = raw[2 * p + p * p :].tolist()
    factors = _small_factors(raw[p : p + p * p].tolist(), g.tolist(), p)
    finite = factors is not None and bool(np.isfinite(factors[0]).all() and np.isfinite(c))
    if finite:
        covariance, R, qtr = (np.array(v, dtype=np.float64) for v in factors)
    else:  # not positive definite: only where the fit gave up
        covariance = np.full((p, p), np.inf)
        R, qtr = np.full((p, p), np.nan), np.full(p, np.nan)
    return {
        "x": theta,
        "cost": 0.5 * c,
        "chi2": c,
        "R": R,
        "qtr": qtr,
        "gradient": g,
        "status": int(status),
        "nfev": int(nfev),
        "njev": int(nfev),  # every evaluation gives the Jacobian with the residuals
        "nit": int(nit),
        "active_mask": np.zeros(p, np.int64),
        "optimality": float(np.abs(g).max()) if p else 0.0,
        "covariance": covariance,
        "rank": p if finite else 0,
        "finite": finite,
        "first_nfev": int(first_nfev),
        "first_status": int(first_status),
    }


def _small_factors(A: list, g: list, p: int):
    """``(covariance, R, qtr)`` as nested lists from ``A = J^T J`` (row-major) and ``g``, or None.

    The Cholesky factor ``U`` of the unit-diagonal scaled ``S = D^-1 A D^-1``
    gives ``(J^T J)^{-1} = D^-1 U^-1 U^-T D^-1``, ``R = U D`` and ``R^T qtr = g``.
    In plain Python floats: for p <= 8 a few hundred operations, where
    NumPy's wrappers took ~40 us for a 3 x 3 (a fifth of a warm 1,000-point
    fit). None where ``S`` is not safely positive definite.
    """
    d = [math.sqrt(A[i * p + i]) if A[i * p + i] > 0 else 1.0 for i in range(p)]
    # plain loops, no generators: each sum(...) over a generator costs ~0.5 us
    U = [[0.0] * p for _ in range(p)]
    for j in range(p):
        pivot = A[j * p + j] / (d[j] * d[j])
        for k in range(j):
            pivot -= U[k][j] * U[k][j]
        if not (pivot > 0.0 and math.isfinite(pivot)):
            return None
        ujj = U[j][j] = math.sqrt(pivot)
        for i in range(j + 1, p):
            total = A[j * p + i] / (d[j] * d[i])
            for k in range(j):
                total -= U[k][j] * U[k][i]
            U[j][i] = total / ujj
    inverse = [[0.0] * p for _ in range(p)]  # U^{-1}, upper triangular
    for j in range(p):
        inverse[j][j] = 1.0 / U[j][j]
        for i in range(j - 1, -1, -1):
            total = 0.0
            for k in range(i + 1, j + 1):
                total += U[i][k] * inverse[k][j]
            inverse[i][j] = -total / U[i][i]
    covariance = [[0.0] * p for _ in range(p)]
    for i in range(p):
        for j in range(i, p):
            total = 0.0
            for k in range(j, p):
                total += inverse[i][k] * inverse[j][k]
            covariance[i][j] = covariance[j][i] = total / (d[i] * d[j])
    R = [[U[i][j] * d[j] for j in range(p)] for i in range(p)]
    qtr = [0.0] * p  # forward substitution with R^T
    for i in range(p):
        total = g[i]
        for k in range(i):
            total -= R[k][i] * qtr[k]
        qtr[i] = total / R[i][i]
    return covariance, R, qtr


def run_fn(program):
    """``run(batched, shared, vectors, reference, knobs, todo, count)`` as in ``queued_program_fn``.

    Returns one raw row per fit (see :func:`columns`; status 0: give it to the
    full program).
    """
    from jaxpro.fit._engine import merge_regions

    slots = program.slots

    def run(batched, shared, vectors, reference, knobs, todo, count):
        size, _, p = vectors.shape
        count = jnp.reshape(count, ())
        dtype = vectors.dtype

        def gram_for(curve):
            own = jax.tree.map(lambda a: a[curve], batched)
            region = merge_regions(shared, {"regions": own["regions"]})["regions"][0]

            def gram(theta, needed):  # under vmap a skipped pass would cost as much
                total = chunk_sums(program.residual, theta, (region,), reference)
                G = _symmetric(total, p + 1)
                return G[:p, :p], G[:p, p], G[p, p]

            return gram

        def advance(slot):
            return _advance(slot, vectors[slot.curve], knobs[slot.curve, 0], gram_for(slot.curve))

        def fresh_slots(curve, alive):
            k = curve.shape[0]
            zeros = jnp.zeros((k,), dtype)
            return _Slot(
                curve=curve,
                alive=alive,
                fresh=jnp.ones((k,), bool),
                final=jnp.zeros((k,), bool),
                theta=vectors[curve, 0],
                A=jnp.broadcast_to(jnp.eye(p, dtype=dtype), (k, p, p)),
                g=jnp.zeros((k, p), dtype),
                c=zeros,
                lam=zeros + _LAMBDA0,
                nu=zeros + 2.0,
                status=jnp.zeros((k,), jnp.int32),
                nfev=jnp.zeros((k,), jnp.int32),
                nit=jnp.zeros((k,), jnp.int32),
            )

        width = min(slots, size)
        index = jnp.arange(width)
        start = fresh_slots(todo[jnp.minimum(index, size - 1)], index < count)
        # finished fits, one row each: theta, A, g, c, status, nfev, nit
        raw = jnp.zeros((size, 2 * p + p * p + 4), dtype)

        def body(carry):
            slot, taken, raw = carry
            slot, done = jax.vmap(advance)(slot)
            # finished fits' rows to their places (row updates, not a scatter:
            # the whole loop stays one XLA kernel)
            rows = jnp.concatenate(
                [
                    slot.theta,
                    slot.A.reshape(width, p * p),
                    slot.g,
                    jnp.stack([slot.c, slot.status, slot.nfev, slot.nit], axis=1).astype(dtype),
                ],
                axis=1,
            )
            raw = store_finished(raw, done, slot.curve, rows)
            position = taken + jnp.cumsum(done, dtype=jnp.int32) - 1
            refill = done & (position < count)
            curve = jnp.where(refill, todo[jnp.clip(position, 0, size - 1)], slot.curve)
            new = fresh_slots(curve, refill)
            slot = jax.tree.map(
                lambda n, o: jnp.where(refill.reshape(refill.shape + (1,) * (o.ndim - 1)), n, o),
                new,
                slot,
            )
            slot = slot._replace(alive=(slot.alive & ~done) | refill)
            return slot, taken + jnp.sum(done, dtype=jnp.int32), raw

        carry = (start, jnp.minimum(width, count).astype(jnp.int32), raw)
        return lax.while_loop(lambda c: jnp.any(c[0].alive), body, carry)[2]

    return run
