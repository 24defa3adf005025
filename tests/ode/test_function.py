"""``jaxpro.ode.solver``: gradients through the solve against finite differences.

Oracle: central finite differences of the same loss (step 1e-6 relative,
float64), agreeing within 1e-5 relative for the checkpointed reverse mode (the
exact gradient of the discrete solve) and within 1e-4 for the continuous
(backsolve) adjoint, whose gradient differs from the discrete one by about the
solver tolerance (rtol 1e-9 here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.ode as ode
from jaxpro.errors import InputError

T_EVAL = np.linspace(0.0, 5.0, 11)


def lotka_volterra(t, y, args):
    a, b, c, d = args
    return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def finite_difference(loss, theta, step=1e-6):
    theta = np.asarray(theta, dtype=float)
    out = np.zeros_like(theta)
    for i in range(theta.size):
        h = step * max(abs(theta[i]), 1.0)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        out[i] = (float(loss(jnp.asarray(up))) - float(loss(jnp.asarray(down)))) / (2 * h)
    return out


@pytest.mark.parametrize(("adjoint", "tolerance"), [("recursive", 1e-5), ("backsolve", 1e-4)])
def test_parameter_gradients_match_finite_differences(adjoint, tolerance):
    with jax.enable_x64(True):
        theta = jnp.array([1.5, 1.0, 3.0, 1.0])
        y0 = jnp.array([10.0, 5.0])
        fn = ode.solver(lotka_volterra, (0.0, 5.0), T_EVAL, y0, theta, adjoint=adjoint,
                        rtol=1e-9, atol=1e-11)  # fmt: skip
        assert fn.plan.settings["adjoint"] == adjoint and fn.plan.method == "dopri8"
        target = fn(y0, jnp.array([1.4, 1.1, 2.9, 0.9]))

        def loss(p):
            return jnp.sum((fn(y0, p) - target) ** 2)

        gradient = np.asarray(jax.grad(loss)(theta))
        np.testing.assert_allclose(gradient, finite_difference(loss, theta), rtol=tolerance)
        # and with respect to the initial state, under vmap of the function itself
        batch = jax.vmap(lambda y: fn(y, theta)[-1])(jnp.stack([y0, y0 * 1.1]))
        # the same solve as unbatched, far inside rtol (Dopri8 stepping onto the output
        # times compiles differently under vmap: 4e-11 apart, 1e-16 before it did)
        np.testing.assert_allclose(batch[0], fn(y0, theta)[-1], rtol=1e-9)


def test_auto_chooses_checkpointed_reverse_mode_for_a_small_problem_and_a_stiff_method():
    with jax.enable_x64(True):

        def decay(t, y, k):
            return jnp.stack([-k[0] * y[0] + k[1] * y[1], -k[1] * y[1]])

        fn = ode.solver(decay, (0.0, 10.0), T_EVAL * 2, jnp.array([1.0, 1.0]),
                        jnp.array([1e5, 1.0]))  # fmt: skip
        assert fn.plan.method == "kvaerno5" and fn.plan.settings["adjoint"] == "recursive"
        assert any(r.startswith("adjoint: recursive") for r in fn.plan.reasons)
        grad = jax.grad(lambda k: fn(jnp.array([1.0, 1.0]), k)[-1, 1])(jnp.array([1e5, 1.0]))
        # y1(t) = exp(-k1 t): d y1(10) / d k1 = -10 exp(-10 k1)
        assert float(grad[1]) == pytest.approx(-10 * np.exp(-10.0), rel=1e-4)


def test_bad_solver_input():
    y0 = jnp.array([1.0, 1.0])
    with pytest.raises(InputError, match="t_eval: is needed"):
        ode.solver(lotka_volterra, (0.0, 1.0), None, y0, (1.0, 1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="adjoint: must be one of"):
        ode.solver(lotka_volterra, (0.0, 1.0), T_EVAL / 5, y0, (1.0, 1.0, 1.0, 1.0),
                   adjoint="forward")  # fmt: skip
