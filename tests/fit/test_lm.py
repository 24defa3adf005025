"""LM's proposal: the Gauss-Newton step by back-substitution, the SVD path only when needed.

Oracle: the SVD-based trust-region solve (Moré's method, the path every step
took before), and NumPy's solve for the Gauss-Newton step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxpro.fit import _linalg, _lm  # noqa: E402
from jaxpro.fit._pass import Linearization  # noqa: E402
from jaxpro.fit._solver import Options, SolverState  # noqa: E402


def _state(R, qtr, delta, diag=None, par=0.0):
    p = R.shape[0]
    lin = Linearization(
        jnp.asarray(0.5 * float(qtr @ qtr) + 1.0),
        jnp.asarray(R),
        jnp.asarray(qtr),
        jnp.asarray(1.0),
        jnp.asarray(True),
        jnp.asarray(False),
    )
    extra = _lm._Extra(
        jnp.ones(p) if diag is None else jnp.asarray(diag),
        jnp.asarray(delta),
        jnp.asarray(par),
        jnp.asarray(1.0),
        jnp.asarray(False),
    )
    one = jnp.ones((), jnp.int32)
    return SolverState(jnp.zeros(p), lin, one, one, one, jnp.asarray(-100, jnp.int32), extra)


def _options():
    # built in the test, not at import: a JAX array at collection would start the backend
    # with one CPU device before any test could choose (see tests/conftest.py)
    return Options(1e-15, 1e-15, 1e-15, jnp.asarray(100), jnp.ones(3), True, jnp.asarray(50.0))


INF = jnp.full(3, jnp.inf)


def propose(state, active=True):
    return jax.jit(lambda s: _lm.propose(s, _options(), -INF, INF, active))(state)


def svd_path(state):
    scaled = state.lin.R / state.extra.diag[None, :]
    return _lm._damped_step(scaled, state.lin.qtr, state.extra.delta, state.extra.par, 50.0)


R = np.array([[4.0, 1.0, -0.5], [0.0, 2.0, 0.3], [0.0, 0.0, 0.7]])
QTR = np.array([0.3, -0.2, 0.1])
DIAG = np.array([2.0, 1.0, 0.5])


def test_gauss_newton_step_inside_the_region_is_the_solve():
    state = _state(R, QTR, delta=100.0, diag=DIAG)
    trial, proposal = propose(state)
    expected = -np.linalg.solve(R, QTR)  # the step in x; ||D step|| well inside 100
    np.testing.assert_allclose(np.asarray(proposal.step), expected, rtol=1e-14)
    assert float(proposal.par) == 0.0
    z, par = svd_path(state)  # the SVD path gives the same Gauss-Newton step
    np.testing.assert_allclose(np.asarray(z) / DIAG, expected, rtol=1e-13)
    assert float(par) == 0.0


def test_step_outside_the_region_takes_the_damped_svd_path():
    state = _state(R, QTR, delta=0.01, diag=DIAG)
    _, proposal = propose(state)
    z, par = svd_path(state)
    np.testing.assert_allclose(np.asarray(proposal.step), np.asarray(z) / DIAG, rtol=1e-15)
    assert float(proposal.par) == float(par) > 0.0
    assert np.linalg.norm(np.asarray(proposal.step) * DIAG) == pytest.approx(0.01, rel=0.1)


def test_rank_deficient_factor_takes_the_svd_path():
    singular = R.copy()
    singular[2, 2] = 0.0  # third column in the span of the others
    state = _state(singular, QTR, delta=100.0)
    _, proposal = propose(state)
    z, par = svd_path(state)
    assert np.all(np.isfinite(np.asarray(proposal.step)))
    np.testing.assert_allclose(np.asarray(proposal.step), np.asarray(z), rtol=1e-15)


def test_batched_proposals_equal_single_ones_and_skip_inactive_fits():
    deltas = np.array([100.0, 0.01, 100.0, 0.02])
    states = [_state(R * (1 + k), QTR, delta=d, diag=DIAG) for k, d in enumerate(deltas)]
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *states)
    active = jnp.array([True, True, True, False])
    with _linalg.batched():
        batch = jax.jit(jax.vmap(lambda s, a: _lm.propose(s, _options(), -INF, INF, a)[1]))(
            stacked, active
        )
    for k in range(3):
        single = propose(states[k])[1]
        np.testing.assert_allclose(
            np.asarray(batch.step[k]), np.asarray(single.step), rtol=1e-13, err_msg=str(k)
        )
    # an inactive fit outside its region gets the (discarded) Gauss-Newton step, no SVD
    assert float(batch.par[3]) == 0.0
