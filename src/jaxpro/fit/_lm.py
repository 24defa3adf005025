"""Levenberg-Marquardt as MINPACK's ``lmder`` defines it (SciPy's ``method='lm'``).

Moré's trust-region formulation: the step minimises ``||J p + f||`` subject to
``||D p|| <= delta`` with ``D`` the running maximum of the Jacobian's column
norms (``x_scale='jac'``, MINPACK ``mode=1``) or ``1 / x_scale``. The
Levenberg-Marquardt parameter is found through the SVD of ``R D^{-1}``
instead of MINPACK's pivoted QR with Givens updates; the radius and parameter
updates and the termination tests are MINPACK's. As in ``_trf``, each ``step``
is one trial point and one data pass, all inside one ``lax.while_loop``.

MINPACK's "tolerance too small" exits (info 6, 7, 8: no further progress is
possible in floating point) map to the ftol, xtol and gtol statuses: the
solution is as converged as float64 allows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxpro.fit._pass import Linearization
from jaxpro.fit._solver import (
    RUNNING,
    Objective,
    Options,
    SolverState,
    column_norms,
    final_newton_step,
    select,
)
from jaxpro.fit._trust import solve_trust_region

__all__ = ["lm"]

_FACTOR = 100.0  # MINPACK's initial step bound factor
_EPS = float(jnp.finfo(jnp.float64).eps)


class _Extra(NamedTuple):
    diag: jax.Array
    delta: jax.Array
    par: jax.Array
    xnorm: jax.Array
    first: jax.Array


def _gradient_cosine(lin: Linearization, fnorm):
    """MINPACK's ``gnorm``: the largest cosine between f and a column of J."""
    norms = column_norms(lin.R)
    cosines = (
        jnp.abs(lin.gradient)
        / jnp.where(norms == 0, 1.0, norms)
        / jnp.where(fnorm == 0, 1.0, fnorm)
    )
    return jnp.where(fnorm == 0, 0.0, jnp.max(jnp.where(norms == 0, 0.0, cosines)))


def _fnorm(lin: Linearization):
    return jnp.sqrt(2.0 * lin.cost)


def init(objective: Objective, x0, lin0: Linearization, options: Options) -> SolverState:
    if options.jac_scale:
        norms = column_norms(lin0.R)
        diag = jnp.where(norms == 0, 1.0, norms)
    else:
        diag = 1.0 / options.x_scale
    xnorm = jnp.linalg.norm(diag * x0)
    delta = jnp.where(xnorm == 0, _FACTOR, _FACTOR * xnorm)
    status = jnp.where(_gradient_cosine(lin0, _fnorm(lin0)) <= options.gtol, 1, RUNNING)
    status = jnp.where(lin0.finite, status, -3)
    extra = _Extra(diag, delta, jnp.zeros((), x0.dtype), xnorm, jnp.asarray(True))
    return SolverState(x0, lin0, jnp.asarray(1), jnp.asarray(1), jnp.asarray(0), status, extra)


