"""Robust losses against SciPy's own definitions (oracle: scipy.optimize._lsq)."""

import jax
import numpy as np
import pytest
from scipy.optimize._lsq.least_squares import IMPLEMENTED_LOSSES, construct_loss_function

jax.config.update("jax_enable_x64", True)

from nist import load, log_relative_error  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import InputError  # noqa: E402
from jaxpro.fit._losses import LOSSES, check_loss, robust_scaling  # noqa: E402

ROBUST = [name for name in LOSSES if name != "linear"]


@pytest.mark.parametrize("name", ROBUST)
def test_rho_and_derivatives_match_scipy(name):
    z = np.concatenate([np.linspace(0, 3, 61), [10.0, 1e3, 1e6]])
    expected = np.empty((3, z.size))
    IMPLEMENTED_LOSSES[name](z, expected, cost_only=False)
    got = np.stack([np.asarray(v) for v in LOSSES[name](z)])
    np.testing.assert_allclose(
        got, expected, rtol=1e-14, atol=1e-300, err_msg=f"{name}: rho, rho', rho''"
    )


@pytest.mark.parametrize("name", ROBUST)
@pytest.mark.parametrize("f_scale", [0.3, 1.0, 4.0])
def test_scaling_matches_scipy(name, f_scale):
    rng = np.random.default_rng(3)
    r = rng.normal(0, 1.5 * f_scale, 200)
    rho = construct_loss_function(r.size, name, f_scale)(r)
    # SciPy: J_scale = rho' + 2 rho'' r^2, clipped at eps, then sqrt
    raw = rho[1] + 2 * rho[2] * r**2
    j_scale = np.sqrt(np.maximum(raw, np.finfo(float).eps))
    cost_terms, r_factor, j_factor = (np.asarray(v) for v in robust_scaling(name, f_scale, r))
    np.testing.assert_allclose(
        0.5 * cost_terms.sum(), 0.5 * rho[0].sum(), rtol=1e-13, err_msg="cost"
    )
    # Beyond Huber's kink rho' + 2 rho'' z cancels to 0 exactly; both sides clip
    # rounding noise there, so compare where the value is not cancellation.
    clean = raw > 1e3 * np.finfo(float).eps
    assert clean.sum() >= 20
    np.testing.assert_allclose(
        (r * r_factor)[clean], (r * rho[1] / j_scale)[clean], rtol=1e-12, err_msg="scaled r"
    )
    np.testing.assert_allclose(j_factor[clean], j_scale[clean], rtol=1e-12, err_msg="J scale")


def test_unknown_loss_names_the_argument():
    with pytest.raises(InputError, match=r"^loss: unknown loss.*'l2'"):
        check_loss("l2", 1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "big"])
def test_bad_f_scale(bad):
    with pytest.raises(InputError, match=r"^f_scale"):
        check_loss("huber", bad)


def test_soft_l1_keeps_its_digits_for_tiny_residuals():
    """rho(z) = 2 (sqrt(1 + z) - 1) to 2 ulp where SciPy's form cancels (oracle: Decimal, 700 digits)."""
    from decimal import Decimal, getcontext

    getcontext().prec = 700  # 1 + 1e-300 exactly
    z = np.array([0.0, 1e-300, 1e-30, 1e-17, 1e-12, 1e-6, 0.01, 0.5, 3.0, 1e6])
    got = np.asarray(LOSSES["soft_l1"](z)[0])
    exact = np.array([float(2 * ((1 + Decimal(v)).sqrt() - 1)) for v in z])
    np.testing.assert_allclose(got, exact, rtol=4e-16, atol=0)


@pytest.mark.parametrize(("name", "start"), [("MGH09", 1), ("Eckerle4", 1), ("Misra1a", 0)])
def test_soft_l1_with_a_wide_margin_is_least_squares(name, start):
    """With f_scale far above every residual soft_l1 is least squares: NIST's certified values.

    Oracle: the certified values (tests/data/nist-strd), >= 6 correct digits. SciPy 1.18 gets
    0.4, 3.2 and 6.8 digits here: its cost cancels to zero and ftol stops it early.
    """
    problem = load(name)
    result = jaxpro.least_squares(
        lambda p: problem.model(problem.x, *p) - problem.y,
        problem.starts[start],
        loss="soft_l1",
        f_scale=1e6,
    )
    assert log_relative_error(result.x, problem.certified_values).min() >= 6.0
