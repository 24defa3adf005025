"""fit_many's compact LM (``jaxpro.fit._compact``) and the hand-over to the full LM or TRF.

Oracles: MINPACK's LM as jaxpro's full program runs it (``method="lm"``, itself
checked against SciPy in test_many.py), SciPy ``curve_fit`` at tight
tolerances, NumPy's inverse for the covariance, and NIST StRD's certified
values and standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

jax.config.update("jax_enable_x64", True)

from nist import NAMES, load, log_relative_error  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.fit import _compact  # noqa: E402

M, N = 40, 150
P0 = (1.5, 1.0, 0.0)


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 5, N)
    truth = np.stack([rng.uniform(1, 3, M), rng.uniform(0.5, 2, M), rng.uniform(-0.5, 0.5, M)], 1)
    Y = decay_np(x, *truth.T[:, :, None]) + rng.normal(0, 0.05, (M, N))
    return x, Y


def test_compact_curves_agree_with_minpack_lm_and_scipy(data):
    x, Y = data
    compact = jaxpro.fit_many(decay, x, Y, p0=P0)
    full = jaxpro.fit_many(decay, x, Y, p0=P0, method="lm")
    assert compact.plan.settings["curves_by_program"] == {"compact LM": M}
    assert full.plan.settings["curves_by_program"] == {"LM": M}
    assert any("compact LM" in reason for reason in compact.plan.reasons)
    assert compact.converged.all() and set(compact.status) <= {1, 2, 3, 4}
    # both stop within their tolerances (1.5e-8) of the optimum: far inside the standard errors
    np.testing.assert_array_less(np.abs(compact.values - full.values), 1e-5 * full.stderr)
    np.testing.assert_allclose(compact.stderr, full.stderr, rtol=1e-6)
    np.testing.assert_allclose(compact.cost, full.cost, rtol=1e-10)
    for i in range(0, M, 9):
        popt, pcov = so.curve_fit(decay_np, x, Y[i], p0=P0, ftol=1e-15, xtol=1e-15, gtol=1e-15)
        perr = np.sqrt(np.diag(pcov))
        np.testing.assert_array_less(np.abs(compact.values[i] - popt), 1e-5 * perr)
        np.testing.assert_allclose(compact.covariance[i], pcov, rtol=1e-5, err_msg=str(i))


def test_columns_give_the_covariance_and_factor_of_the_gram_matrix():
    """The host-side post-processing: (J^T J)^{-1}, R^T R = J^T J, R^T qtr = J^T r (1e-10)."""
    rng = np.random.default_rng(3)
    J = rng.normal(size=(5, 30, 4)) * np.array([1.0, 10.0, 0.1, 3.0])
    r = rng.normal(size=(5, 30))
    A = np.einsum("mni,mnj->mij", J, J)
    g = np.einsum("mni,mn->mi", J, r)
    c = np.einsum("mn,mn->m", r, r)
    theta = rng.normal(size=(5, 4))
    extra = np.stack([c, np.full(5, 2.0), np.full(5, 7.0), np.full(5, 6.0)], 1)
    raw = np.concatenate([theta, A.reshape(5, 16), g, extra], axis=1)
    cols = _compact.columns(raw, 4)
    np.testing.assert_allclose(cols["covariance"], np.linalg.inv(A), rtol=1e-10)
    np.testing.assert_allclose(np.einsum("mki,mkj->mij", cols["R"], cols["R"]), A, rtol=1e-10)
    np.testing.assert_allclose(np.einsum("mki,mk->mi", cols["R"], cols["qtr"]), g, rtol=1e-10)
    assert np.allclose(np.triu(cols["R"]), cols["R"])
    np.testing.assert_array_equal(cols["x"], theta)
    np.testing.assert_allclose(cols["cost"], 0.5 * c)
    assert cols["status"].tolist() == [2] * 5 and cols["nfev"].tolist() == [7] * 5
    assert cols["nit"].tolist() == [6] * 5 and cols["rank"].tolist() == [4] * 5
    # a singular matrix: no covariance (inf), rank 0, never a silent number
    raw[0, 4:20] = np.outer([1.0, 2.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]).ravel()
    singular = _compact.columns(raw, 4)
    assert np.isinf(singular["covariance"][0]).all() and singular["rank"][0] == 0
    assert not singular["finite"][0] and singular["finite"][1:].all()


def test_an_ill_conditioned_curve_is_handed_to_the_full_lm(data):
    """A curve whose x is constant: its three Jacobian columns are parallel (rank 1)."""
    x, Y = data
    X = np.tile(x, (M, 1))
    X[5] = 1.0
    auto = jaxpro.fit_many(decay, X, Y, p0=P0)
    assert auto.plan.settings["curves_by_program"] == {"compact LM": M - 1, "LM": 1}
    assert [name for name, _ in auto.timings.programs] == [
        f"compact LM queue, 3 parameters, {N} points per curve",
        f"LM queue, 3 parameters, {N} points per curve",
    ]
    alone = jaxpro.fit_many(decay, X[5:6], Y[5:6], p0=P0, method="lm")
    np.testing.assert_allclose(auto.values[5], alone.values[0], rtol=1e-12)
    assert auto.nfev[5] == alone.nfev[0] and auto.status[5] == alone.status[0]
    # parallel columns: the full LM's SVD finds no usable standard errors either way
    np.testing.assert_allclose(auto.stderr[5], alone.stderr[0], rtol=1e-9)
    assert (auto.stderr[5] > 1e6).all()
    assert auto.converged[np.arange(M) != 5].all()


def test_a_non_finite_start_goes_to_the_full_lm_which_reports_it(data):
    x, Y = data
    p0 = np.tile(P0, (4, 1))
    p0[2] = (1.0, -800.0, 0.0)  # exp(800 x) overflows
    auto = jaxpro.fit_many(decay, x, Y[:4], p0=p0)
    lm = jaxpro.fit_many(decay, x, Y[:4], p0=p0, method="lm")
    assert auto.plan.settings["curves_by_program"] == {"compact LM": 3, "LM": 1}
    assert auto.status[2] == lm.status[2] and not auto.converged[2]
    assert auto.messages[2] == lm.messages[2]


@pytest.mark.parametrize(
    ("kwargs", "programs"),
    [
        ({"method": "lm"}, {"LM": 6}),
        ({"method": "trf", "bounds": ([0, 0, -1], [10, 10, 1])}, {"TRF": 6}),
        ({"loss": "soft_l1"}, {"TRF": 6}),
        ({"x_scale": [1.0, 1.0, 1.0]}, {"LM": 6}),
    ],
)
def test_only_least_squares_left_to_jaxpro_takes_the_compact_path(data, kwargs, programs):
    x, Y = data
    result = jaxpro.fit_many(decay, x, Y[:6], p0=P0, **kwargs)
    assert result.plan.settings["curves_by_program"] == programs
    assert not any("compact LM" in name for name, _ in result.timings.programs)


def test_eligibility():
    assert _compact.eligible("lm", "linear", True, False, 8)
    assert _compact.eligible("trf", "linear", True, True, 8), "bounded: TRF's curves"
    assert not _compact.eligible("lm", "linear", True, False, 9), "unrolled Cholesky: p <= 8"
    assert not _compact.eligible("trf", "linear", True, False, 3), "unbounded TRF: asked for"
    assert not _compact.eligible("lm", "huber", True, False, 3)
    assert not _compact.eligible("trf", "huber", True, True, 3)
    assert not _compact.eligible("lm", "linear", False, False, 3)
    assert not _compact.eligible("lm", "linear", True, True, 3)


def test_bounded_curves_with_interior_optima_stay_compact_and_an_active_bound_goes_to_trf(data):
    """Bounds left to jaxpro (TRF): the compact path rejects trial points outside them.

    Oracle: TRF itself (``method="trf"``). Curve 3's upper bound on b sits below
    its unbounded optimum, so the compact path cannot converge (its steps
    towards it are rejected until the damping gives up): TRF fits it from p0,
    exactly as alone. The other curves' paths stay inside the box.
    """
    x, Y = data
    lb = np.tile([0.0, 0.0, -1.0], (M, 1))
    ub = np.tile([10.0, 10.0, 1.0], (M, 1))
    free = jaxpro.fit_many(decay, x, Y, p0=P0)
    ub[3, 1] = 0.8 * free.values[3, 1]
    auto = jaxpro.fit_many(decay, x, Y, p0=P0, bounds=(lb, ub))
    trf = jaxpro.fit_many(decay, x, Y, p0=P0, bounds=(lb, ub), method="trf")
    by = auto.plan.settings["curves_by_program"]
    assert by == {"compact LM": M - 1, "TRF": 1}, by
    assert any("inside the bounds" in reason for reason in auto.plan.reasons)
    assert auto.converged.all()
    assert np.all((auto.values >= lb) & (auto.values <= ub))
    np.testing.assert_array_less(np.abs(auto.values - trf.values), 1e-5 * trf.stderr)
    # the active bound: TRF's own answer, on the bound
    np.testing.assert_allclose(auto.values[3], trf.values[3], rtol=1e-12)
    assert auto.nfev[3] == trf.nfev[3]
    np.testing.assert_allclose(auto.values[3, 1], ub[3, 1], rtol=1e-6)


def test_identical_curves_fit_alike_and_plot(data):
    """Noise-free copies of one curve: answers equal to rounding, histograms of one bin."""
    x, _ = data
    Y = np.tile(decay_np(x, 2.0, 1.3, 0.25), (8, 1))
    result = jaxpro.fit_many(decay, x, Y, p0=P0)
    np.testing.assert_allclose(result.values, np.tile([2.0, 1.3, 0.25], (8, 1)), rtol=1e-9)
    figure = result.plot()
    assert len(figure.axes) == 3


# NIST problem-starts the compact LM finishes itself (the ill-conditioned ones,
# Lanczos, ENSO, MGH09, go to the full LM: see the slow sweep below)
COMPACT_NIST = [("Misra1a", 0), ("Chwirut2", 1), ("Gauss1", 0), ("Rat42", 0), ("BoxBOD", 1)]


@pytest.mark.parametrize(("name", "start"), COMPACT_NIST)
def test_compact_lm_reaches_nists_certified_values(name, start):
    """>= 8 digits in every value and >= 7 in every standard error (measured >= 8.4)."""
    problem = load(name)
    result = jaxpro.fit_many(problem.model, problem.x, problem.y[None, :], p0=problem.starts[start])
    assert result.plan.settings["curves_by_program"] == {"compact LM": 1}
    assert result.converged[0]
    values = log_relative_error(result.values[0], problem.certified_values)
    errors = log_relative_error(result.stderr[0], problem.certified_std_errors)
    assert values.min() >= 8, values
    assert errors.min() >= 7, errors


@pytest.mark.slow
@pytest.mark.parametrize(("name", "start"), [(n, s) for n in NAMES for s in (0, 1)])
def test_every_nist_problem_start_through_fit_many_left_to_jaxpro(name, start):
    """Whichever program ends it (compact LM, full LM, TRF): >= 6 digits, as test_nist asks of fit."""
    problem = load(name)
    result = jaxpro.fit_many(problem.model, problem.x, problem.y[None, :], p0=problem.starts[start])
    assert result.converged[0], result.messages
    assert log_relative_error(result.values[0], problem.certified_values).min() >= 6
    if name != "Lanczos1":  # its certified residual is rounding noise (see test_nist)
        errors = log_relative_error(result.stderr[0], problem.certified_std_errors)
        assert errors.min() >= 4, errors
