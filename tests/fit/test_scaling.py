"""Parameters on very different scales (a ~ 1e4, b ~ 1e-3): automatic scaling keeps the iteration count.

Oracle for "as many iterations as a well-scaled problem": the same fit
reparameterised by hand so that every parameter is of order 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402
from jaxpro.errors import ConvergenceError  # noqa: E402

X = np.linspace(0, 5000, 500)
TRUTH = (2.0e4, 1.3e-3, 0.5)
Y = TRUTH[0] * np.exp(-TRUTH[1] * X) + TRUTH[2] + np.random.default_rng(0).normal(0, 5, X.size)
P0 = (1e3, 1e-2, 0.0)  # a 20x low, b 8x high


def multi_scale(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def well_scaled(x, a, b, c):  # the same model with a = 1e4 a', b = 1e-3 b'
    return 1e4 * a * jnp.exp(-1e-3 * b * x) + c


def _nfev(model, p0, **kwargs):
    _, _, info, _, _ = jaxpro.curve_fit(model, X, Y, p0=p0, full_output=True, **kwargs)
    return info["nfev"]


@pytest.mark.parametrize("method", ["lm", "trf"])
def test_default_scaling_matches_a_well_scaled_problem(method):
    reference = _nfev(well_scaled, (P0[0] / 1e4, P0[1] / 1e-3, P0[2]), method=method, x_scale=1.0)
    default = _nfev(multi_scale, P0, method=method)
    assert default <= 1.5 * reference + 3, f"{default} evaluations vs {reference} when well scaled"
    popt, _ = jaxpro.curve_fit(multi_scale, X, Y, p0=P0, method=method)
    np.testing.assert_allclose(popt[:2], TRUTH[:2], rtol=1e-3)


def test_unscaled_lm_stalls_where_scaled_lm_converges():
    scaled = _nfev(multi_scale, P0, method="lm")
    try:
        unscaled = _nfev(multi_scale, P0, method="lm", x_scale=1.0, max_nfev=10 * scaled)
    except ConvergenceError:
        unscaled = np.inf  # ran out of ten times the scaled budget
    assert unscaled >= 3 * scaled, f"unscaled LM took {unscaled}, scaled {scaled}"