def step(objective: Objective, state: SolverState, options: Options) -> SolverState:
    x, lin, extra = state.x, state.lin, state.extra
    diag, delta, par = extra.diag, extra.delta, extra.par
    fnorm = _fnorm(lin)
    gnorm = _gradient_cosine(lin, fnorm)

    U, s, Vt = jnp.linalg.svd(lin.R / diag[None, :], full_matrices=False)
    z, par = solve_trust_region(U.T @ lin.qtr, s, Vt.T, delta, par, options.n_rows, rtol=0.1)
    p = z / diag
    pnorm = jnp.linalg.norm(z)
    delta = jnp.where(extra.first, jnp.minimum(delta, pnorm), delta)

    x_new = x + p

    def judge(trial: Linearization):
        """MINPACK's reduction ratio and acceptance of a trial point."""
        fnorm1 = jnp.where(trial.finite, _fnorm(trial), jnp.inf)
        actred = jnp.where(0.1 * fnorm1 < fnorm, 1.0 - (fnorm1 / fnorm) ** 2, -1.0)
        temp1 = jnp.linalg.norm(lin.R @ p) / fnorm
        temp2 = jnp.sqrt(par) * pnorm / fnorm
        prered = temp1**2 + temp2**2 / 0.5
        dirder = -(temp1**2 + temp2**2)
        ratio = jnp.where(prered != 0, actred / jnp.where(prered != 0, prered, 1.0), 0.0)
        # Below the cost's rounding the ratio is noise (MINPACK's info 6 tests the
        # absolute epsilon, too small for long data): take the tiny step unless it
        # visibly raises the cost, and stop.
        stalled = trial.finite & (prered <= options.rounding) & (actred >= -options.rounding)
        accept = ((ratio >= 1e-4) & trial.finite) | stalled
        return fnorm1, actred, prered, dirder, ratio, stalled, accept

    trial = objective.evaluate(x_new, lin.R, repeat_if=lambda t: judge(t)[-1])
    fnorm1, actred, prered, dirder, ratio, stalled, accept = judge(trial)

    # radius and parameter update (MINPACK lmder, "update the step bound")
    shrink = jnp.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
    shrink = jnp.where((0.1 * fnorm1 >= fnorm) | (shrink < 0.1), 0.1, shrink)
    poor = ratio <= 0.25
    grow = ~poor & ((par == 0) | (ratio >= 0.75))
    new_delta = jnp.where(
        poor, shrink * jnp.minimum(delta, pnorm / 0.1), jnp.where(grow, pnorm / 0.5, delta)
    )
    new_par = jnp.where(poor, par / shrink, jnp.where(grow, 0.5 * par, par))

    x = jnp.where(accept, x_new, x)
    lin = select(accept, trial, lin)
    xnorm = jnp.where(accept, jnp.linalg.norm(diag * x), extra.xnorm)

    # MINPACK's convergence tests, then its "no further progress possible" tests
    ftol_ok = (jnp.abs(actred) <= options.ftol) & (prered <= options.ftol) & (0.5 * ratio <= 1)
    xtol_ok = new_delta <= options.xtol * xnorm
    status = jnp.where(ftol_ok & xtol_ok, 4, jnp.where(ftol_ok, 2, jnp.where(xtol_ok, 3, RUNNING)))
    machine_f = stalled | ((jnp.abs(actred) <= _EPS) & (prered <= _EPS) & (0.5 * ratio <= 1))
    status = jnp.where(status == RUNNING, jnp.where(machine_f, 2, status), status)
    status = jnp.where(status == RUNNING, jnp.where(new_delta <= _EPS * xnorm, 3, status), status)
    status = jnp.where(status == RUNNING, jnp.where(gnorm <= _EPS, 1, status), status)

    # the next outer iteration's work on acceptance: rescale, then the gtol test
    if options.jac_scale:
        diag = jnp.where(accept, jnp.maximum(diag, column_norms(lin.R)), diag)
    gtol_ok = accept & (_gradient_cosine(lin, _fnorm(lin)) <= options.gtol)
    status = jnp.where((status == RUNNING) & gtol_ok, 1, status)
    newton, usable = final_newton_step(lin, options)
    polish = accept & usable
    x = jnp.where(polish, x + newton, x)
    status = jnp.where(polish & (status == RUNNING), 2, status)

    return SolverState(
        x,
        lin,
        state.nfev + 1,
        state.njev + accept,
        state.nit + accept,
        status,
        _Extra(diag, new_delta, new_par, xnorm, jnp.asarray(False)),
    )


def lm(objective: Objective, x0, lin0: Linearization, options: Options) -> SolverState:
    """Run Levenberg-Marquardt from ``x0`` whose linearisation is ``lin0``.

    Returns the final :class:`SolverState` with SciPy's status codes.
    """
    state = init(objective, x0, lin0, options)

    def keep_going(s: SolverState):
        return (s.status == RUNNING) & (s.nfev < options.max_nfev)

    state = lax.while_loop(keep_going, lambda s: step(objective, s, options), state)
    return state._replace(status=jnp.where(state.status == RUNNING, 0, state.status))
