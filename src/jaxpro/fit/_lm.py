"""Levenberg-Marquardt as MINPACK's ``lmder`` defines it (SciPy's ``method='lm'``).

Moré's trust-region formulation: the step minimises ``||J p + f||`` subject to
``||D p|| <= delta`` with ``D`` the running maximum of the Jacobian's column
norms (``x_scale='jac'``, MINPACK ``mode=1``) or ``1 / x_scale``. The
Levenberg-Marquardt parameter is found through the SVD of ``R D^{-1}``
instead of MINPACK's pivoted QR with Givens updates; the radius and parameter
updates and the termination tests are MINPACK's.

The method is four pure pieces (``init``, ``propose``, ``judge``, ``update``)
that :func:`jaxpro.fit._solver.drive` runs under one ``lax.while_loop``, one
trial point and one data pass per iteration.

MINPACK's "tolerance too small" exits (info 6, 7, 8: no further progress is
possible in floating point) map to the ftol, xtol and gtol statuses: the
solution is as converged as float64 allows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpro.fit._batching import only_where
from jaxpro.fit._linalg import (
    all_finite,
    frobenius,
    inverse_upper,
    largest,
    matvec,
    norm,
    solve_upper,
    svd,
)
from jaxpro.fit._pass import Linearization
from jaxpro.fit._solver import (
    RUNNING,
    Method,
    Options,
    SolverState,
    column_norms,
    conclude,
    decided,
    select,
)
from jaxpro.fit._trust import solve_trust_region

__all__ = ["LM"]

_FACTOR = 100.0  # MINPACK's initial step bound factor
_EPS = float(jnp.finfo(jnp.float64).eps)


class _Extra(NamedTuple):
    diag: jax.Array
    delta: jax.Array
    par: jax.Array
    xnorm: jax.Array
    first: jax.Array


class _Proposal(NamedTuple):
    step: jax.Array
    pnorm: jax.Array
    par: jax.Array
    delta: jax.Array
    fnorm: jax.Array
    gnorm: jax.Array


class _Verdict(NamedTuple):
    fnorm1: jax.Array
    actred: jax.Array
    prered: jax.Array
    dirder: jax.Array
    ratio: jax.Array
    stalled: jax.Array
    accept: jax.Array


def _gradient_cosine(lin: Linearization, fnorm):
    """MINPACK's ``gnorm``: the largest cosine between f and a column of J."""
    norms = column_norms(lin.R)
    cosines = (
        jnp.abs(lin.gradient)
        / jnp.where(norms == 0, 1.0, norms)
        / jnp.where(fnorm == 0, 1.0, fnorm)
    )
    return jnp.where(fnorm == 0, 0.0, largest(jnp.where(norms == 0, 0.0, cosines)))


def _fnorm(lin: Linearization):
    return jnp.sqrt(2.0 * lin.cost)


def init(x0, lin0: Linearization, options: Options, lb, ub) -> SolverState:
    if options.jac_scale:
        norms = column_norms(lin0.R)
        diag = jnp.where(norms == 0, 1.0, norms)
    else:
        diag = 1.0 / options.x_scale
    xnorm = norm(diag * x0)
    delta = jnp.where(xnorm == 0, _FACTOR, _FACTOR * xnorm)
    status = jnp.where(_gradient_cosine(lin0, _fnorm(lin0)) <= options.gtol, 1, RUNNING)
    status = jnp.where(lin0.finite, status, -3)
    extra = _Extra(diag, delta, jnp.zeros((), x0.dtype), xnorm, jnp.asarray(True))
    one = jnp.ones((), jnp.int32)
    return SolverState(x0, lin0, one, one, jnp.zeros((), jnp.int32), status, extra)


def _damped_step(scaled, qtr, delta, par, n_rows):
    """Moré's trust-region step through the SVD of ``scaled`` (any rank, any radius)."""
    U, s, Vt = svd(scaled)
    return solve_trust_region(U.T @ qtr, s, Vt.T, delta, par, n_rows, rtol=0.1)


def propose(state: SolverState, options: Options, lb, ub, active=True):
    """The LM step from the current point: ``(trial point, proposal)``.

    Most iterations take the Gauss-Newton step, which back-substitution with
    the triangular factor gives directly; the SVD and the search for the
    Levenberg-Marquardt parameter are needed only when that step leaves the
    trust region or the factor may be rank-deficient (in a batch of fits, only
    those fits compute them: see :func:`jaxpro.fit._batching.only_where`),
    and never where ``active`` is false (the proposal is then discarded).
    """
    lin, extra = state.lin, state.extra
    fnorm = _fnorm(lin)
    scaled = lin.R / extra.diag[None, :]
    newton = -solve_upper(scaled, lin.qtr)
    inverse = inverse_upper(scaled)
    # ||A||_F ||A^-1||_F bounds cond(A) from above: below the SVD path's rank
    # threshold 1 / (eps * n_rows) the factor is certainly of full rank
    bound = frobenius(scaled) * frobenius(inverse)
    full_rank = bound * (_EPS * options.n_rows) < 0.5
    inside = full_rank & (norm(newton) <= extra.delta) & all_finite(newton)
    z, par = only_where(
        active & ~inside,
        _damped_step,
        (newton, jnp.zeros_like(extra.par)),
        scaled,
        lin.qtr,
        extra.delta,
        extra.par,
        jnp.asarray(options.n_rows, scaled.dtype),
    )
    pnorm = norm(z)
    delta = jnp.where(extra.first, jnp.minimum(extra.delta, pnorm), extra.delta)
    step = z / extra.diag
    proposal = _Proposal(step, pnorm, par, delta, fnorm, _gradient_cosine(lin, fnorm))
    return state.x + step, proposal


