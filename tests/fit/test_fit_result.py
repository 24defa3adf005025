"""FitResult on small synthetic data, against SciPy and independent NumPy computations.

Oracles: ``scipy.optimize.curve_fit`` (tight tolerances) for values and
covariance, ``scipy.stats.t`` for the intervals, NumPy for the statistics, the
delta-method bands (finite-difference gradients) and linear least squares.
"""

import jax

jax.config.update("jax_enable_x64", True)

import json  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize as so  # noqa: E402
from scipy import stats  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import ConvergenceError  # noqa: E402

EXPRESSION = "a*exp(-b*x) + c"
TRUTH = (2.0, 1.3, 0.5)
P0 = {"a": 1.0, "b": 1.0, "c": 0.0}
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
N = 30


def decay(x, amp, rate, offset):
    return amp * jnp.exp(-rate * x) + offset


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def _data(seed=1, n=N, noise=0.05):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 4.0, n)
    return x, decay_np(x, *TRUTH) + rng.normal(0.0, noise, n)


X, Y = _data()
SIGMA = 0.02 + 0.05 * np.random.default_rng(2).random(N)
Y_SIGMA = decay_np(X, *TRUTH) + np.random.default_rng(3).normal(0.0, 1.0, N) * SIGMA


def scipy_fit(x, y, **kwargs):
    return so.curve_fit(decay_np, x, y, p0=list(P0.values()), **TIGHT, **kwargs)


@pytest.fixture(scope="module")
def expr_fit():
    return jaxpro.fit(EXPRESSION, X, Y, p0=P0)


@pytest.fixture(scope="module")
def oracle():
    return scipy_fit(X, Y)


# ----------------------------------------------------------------------------- parameters


def test_names_from_an_expression(expr_fit):
    assert expr_fit.names == ("a", "b", "c")


def test_names_from_a_function_signature():
    result = jaxpro.fit(decay, X, Y, p0={"amp": 1.0, "rate": 1.0, "offset": 0.0})
    assert result.names == ("amp", "rate", "offset")
    assert set(result.params) == {"amp", "rate", "offset"}
    popt, pcov = scipy_fit(X, Y)
    np.testing.assert_allclose(result.values, popt, rtol=1e-7)
    np.testing.assert_allclose(result.covariance, pcov, rtol=1e-6)


def test_values_and_covariance_match_scipy(expr_fit, oracle):
    popt, pcov = oracle
    np.testing.assert_allclose(expr_fit.values, popt, rtol=1e-7)
    np.testing.assert_allclose(expr_fit.covariance, pcov, rtol=1e-6)
    assert expr_fit.converged
    assert expr_fit.ok
    assert expr_fit.warnings == ()


def test_params_dict(expr_fit):
    params = expr_fit.params
    assert list(params) == list(expr_fit.names)
    for i, name in enumerate(expr_fit.names):
        assert isinstance(params[name], float)
        assert params[name] == expr_fit.values[i]
        assert expr_fit[name] == expr_fit.values[i]


def test_stderr_is_sqrt_of_the_covariance_diagonal(expr_fit, oracle):
    np.testing.assert_allclose(expr_fit.stderr, np.sqrt(np.diag(expr_fit.covariance)), rtol=1e-15)
    np.testing.assert_allclose(expr_fit.stderr, np.sqrt(np.diag(oracle[1])), rtol=1e-6)


def test_confidence_intervals_use_student_t(expr_fit):
    assert expr_fit.confidence == 0.95
    t = stats.t.ppf(0.975, N - 3)
    np.testing.assert_allclose(expr_fit.ci_lower, expr_fit.values - t * expr_fit.stderr, rtol=1e-13)
    np.testing.assert_allclose(expr_fit.ci_upper, expr_fit.values + t * expr_fit.stderr, rtol=1e-13)


def test_confidence_level_is_honoured(expr_fit):
    result = jaxpro.fit(EXPRESSION, X, Y, p0=P0, confidence=0.8)
    t = stats.t.ppf(0.9, N - 3)
    np.testing.assert_allclose(result.ci_upper - result.values, t * result.stderr, rtol=1e-13)
    assert np.all(result.ci_upper - result.ci_lower < expr_fit.ci_upper - expr_fit.ci_lower)


def test_correlation(expr_fit):
    corr = expr_fit.correlation
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-14)
    np.testing.assert_allclose(corr, corr.T, rtol=1e-14)
    expected = expr_fit.covariance / np.outer(expr_fit.stderr, expr_fit.stderr)
    np.testing.assert_allclose(corr, expected, rtol=1e-14)
    assert np.all(np.abs(corr) <= 1 + 1e-14)


