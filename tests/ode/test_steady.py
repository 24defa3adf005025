"""``jaxpro.ode.steady_state`` and ``solver(f, (t0, inf), ...)`` (implicit adjoint).

Oracles: SciPy's root finder on ``f(y) = 0`` (``scipy.optimize.root``, hybr, xtol
1e-14); the implicit function theorem, ``dy*/db = -J(y*)^-1 df/db`` with ``J`` the
Jacobian at the root (here ``df/db = I``, so ``-J^-1``), and central differences of
the steady state itself; an undamped oscillator, which has no state to settle in.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import root

import jaxpro.ode as ode
from jaxpro.errors import InputError

A = np.array([[-2.0, 1.0, 0.0], [1.0, -3.0, 1.0], [0.0, 1.0, -1.5]])
B = np.array([1.0, 2.0, 0.5])


def network(t, y, b):
    """Three coupled species with cubic losses: one stable equilibrium for b >= 0."""
    return jnp.asarray(A) @ y + b - 0.1 * y**3


def numpy_network(y, b):
    return A @ y + b - 0.1 * y**3


def reference_root(b):
    return root(numpy_network, np.ones(3), args=(b,), method="hybr", tol=1e-14).x


def test_steady_state_is_the_root_of_the_vector_field():
    result = ode.steady_state(network, jnp.zeros(3), jnp.asarray(B), rtol=1e-8, atol=1e-10)
    assert result.success and result.plan.method == "kvaerno5"
    assert "steady state: Kvaerno5" in result.plan.reasons[0]
    # the test it passed: rms(f) < atol + rtol rms(y), so |f| is ~1e-8 here
    assert result.residual < 1e-7
    np.testing.assert_allclose(result.y, reference_root(B), rtol=1e-7)
    assert 0 < result.t < 100 and result.stats["steps"] < 1000
    assert "y*" in result.summary() and result.to_dict()["success"] is True
    assert result.plot().axes


def test_implicit_adjoint_gives_the_implicit_function_theorems_gradient():
    with jax.enable_x64(True):
        fn = ode.solver(network, (0.0, np.inf), None, jnp.zeros(3), jnp.asarray(B), rtol=1e-9,
                        atol=1e-12)  # fmt: skip
        assert fn.plan.settings["adjoint"] == "implicit"
        assert any("implicit function theorem" in r for r in fn.plan.reasons)
        y_star = np.asarray(fn(jnp.zeros(3), jnp.asarray(B)))
        jacobian = np.asarray(jax.jacrev(fn, argnums=1)(jnp.zeros(3), jnp.asarray(B)))
    y_root = reference_root(B)
    np.testing.assert_allclose(y_star, y_root, rtol=1e-8)
    exact = -np.linalg.inv(A - np.diag(0.3 * y_root**2))  # -J^-1, J = A - 0.3 diag(y^2)
    np.testing.assert_allclose(jacobian, exact, rtol=1e-6, atol=1e-9)
    step = 1e-5  # central differences of the root itself, column by column
    columns = [(reference_root(B + step * e) - reference_root(B - step * e)) / (2 * step)
               for e in np.eye(3)]  # fmt: skip
    np.testing.assert_allclose(jacobian, np.stack(columns, axis=1), rtol=1e-6, atol=1e-9)


def test_recursive_adjoint_through_the_steps_agrees():
    with jax.enable_x64(True):
        implicit = ode.solver(network, (0.0, np.inf), None, jnp.zeros(3), jnp.asarray(B),
                              rtol=1e-9, atol=1e-12)  # fmt: skip
        recursive = ode.solver(network, (0.0, np.inf), None, jnp.zeros(3), jnp.asarray(B),
                               adjoint="recursive", rtol=1e-9, atol=1e-12)  # fmt: skip
        assert recursive.plan.settings["adjoint"] == "recursive"

        def loss(fn):
            return jax.grad(lambda b: jnp.sum(fn(jnp.zeros(3), b) ** 2))(jnp.asarray(B))

        # the discrete solve's gradient ignores that it stopped short of the exact root
        np.testing.assert_allclose(loss(recursive), loss(implicit), rtol=1e-5)


def test_a_system_without_an_equilibrium_is_reported_not_settled():
    def oscillator(t, y, args):
        return jnp.stack([y[1], -y[0]])

    result = ode.steady_state(oscillator, jnp.array([1.0, 0.0]), max_steps=500)
    assert not result.success
    assert "not settled after max_steps (500)" in result.message
    assert "oscillate or drift" in result.message
    explicit = ode.steady_state(network, jnp.zeros(3), jnp.asarray(B), method="tsit5",
                                max_steps=300, rtol=1e-8, atol=1e-10)  # fmt: skip
    assert not explicit.success and "try method='kvaerno5'" in explicit.message
    with pytest.raises(InputError, match="y0: the example does not settle"):
        ode.solver(oscillator, (0.0, np.inf), None, jnp.array([1.0, 0.0]), max_steps=500)


def test_pytree_states_settle():
    def decay(t, y, args):
        return {"a": 1.0 - y["a"], "b": y["a"] - 2.0 * y["b"]}

    result = ode.steady_state(decay, {"a": jnp.array(0.0), "b": jnp.zeros(2)}, rtol=1e-9,
                              atol=1e-12)  # fmt: skip
    assert result.success
    assert float(result.y["a"]) == pytest.approx(1.0, rel=1e-7)
    np.testing.assert_allclose(result.y["b"], [0.5, 0.5], rtol=1e-7)


def test_steady_bad_input():
    with pytest.raises(InputError, match="adjoint: 'implicit' needs a steady state"):
        ode.solver(network, (0.0, 1.0), [1.0], jnp.zeros(3), jnp.asarray(B), adjoint="implicit")
    with pytest.raises(InputError, match="t_eval: must be None with t_span"):
        ode.solver(network, (0.0, np.inf), [1.0], jnp.zeros(3), jnp.asarray(B))
    with pytest.raises(InputError, match="adjoint: must be 'auto', 'implicit' or 'recursive'"):
        ode.solver(network, (0.0, np.inf), None, jnp.zeros(3), jnp.asarray(B),
                   adjoint="backsolve")  # fmt: skip
    with pytest.raises(InputError, match="y0: must be finite"):
        ode.steady_state(network, jnp.array([np.nan, 0.0, 0.0]), jnp.asarray(B))
    with pytest.raises(InputError, match="method: must be 'auto'"):
        ode.steady_state(network, jnp.zeros(3), jnp.asarray(B), method="euler")
    with pytest.raises(InputError, match="rtol: must be a number"):
        ode.steady_state(network, jnp.zeros(3), jnp.asarray(B), rtol=0.0)
    with pytest.raises(InputError, match="max_steps: must be a positive integer"):
        ode.steady_state(network, jnp.zeros(3), jnp.asarray(B), max_steps=0)
    with pytest.raises(InputError, match="f: must return dy/dt shaped like y0"):
        ode.steady_state(lambda t, y, a: y[:2], jnp.zeros(3))