def _verdict(state: SolverState, proposal: _Proposal, trial: Linearization, options: Options):
    """MINPACK's reduction ratio and the acceptance of a trial point."""
    fnorm = proposal.fnorm
    fnorm1 = jnp.where(trial.finite, _fnorm(trial), jnp.inf)
    actred = jnp.where(0.1 * fnorm1 < fnorm, 1.0 - (fnorm1 / fnorm) ** 2, -1.0)
    temp1 = norm(matvec(state.lin.R, proposal.step)) / fnorm
    temp2 = jnp.sqrt(proposal.par) * proposal.pnorm / fnorm
    prered = temp1**2 + temp2**2 / 0.5
    dirder = -(temp1**2 + temp2**2)
    ratio = jnp.where(prered != 0, actred / jnp.where(prered != 0, prered, 1.0), 0.0)
    ratio = jnp.where(jnp.isfinite(ratio), ratio, 0.0)  # an unusable trial is a rejected one
    # Below the cost's rounding the ratio is noise (MINPACK's info 6 tests the
    # absolute epsilon, too small for long data): take the tiny step unless it
    # visibly raises the cost, and stop.
    stalled = trial.finite & (prered <= options.rounding) & (actred >= -options.rounding)
    accept = ((ratio >= 1e-4) & trial.finite) | stalled
    return _Verdict(fnorm1, actred, prered, dirder, ratio, stalled, accept)


def judge(state, proposal, trial, options) -> jax.Array:
    """Whether the trial will be accepted (decides if its pass must be made exact)."""
    return _verdict(state, proposal, trial, options).accept


def update(state: SolverState, proposal: _Proposal, trial: Linearization, options, lb, ub):
    """MINPACK's step-bound update, acceptance and termination tests."""
    v = _verdict(state, proposal, trial, options)
    extra, fnorm, pnorm, par, delta = (
        state.extra,
        proposal.fnorm,
        proposal.pnorm,
        proposal.par,
        proposal.delta,
    )
    shrink = jnp.where(v.actred >= 0, 0.5, 0.5 * v.dirder / (v.dirder + 0.5 * v.actred))
    shrink = jnp.where((0.1 * v.fnorm1 >= fnorm) | (shrink < 0.1), 0.1, shrink)
    poor = v.ratio <= 0.25
    grow = ~poor & ((par == 0) | (v.ratio >= 0.75))
    new_delta = jnp.where(
        poor, shrink * jnp.minimum(delta, pnorm / 0.1), jnp.where(grow, pnorm / 0.5, delta)
    )
    new_par = jnp.where(poor, par / shrink, jnp.where(grow, 0.5 * par, par))

    accept = decided(v.accept)
    x = jnp.where(accept, state.x + proposal.step, state.x)
    lin = select(accept, trial, state.lin)
    xnorm = jnp.where(accept, norm(extra.diag * x), extra.xnorm)

    # MINPACK's convergence tests, then its "no further progress possible" tests
    ftol_ok = (
        (jnp.abs(v.actred) <= options.ftol) & (v.prered <= options.ftol) & (0.5 * v.ratio <= 1)
    )
    xtol_ok = new_delta <= options.xtol * xnorm
    status = jnp.where(ftol_ok & xtol_ok, 4, jnp.where(ftol_ok, 2, jnp.where(xtol_ok, 3, RUNNING)))
    at_machine = v.stalled | (
        (jnp.abs(v.actred) <= _EPS) & (v.prered <= _EPS) & (0.5 * v.ratio <= 1)
    )
    status = jnp.where((status == RUNNING) & at_machine, 2, status)
    status = jnp.where((status == RUNNING) & (new_delta <= _EPS * xnorm), 3, status)
    status = jnp.where((status == RUNNING) & (proposal.gnorm <= _EPS), 1, status)

    # the next outer iteration's work on acceptance: rescale, then the gtol test
    # (both read the trial, which is the new point when they apply; batched
    # programs then share these with init's, which reads the same pass)
    diag = extra.diag
    if options.jac_scale:
        diag = jnp.where(accept, jnp.maximum(diag, column_norms(trial.R)), diag)
    gtol_ok = accept & (_gradient_cosine(trial, _fnorm(trial)) <= options.gtol)
    status = jnp.where((status == RUNNING) & gtol_ok, 1, status)
    extra = _Extra(diag, new_delta, new_par, xnorm, jnp.asarray(False))
    return conclude(state, x, lin, accept, status, extra, options)


def optimality(state: SolverState, lb, ub):
    """SciPy's first-order optimality for LM: the gradient's largest component."""
    return jnp.linalg.norm(state.lin.gradient, ord=jnp.inf)


def active_mask(state: SolverState, lb, ub, xtol):
    return jnp.zeros(state.x.shape[0], jnp.int32)


LM = Method(init, propose, judge, update, optimality, active_mask)