# ----------------------------------------------------------------------------- statistics


def test_chi2_dof_and_reduced_chi2(expr_fit):
    r = Y - decay_np(X, *expr_fit.values)
    assert expr_fit.n == N
    assert expr_fit.dof == N - 3
    np.testing.assert_allclose(expr_fit.chi2, np.sum(r**2), rtol=1e-10)
    np.testing.assert_allclose(expr_fit.reduced_chi2, np.sum(r**2) / (N - 3), rtol=1e-10)
    np.testing.assert_allclose(expr_fit.cost, 0.5 * np.sum(r**2), rtol=1e-10)
    np.testing.assert_allclose(expr_fit.residuals["rms"], np.sqrt(np.mean(r**2)), rtol=1e-10)
    np.testing.assert_allclose(expr_fit.residuals["median"], np.median(r), rtol=1e-8, atol=1e-15)


def test_r_squared(expr_fit):
    r = Y - decay_np(X, *expr_fit.values)
    expected = 1.0 - np.sum(r**2) / np.sum((Y - Y.mean()) ** 2)
    np.testing.assert_allclose(expr_fit.r_squared, expected, rtol=1e-12)


def test_aic_and_bic(expr_fit):
    n, p, chi2 = N, 3, expr_fit.chi2
    np.testing.assert_allclose(expr_fit.aic, n * math.log(chi2 / n) + 2 * p, rtol=1e-13)
    np.testing.assert_allclose(expr_fit.bic, n * math.log(chi2 / n) + p * math.log(n), rtol=1e-13)


# ----------------------------------------------------------------------------- prediction


GRID = np.linspace(-0.5, 5.0, 41)


def test_predict_matches_the_model_in_numpy(expr_fit):
    np.testing.assert_allclose(expr_fit.predict(GRID), decay_np(GRID, *expr_fit.values), rtol=1e-13)


def _delta_method_half_width(result, x, level=0.95):
    """t * sqrt(g^T C g) with g by central finite differences of the NumPy model."""
    theta = result.values
    grads = []
    for j in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        grads.append((decay_np(x, *up) - decay_np(x, *down)) / (2 * h))
    g = np.stack(grads, axis=1)
    variance = np.einsum("ij,jk,ik->i", g, result.covariance, g)
    return stats.t.ppf(0.5 + level / 2, result.dof) * np.sqrt(variance), variance


def test_confidence_band_matches_the_delta_method(expr_fit):
    band = expr_fit.predict_interval(GRID)
    half, _ = _delta_method_half_width(expr_fit, GRID)
    np.testing.assert_allclose(band.value, decay_np(GRID, *expr_fit.values), rtol=1e-13)
    np.testing.assert_allclose(band.upper - band.value, half, rtol=1e-5)
    np.testing.assert_allclose(band.value - band.lower, half, rtol=1e-5)


def test_confidence_band_at_another_level(expr_fit):
    band = expr_fit.predict_interval(GRID, level=0.68)
    half, _ = _delta_method_half_width(expr_fit, GRID, level=0.68)
    np.testing.assert_allclose(band.upper - band.value, half, rtol=1e-5)


def test_prediction_band_is_wider_than_the_confidence_band(expr_fit):
    confidence = expr_fit.predict_interval(GRID, kind="confidence")
    prediction = expr_fit.predict_interval(GRID, kind="prediction")
    np.testing.assert_allclose(prediction.value, confidence.value, rtol=1e-15)
    assert np.all(prediction.upper > confidence.upper)
    assert np.all(prediction.lower < confidence.lower)
    # a new observation adds the residual variance (sigma not given: reduced chi2)
    _, variance = _delta_method_half_width(expr_fit, GRID)
    t = stats.t.ppf(0.975, expr_fit.dof)
    expected = t * np.sqrt(variance + expr_fit.reduced_chi2)
    np.testing.assert_allclose(prediction.upper - prediction.value, expected, rtol=1e-5)


def test_predict_interval_rejects_an_unknown_kind(expr_fit):
    with pytest.raises(jaxpro.errors.InputError, match=r"^kind: .*'tolerance'"):
        expr_fit.predict_interval(GRID, kind="tolerance")


