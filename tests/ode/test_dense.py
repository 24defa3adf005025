"""``solve(..., dense=True)`` and ``ODESolution.evaluate``: the solver's interpolant.

Oracles: the harmonic oscillator's exact solution cos(t) (Tsit5's 4th-order
interpolant at rtol 1e-8: within 1e-7 between the steps); a batch against each
member's exact solution; a falling ball's exact height up to its impact event;
SciPy's ``solve_ivp(dense_output=True)`` on Lotka-Volterra (both within their
tolerance of a tight DOP853 reference).
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jaxpro.ode as ode
from jaxpro.errors import InputError


def oscillator(t, y, args):
    return jnp.stack([y[1], -y[0]])


def test_dense_output_between_the_steps_matches_the_exact_solution():
    sol = ode.solve(oscillator, (0.0, 10.0), jnp.array([1.0, 0.0]), rtol=1e-8, atol=1e-10,
                    dense=True)  # fmt: skip
    times = np.linspace(0.0, 10.0, 257)  # mostly between the accepted steps
    assert not np.isin(times[1:-1], sol.ts).all()
    y = sol.evaluate(times)
    assert y.shape == (257, 2)
    np.testing.assert_allclose(y[:, 0], np.cos(times), atol=1e-7)
    np.testing.assert_allclose(y[:, 1], -np.sin(times), atol=1e-7)
    one = sol.evaluate(3.3)
    assert one.shape == (2,)
    assert one[0] == pytest.approx(math.cos(3.3), abs=1e-7)
    # at the solver's own steps the interpolant gives the steps' states
    np.testing.assert_allclose(sol.evaluate(sol.ts), sol.ys, rtol=1e-12, atol=1e-14)
    assert "interpolation" not in sol.to_dict()


def test_dense_output_of_a_batch_keeps_the_member_axis():
    y0 = jnp.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    sol = ode.solve(oscillator, (0.0, 5.0), y0, t_eval=[0.0, 5.0], batch=True, dense=True,
                    rtol=1e-9, atol=1e-12)  # fmt: skip
    times = np.linspace(0.0, 5.0, 33)
    y = sol.evaluate(times)
    assert y.shape == (3, 33, 2)
    exact = np.stack([np.cos(times), 2 * np.cos(times), np.sin(times)])
    np.testing.assert_allclose(y[:, :, 0], exact, atol=1e-7)
    assert sol.evaluate(1.0).shape == (3, 2)


def test_dense_output_ends_at_a_terminating_event():
    g, h = 9.81, 10.0
    sol = ode.solve(lambda t, y, args: jnp.stack([y[1], -g]), (0.0, 10.0), jnp.array([h, 0.0]),
                    events=lambda t, y, args: y[0], dense=True)  # fmt: skip
    impact = math.sqrt(2 * h / g)
    times = np.linspace(0.0, impact, 20)
    np.testing.assert_allclose(sol.evaluate(times)[:, 0], h - g * times**2 / 2, atol=1e-9)
    with pytest.raises(InputError, match="inside the integrated span"):
        sol.evaluate(impact + 0.5)


def test_dense_output_agrees_with_scipy_dense_output():
    def lv(t, y, args):
        return jnp.stack([1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]])

    sol = ode.solve(lv, (0.0, 10.0), jnp.array([10.0, 5.0]), rtol=1e-9, atol=1e-12, dense=True)
    reference = solve_ivp(lambda t, y: [1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]],
                          (0, 10), [10.0, 5.0], method="DOP853", rtol=1e-13, atol=1e-13,
                          dense_output=True)  # fmt: skip
    times = np.linspace(0.0, 10.0, 101) + 0.037
    times = times[times <= 10.0]
    np.testing.assert_allclose(sol.evaluate(times), reference.sol(times).T, rtol=1e-6, atol=1e-8)


def test_dense_bad_input():
    plain = ode.solve(oscillator, (0.0, 1.0), jnp.array([1.0, 0.0]), t_eval=[0.0, 1.0])
    with pytest.raises(InputError, match="dense=True"):
        plain.evaluate(0.5)
    with pytest.raises(InputError, match="dense: must be True or False"):
        ode.solve(oscillator, (0.0, 1.0), jnp.array([1.0, 0.0]), dense="yes")
    with pytest.raises(InputError, match=r"dense: =True keeps.*GB"):
        ode.solve(oscillator, (0.0, 1.0), jnp.zeros((500, 2)), t_eval=[1.0], dense=True)
    sol = ode.solve(oscillator, (0.0, 1.0), jnp.array([1.0, 0.0]), dense=True)
    with pytest.raises(InputError, match=r"t: must be.*1-D"):
        sol.evaluate(np.zeros((2, 2)))
    with pytest.raises(InputError, match="t: must lie inside"):
        sol.evaluate([-0.5, 0.5])
