"""Split right-hand sides ``f = (explicit, implicit)`` and ``method='kencarp5'`` (IMEX).

Oracles: the Prothero-Robinson problem ``y' = -L (y - cos t) - sin t``, whose
solution from ``y(0) = 1`` is ``cos t`` for any stiffness ``L`` (here 1e4, split
into the stiff relaxation and the non-stiff forcing); a non-stiff split pair
against the same problem written as one function.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.ode as ode
from jaxpro.errors import InputError

STIFFNESS = 1e5
TIMES = np.linspace(0.0, 5.0, 11)


def relaxation(t, y, args):
    return -STIFFNESS * (y - jnp.cos(t))


def forcing(t, y, args):
    return -jnp.sin(t) * jnp.ones_like(y)


def test_a_stiff_split_pair_is_solved_as_its_sum_with_kvaerno5():
    sol = ode.solve((forcing, relaxation), (0.0, 5.0), jnp.array([1.0]), t_eval=TIMES,
                    rtol=1e-6, atol=1e-9)  # fmt: skip
    assert sol.success and sol.plan.method == "kvaerno5"
    assert "on the sum of the split pair" in sol.plan.reasons[-1]
    # Within the tolerance at the output times, which the implicit solver steps onto:
    # interpolated between its steps (Hermite, from f at each end, which multiplies the
    # state's error by L) it was up to 1.2e-3 off at rtol 1e-6
    np.testing.assert_allclose(sol.ys[:, 0], np.cos(TIMES), rtol=0, atol=2e-6)


def test_kencarp5_on_request_treats_only_the_stiff_part_implicitly():
    sol = ode.solve((forcing, relaxation), (0.0, 5.0), jnp.array([1.0]), t_eval=TIMES,
                    method="kencarp5", rtol=1e-8, atol=1e-10)  # fmt: skip
    assert sol.success and sol.stats["method"] == "kencarp5"
    np.testing.assert_allclose(sol.ys[:, 0], np.cos(TIMES), atol=1e-7)


def test_a_non_stiff_pair_equals_the_single_function():
    def growth(t, y, args):
        return 0.3 * y

    def decay(t, y, args):
        return -0.1 * y**2

    pair = ode.solve((growth, decay), (0.0, 10.0), jnp.array([0.5]), t_eval=TIMES * 2)
    whole = ode.solve(lambda t, y, a: 0.3 * y - 0.1 * y**2, (0.0, 10.0), jnp.array([0.5]),
                      t_eval=TIMES * 2)  # fmt: skip
    assert pair.plan.method == whole.plan.method == "tsit5"
    np.testing.assert_allclose(pair.ys, whole.ys, rtol=1e-12)


def test_split_bad_input():
    with pytest.raises(InputError, match=r"method: 'kencarp5' .IMEX. needs f as a pair"):
        ode.solve(relaxation, (0.0, 1.0), jnp.array([1.0]), method="kencarp5")
    with pytest.raises(InputError, match=r"f: must be a function f.t, y, args., or a pair"):
        ode.solve((forcing,), (0.0, 1.0), jnp.array([1.0]))
    with pytest.raises(InputError, match="f: must return dy/dt shaped like y0"):
        ode.solve((forcing, lambda t, y, a: y[:0]), (0.0, 1.0), jnp.array([1.0]))
    for call in (
        lambda: ode.solver((forcing, relaxation), (0.0, 1.0), [1.0], jnp.array([1.0])),
        lambda: ode.steady_state((forcing, relaxation), jnp.array([1.0])),
        lambda: ode.fit((forcing, relaxation), [0.0, 1.0], [1.0, 0.5], [1.0], [1.0]),
    ):
        with pytest.raises(InputError, match=r"supported by solve.. only"):
            call()
    with pytest.raises(InputError, match="method: must be 'auto' or one of"):
        ode.steady_state(relaxation, jnp.array([1.0]), method="kencarp5")