def test_multivariable_expression_with_dict_columns_matches_lstsq():
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 3.0, N)
    t = rng.random(N) * 3.0
    y = 1.5 * x - 0.7 * t + 0.3 + rng.normal(0.0, 0.01, N)
    result = jaxpro.fit("a*x + b*t + c", {"x": x, "t": t}, y)
    A = np.stack([x, t, np.ones(N)], axis=1)
    solution, ss_res, *_ = np.linalg.lstsq(A, y, rcond=None)
    assert result.names == ("a", "b", "c")
    assert result.model.variables == ("x", "t")
    np.testing.assert_allclose(result.values, solution, rtol=1e-9)
    covariance = ss_res[0] / (N - 3) * np.linalg.inv(A.T @ A)
    np.testing.assert_allclose(result.covariance, covariance, rtol=1e-6)
    new = {"x": np.array([0.0, 1.0, 2.5]), "t": np.array([2.0, 0.0, 1.0])}
    expected = np.stack([new["x"], new["t"], np.ones(3)], axis=1) @ solution
    np.testing.assert_allclose(result.predict(new), expected, rtol=1e-9)


# ----------------------------------------------------------------------------- sigma


@pytest.mark.parametrize("absolute_sigma", [False, True])
def test_sigma_matches_scipy(absolute_sigma):
    result = jaxpro.fit(EXPRESSION, X, Y_SIGMA, p0=P0, sigma=SIGMA, absolute_sigma=absolute_sigma)
    popt, pcov = scipy_fit(X, Y_SIGMA, sigma=SIGMA, absolute_sigma=absolute_sigma)
    np.testing.assert_allclose(result.values, popt, rtol=1e-7)
    np.testing.assert_allclose(result.covariance, pcov, rtol=1e-6)
    weighted = (Y_SIGMA - decay_np(X, *result.values)) / SIGMA
    np.testing.assert_allclose(result.chi2, np.sum(weighted**2), rtol=1e-10)
    np.testing.assert_allclose(result.residuals["rms"], np.sqrt(np.mean(weighted**2)), rtol=1e-10)
    w2 = SIGMA**-2
    mean = np.sum(w2 * Y_SIGMA) / np.sum(w2)
    r_squared = 1.0 - np.sum(weighted**2) / np.sum(w2 * (Y_SIGMA - mean) ** 2)
    np.testing.assert_allclose(result.r_squared, r_squared, rtol=1e-12)
    # absolute: pcov = (J^T W J)^-1; relative: times the reduced chi2
    other = jaxpro.fit(
        EXPRESSION, X, Y_SIGMA, p0=P0, sigma=SIGMA, absolute_sigma=not absolute_sigma
    )
    ratio = result.reduced_chi2 if not absolute_sigma else 1.0 / result.reduced_chi2
    np.testing.assert_allclose(result.covariance, other.covariance * ratio, rtol=1e-10)


def _covariance_matrix():
    distance = np.abs(np.subtract.outer(X, X))
    return np.diag(SIGMA**2) + 0.3 * np.outer(SIGMA, SIGMA) * np.exp(-distance)


def test_two_d_sigma_matches_scipy():
    cov = _covariance_matrix()
    result = jaxpro.fit(EXPRESSION, X, Y_SIGMA, p0=P0, sigma=cov)
    popt, pcov = scipy_fit(X, Y_SIGMA, sigma=cov)
    np.testing.assert_allclose(result.values, popt, rtol=1e-7)
    np.testing.assert_allclose(result.covariance, pcov, rtol=1e-6)
    r = Y_SIGMA - decay_np(X, *result.values)
    np.testing.assert_allclose(result.chi2, r @ np.linalg.solve(cov, r), rtol=1e-10)


def test_two_d_sigma_residual_summary_is_whitened():
    # residuals are documented as the weighted ones, whose sum of squares is chi2
    cov = _covariance_matrix()
    result = jaxpro.fit(EXPRESSION, X, Y_SIGMA, p0=P0, sigma=cov)
    np.testing.assert_allclose(result.n * result.residuals["rms"] ** 2, result.chi2, rtol=1e-10)


# ----------------------------------------------------------------------------- reporting


def test_summary(expr_fit):
    text = expr_fit.summary()
    for name in expr_fit.names:
        assert name in text
    assert "converged" in text
    assert "NOT converged" not in text
    assert f"method: {expr_fit.plan.method}" in text
    assert EXPRESSION in text
    assert repr(expr_fit) == text


