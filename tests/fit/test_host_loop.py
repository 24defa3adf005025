"""Small fits of host-only (untraceable NumPy) functions: SciPy's own loop iterates.

Oracle: SciPy on the same function. The host loop runs MINPACK (lmdif, or
lmder with a jac) and least_squares' TRF with SciPy's default tolerances
where the caller gives none, so the parameters agree with SciPy's to 1e-10
relative (same algorithm, same arithmetic, same start). pcov is computed from
the Jacobian at the answer (SciPy's curve_fit LM uses MINPACK's, one step
behind), so it agrees to 1e-3 relative. Calls are counted in the user's
function itself.
"""

import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import ModelError, NumPyModelWarning  # noqa: E402
from jaxpro.fit import _host_loop  # noqa: E402

X = np.linspace(0.0, 4.0, 200)
Y = 2.5 * np.exp(-1.3 * X) + 0.5 + np.random.default_rng(11).normal(0.0, 0.03, X.size)
P0 = [1.0, 1.0, 0.0]


class Counted:
    """``a * exp(-b x) + c`` computed in place (untraceable), counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, a, b, c):
        self.calls += 1
        out = np.multiply(-b, x)
        np.exp(out, out=out)
        out *= a
        out += c
        return out


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    assert any(issubclass(w.category, NumPyModelWarning) for w in caught)
    return result


def test_small_host_fit_runs_minpack_and_matches_scipy():
    model = Counted()
    result = _quiet(jaxpro.fit, model, X, Y, p0=P0)
    assert result.plan.settings["path"] == "host loop"
    assert "MINPACK lmdif" in result.plan.settings["layout"]
    assert result.timings.programs == ()  # nothing compiled for the solve
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=P0)
    np.testing.assert_allclose(result.values, ref, rtol=1e-10)
    np.testing.assert_allclose(result.covariance, ref_cov, rtol=1e-3)
    # SciPy's default tolerances where none were given, and the plan shows them
    assert result.converged
    assert result.plan.settings["ftol"] == result.plan.settings["xtol"] == 1.49012e-08
    given = _quiet(jaxpro.fit, model, X, Y, p0=P0, ftol=1e-12)
    assert given.plan.settings["ftol"] == 1e-12 and given.plan.settings["xtol"] == 1.49012e-08


def test_warm_curve_fit_calls_the_model_as_often_as_scipy_plus_the_jacobian_at_the_answer():
    model = Counted()
    _quiet(jaxpro.curve_fit, model, X, Y, p0=P0)  # first call: tracing and checks
    model.calls = 0
    popt, _ = _quiet(jaxpro.curve_fit, model, X, Y, p0=P0)
    ours = model.calls
    model.calls = 0
    ref, _ = scipy.optimize.curve_fit(model, X, Y, p0=P0)
    np.testing.assert_array_equal(popt, ref)  # the very same iterations
    # jaxpro's start check replaces SciPy's first call (memoised), and the
    # Jacobian at the answer costs p = 3 more
    assert ours == model.calls + 3, (ours, model.calls)


def test_bounded_host_fit_runs_scipy_trf_and_matches():
    model = Counted()
    bounds = ([0.0, 0.0, -1.0], [10.0, 5.0, 1.0])
    popt, pcov, info, _, ier = _quiet(
        jaxpro.curve_fit, model, X, Y, p0=P0, bounds=bounds, full_output=True
    )
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=P0, bounds=bounds)
    # the same TRF iterations up to rounding in the difference steps
    np.testing.assert_allclose(popt, ref, rtol=1e-8)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-6)
    assert ier in (1, 2, 3, 4)
    np.testing.assert_allclose(info["fvec"], model(X, *popt) - Y, rtol=0, atol=1e-12)


def test_given_tolerances_are_honoured():
    model = Counted()
    popt, _ = _quiet(jaxpro.curve_fit, model, X, Y, p0=P0, ftol=1e-12, xtol=1e-12)
    ref, _ = scipy.optimize.curve_fit(model, X, Y, p0=P0, ftol=1e-12, xtol=1e-12)
    np.testing.assert_allclose(popt, ref, rtol=1e-12)


def test_weighted_and_full_covariance_sigma_match_scipy():
    model = Counted()
    sigma = np.linspace(0.02, 0.05, X.size)
    popt, pcov = _quiet(jaxpro.curve_fit, model, X, Y, p0=P0, sigma=sigma)
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=P0, sigma=sigma)
    np.testing.assert_allclose(popt, ref, rtol=1e-8)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-3)
    cov = np.diag(sigma**2) + 1e-5 * np.exp(-np.abs(X[:, None] - X[None, :]))
    popt, pcov = _quiet(jaxpro.curve_fit, model, X, Y, p0=P0, sigma=cov)
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=P0, sigma=cov)
    np.testing.assert_allclose(popt, ref, rtol=1e-8)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-3)


def test_user_jac_runs_lmder_and_counts_jacobians():
    model = Counted()

    def jac(x, a, b, c):
        e = np.exp(-b * x)
        return np.stack([e, -a * x * e, np.ones_like(x)], axis=1)

    popt, pcov, info, _, _ = _quiet(jaxpro.curve_fit, model, X, Y, p0=P0, jac=jac, full_output=True)
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=P0, jac=jac)
    np.testing.assert_allclose(popt, ref, rtol=1e-10)
    # exact J: the difference is SciPy's Jacobian one step behind the answer
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-3)
    assert info["njev"] >= 2


def test_least_squares_counts_every_call_and_returns_scipys_fields():
    def jac(p):
        return np.array([[-20.0 * p[0], 10.0], [-1.0, 0.0]])

    for method in ("lm", "trf"):
        calls = [0]

        def fun(p, calls=calls):
            calls[0] += 1
            r = np.empty(2)
            r[0] = 10.0 * (p[1] - p[0] ** 2)
            r[1] = 1.0 - p[0]
            return r

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumPyModelWarning)
            result = jaxpro.least_squares(fun, [-1.2, 1.0], jac=jac, method=method)
            assert result.nfev == calls[0], (method, result.nfev, calls[0])  # SciPy's test_nfev
            difference = jaxpro.least_squares(fun, [-1.2, 1.0], method=method)
        ref = scipy.optimize.least_squares(fun, [-1.2, 1.0], method=method)
        for got in (result, difference):
            np.testing.assert_allclose(got.x, ref.x, rtol=1e-7)
            np.testing.assert_allclose(got.fun, fun(got.x), atol=1e-12)
            np.testing.assert_allclose(got.grad, got.jac.T @ got.fun, atol=1e-8)
            assert got.success and got.status > 0
        # SciPy's fields: no njev for LM with differences
        assert (difference.njev is None) == (method == "lm")


def test_robust_loss_starts_from_huber_on_the_host():
    model = Counted()
    y = Y.copy()
    y[::17] += 3.0  # outliers
    result = _quiet(jaxpro.fit, model, X, y, p0=P0, loss="cauchy", f_scale=0.05)
    assert result.plan.settings["path"] == "host loop"
    assert result.plan.settings["warm_start"]["loss"] == "huber"
    np.testing.assert_allclose(result.values, [2.5, 1.3, 0.5], atol=0.05)
    ref = scipy.optimize.least_squares(lambda p: model(X, *p) - y, P0, loss="cauchy", f_scale=0.05)
    # the Huber start may find a better minimum than SciPy's, never a worse one
    assert result.cost <= ref.cost * (1 + 1e-9)


def test_non_finite_start_is_refused_with_the_models_message():
    def broken(x, a, b, c):
        out = np.empty_like(x)
        out[:] = a * np.log(b - 2.0) * x + c  # NaN at b = 1
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelError, match="non-finite"):
            jaxpro.curve_fit(broken, X, Y, p0=P0)


def test_above_the_threshold_the_compiled_loop_runs_the_host_model(monkeypatch):
    monkeypatch.setattr(_host_loop, "HOST_LOOP_MAX", {"lm": 100, "trf": 100})
    model = Counted()
    result = _quiet(jaxpro.fit, model, X, Y, p0=P0)
    assert result.plan.settings["path"] == "direct"
    ref, _ = scipy.optimize.curve_fit(model, X, Y, p0=P0)
    np.testing.assert_allclose(result.values, ref, rtol=1e-6)


def test_lmdif_counter_tells_differences_from_points():
    def fun(p):
        return np.array([p[0] - 1.0, 10.0 * (p[1] - p[0] ** 2), p[2] + p[0]])

    clock = _host_loop.HostClock()
    counter = _host_loop._LmdifCounter(fun, 0.0, clock)
    calls = [0]

    def counted(p):
        calls[0] += 1
        return counter(p)

    _, _, info, _, _ = scipy.optimize.leastsq(counted, [-1.2, 1.0, 0.5], full_output=True)
    assert counter.points + counter.differences == calls[0]
    # every Jacobian is p = 3 differences, and MINPACK's nfev counts them all
    assert counter.differences == 3 * counter.sweeps
    assert counter.sweeps >= 2 and counter.points >= counter.sweeps
    assert calls[0] >= info["nfev"]


def test_factor_and_covariance_of_full_and_deficient_jacobians():
    """The LAPACK shortcuts agree with NumPy's factorisations (1e-12), and a rank-deficient J
    falls back: Q^T f by least squares (R^T qtr = J^T f still holds) and an infinite pcov."""
    rng = np.random.default_rng(3)
    J = np.asfortranarray(rng.standard_normal((50, 3)))
    f = rng.standard_normal(50)
    R, qtr = _host_loop._factor(J, f, J.T @ f)
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-12)
    np.testing.assert_allclose(R.T @ qtr, J.T @ f, rtol=1e-12)
    assert np.linalg.norm(qtr) <= np.linalg.norm(f)
    covariance, rank = _host_loop._covariance(R, 50)
    np.testing.assert_allclose(covariance, np.linalg.inv(J.T @ J), rtol=1e-12)
    assert rank == 3
    deficient = np.asfortranarray(np.column_stack([J[:, 0], J[:, 1], J[:, 0] + J[:, 1]]))
    R, qtr = _host_loop._factor(deficient, f, deficient.T @ f)
    assert np.linalg.norm(qtr) <= np.linalg.norm(f)  # ||Q^T f|| <= ||f||: no blow-up
    np.testing.assert_allclose(R.T @ qtr, deficient.T @ f, atol=1e-10)
    covariance, rank = _host_loop._covariance(R, 50)
    assert rank == 2 and np.isinf(covariance).all()


def test_forward_differences_are_scipys_two_point_jacobian():
    """The Jacobian at the answer uses SciPy's '2-point' rule: the same steps
    (sign(0) = 1, max(1, |x|) scaling, the step actually taken after rounding)
    and the same arithmetic, so it equals ``approx_derivative``'s bit for bit."""
    from scipy.optimize._numdiff import approx_derivative

    from jaxpro.fit._host import _forward_differences

    def fun(p):
        return np.array([np.exp(-p[0] * X[:5]).sum(), p[1] ** 3 - p[2], np.sin(p[0] * p[2])])

    for theta in (np.array([0.0, -2.5, 1e6]), np.array([1e-9, 3.0, -0.7])):
        f0 = fun(theta)
        for rel_step in (None, 1e-6):
            ours = _forward_differences(fun, theta, f0, rel_step=rel_step)
            ref = approx_derivative(fun, theta, method="2-point", rel_step=rel_step, f0=f0)
            np.testing.assert_array_equal(ours, ref)
            assert ours.flags.f_contiguous  # LAPACK's QR takes it without a copy