def test_to_dict_is_json_and_round_trips(expr_fit):
    payload = json.loads(json.dumps(expr_fit.to_dict()))
    assert payload["kind"] == "fit"
    assert payload["model"] == EXPRESSION
    for i, name in enumerate(expr_fit.names):
        entry = payload["parameters"][name]
        assert entry["value"] == expr_fit.values[i]
        assert entry["stderr"] == expr_fit.stderr[i]
        assert entry["ci"] == [expr_fit.ci_lower[i], expr_fit.ci_upper[i]]
    stats_ = payload["statistics"]
    assert stats_["n"] == N
    assert stats_["dof"] == N - 3
    assert stats_["chi2"] == expr_fit.chi2
    assert stats_["aic"] == expr_fit.aic
    np.testing.assert_array_equal(np.array(payload["covariance"]), expr_fit.covariance)
    assert payload["convergence"]["converged"] is True
    assert payload["ok"] is True
    assert payload["warnings"] == []
    assert payload["plan"]["method"] == expr_fit.plan.method


def test_save_writes_json_and_figure(expr_fit, tmp_path):
    out = expr_fit.save(tmp_path / "run")
    assert out == tmp_path / "run"
    saved = json.loads((out / "result.json").read_text())
    assert saved["parameters"]["b"]["value"] == expr_fit.values[1]
    png = out / "fit.png"
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_returns_a_figure_with_two_axes(expr_fit):
    from matplotlib.figure import Figure

    figure = expr_fit.plot()
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 2


# ----------------------------------------------------------------------------- untrustworthy fits


BAD_FITS = {
    # b's optimum (1.3) lies above its upper bound
    "on-bound": ({"bounds": {"b": (0.0, 1.0)}}, "ended on a bound"),
    # a and c multiply the same exp(-b x): only a + c is determined
    "redundant": ({"model": "a*exp(-b*x) + c*exp(-b*x)"}, "covariance could not be estimated"),
    "max-nfev": ({"max_nfev": 2, "method": "lm"}, "did not converge"),
}


def _bad_fit(case, **extra):
    options, _ = BAD_FITS[case]
    options = dict(options)
    model = options.pop("model", EXPRESSION)
    p0 = {"a": 1.0, "b": 1.0, "c": 0.5}
    return jaxpro.fit(model, X, Y, p0=p0, **options, **extra)


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_untrustworthy_fit_warns(case):
    result = _bad_fit(case)
    assert result.warnings
    assert not result.ok
    _, words = BAD_FITS[case]
    assert any(words in w for w in result.warnings), result.warnings
    assert "WARNING" in result.summary()
    assert result.to_dict()["ok"] is False
    if case == "on-bound":
        assert result.converged
        np.testing.assert_allclose(result["b"], 1.0, rtol=1e-12)
    if case == "redundant":
        assert np.all(np.isinf(result.stderr))
        json.dumps(result.to_dict())  # inf survives serialisation
    if case == "max-nfev":
        assert not result.converged
        assert "NOT converged" in result.summary()


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_strict_raises_convergence_error(case):
    with pytest.raises(ConvergenceError) as info:
        _bad_fit(case, strict=True)
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.result, jaxpro.FitResult)
    assert not info.value.result.ok
    _, words = BAD_FITS[case]
    assert words in str(info.value)


def test_strict_returns_a_trustworthy_fit(expr_fit):
    result = jaxpro.fit(EXPRESSION, X, Y, p0=P0, strict=True)
    np.testing.assert_array_equal(result.values, expr_fit.values)


# ----------------------------------------------------------------------------- robust loss, NaN


def test_soft_l1_matches_scipy():
    y = Y.copy()
    y[[3, 17]] += 1.0  # outliers
    result = jaxpro.fit(EXPRESSION, X, y, p0=P0, loss="soft_l1", f_scale=0.1)
    popt, pcov = scipy_fit(X, y, method="trf", loss="soft_l1", f_scale=0.1)
    np.testing.assert_allclose(result.values, popt, rtol=1e-6)
    np.testing.assert_allclose(result.covariance, pcov, rtol=1e-5)
    assert result.plan.method == "trf"
    assert any("soft_l1" in reason for reason in result.plan.reasons)
    # chi2 is still the plain sum of squares; cost is the robust objective
    r = y - decay_np(X, *result.values)
    np.testing.assert_allclose(result.chi2, np.sum(r**2), rtol=1e-10)
    z = (r / 0.1) ** 2
    np.testing.assert_allclose(
        result.cost, 0.5 * 0.1**2 * np.sum(2 * (np.sqrt(1 + z) - 1)), rtol=1e-10
    )


def test_nan_policy_omit_reports_the_finite_count():
    x, y = X.copy(), Y.copy()
    y[[0, 9]] = np.nan
    x[20] = np.inf
    result = jaxpro.fit(EXPRESSION, x, y, p0=P0, nan_policy="omit")
    finite = int(np.sum(np.isfinite(x) & np.isfinite(y)))
    assert result.n == finite == N - 3
    assert result.dof == finite - 3
    keep = np.isfinite(x) & np.isfinite(y)
    clean = jaxpro.fit(EXPRESSION, x[keep], y[keep], p0=P0)
    np.testing.assert_allclose(result.values, clean.values, rtol=1e-10)
    np.testing.assert_allclose(result.chi2, clean.chi2, rtol=1e-10)


# ----------------------------------------------------------------------------- plan


def test_plan_reasons_mention_bounds_when_bounded():
    result = jaxpro.fit(EXPRESSION, X, Y, p0=P0, bounds={"a": (0.0, 10.0)})
    assert result.plan.method == "trf"
    assert "bounds" in result.plan.reasons[0]
    assert "(a)" in result.plan.reasons[0]


def test_plan_reasons_mention_lm_when_unbounded(expr_fit):
    assert expr_fit.plan.method == "lm"
    assert "Levenberg" in expr_fit.plan.reasons[0]
    assert "LM" in expr_fit.plan.reasons[0]


def test_plan_reasons_after_the_lm_to_trf_fallback():
    # method left to jaxpro; LM runs out of evaluations, so TRF is tried too
    # (with this budget it fails as well, and the lower-cost answer is kept)
    result = jaxpro.fit(EXPRESSION, X, Y, p0=P0, max_nfev=2)
    assert any("TRF was" in reason for reason in result.plan.reasons), result.plan.reasons
    # the first reason explains the first choice (LM), not TRF "where LM converges fastest"
    assert result.plan.reasons[0].startswith("Levenberg-Marquardt"), result.plan.reasons


@pytest.fixture
def statistics_passes(monkeypatch):
    """How often a fit's residual statistics were computed (a pass over the data each)."""
    from jaxpro.fit import _fit

    calls = []
    original = _fit._residual_statistics

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(_fit, "_residual_statistics", counted)
    return calls


@pytest.mark.parametrize("method", [None, "lm", "trf"])
def test_residual_statistics_wait_until_asked_for(statistics_passes, method):
    """Values, errors and chi2 need no pass over the data; R^2 and the residual summary do, once."""
    x, y = _data(seed=5, n=20_000, noise=0.05)  # chunked: the compact LM, LM or TRF
    result = jaxpro.fit(decay, x, y, p0=list(P0.values()), method=method)
    assert statistics_passes == []
    r = y - decay_np(x, *result.values)
    # chi2 is the solver's own, at the reported values (oracle: NumPy's sum at them)
    np.testing.assert_allclose(result.chi2, r @ r, rtol=1e-12)
    assert result.reduced_chi2 == result.chi2 / result.dof
    assert statistics_passes == []
    np.testing.assert_allclose(
        result.r_squared, 1 - (r @ r) / np.sum((y - y.mean()) ** 2), rtol=1e-12
    )
    np.testing.assert_allclose(result.residuals["median"], np.median(r), rtol=1e-8, atol=1e-15)
    result.summary()
    json.dumps(result.to_dict())
    assert statistics_passes == [1]


def test_a_robust_fit_computes_its_statistics_at_once(statistics_passes):
    # under a robust loss the solver's chi2 may precede its last step: a fresh pass
    jaxpro.fit(decay, X, Y, p0=list(P0.values()), loss="soft_l1")
    assert statistics_passes == [1]


def test_data_modified_after_the_fit_are_refused_for_its_statistics():
    """The later pass reads the caller's arrays: changed in place, they no longer are the fit's."""
    from jaxpro.errors import InputError

    x, y = _data(seed=6, n=2000)
    result = jaxpro.fit(decay, x, y, p0=list(P0.values()))
    read = jaxpro.fit(decay, x, y.copy(), p0=list(P0.values()))
    before = (read.r_squared, read.residuals)
    y[:] = y[::-1]  # the same values in another order, in the same array
    read.data.y[:] = read.data.y + 1.0
    with pytest.raises(InputError, match=r"^y: the data were modified in place after the fit"):
        _ = result.r_squared
    assert (read.r_squared, read.residuals) == before  # read before the change: kept
