"""Models and residual functions written with NumPy: translated where exact, else run on the host.

The oracle is SciPy on the same function: parameters agree to 1e-6 relative
(jaxpro iterates to tighter tolerances than SciPy's 1e-8 defaults), pcov to
1e-4 (SciPy's pcov comes from a finite-difference Jacobian, good to about
sqrt(eps) per column on these problems). The path taken is read from the
plan, the warning and ``_numpy_model``'s decision.
"""

import subprocess
import sys
import textwrap
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import ModelError, NumPyModelWarning  # noqa: E402
from jaxpro.fit import _numpy_model  # noqa: E402

X = np.linspace(0.0, 4.0, 60)
Y = 2.5 * np.exp(-1.3 * X) + 0.5 + np.random.default_rng(7).normal(0.0, 0.02, X.size)


def numpy_decay(x, a, b, c):
    return a * np.exp(-b * x) + c


def in_place_decay(x, a, b, c):
    out = np.empty_like(x)
    out[:] = a * np.exp(-b * x)
    out += c
    return out


def branching_decay(x, a, b, c):
    if b < 0:  # a Python branch on a parameter: untraceable, fine on the host
        return np.full_like(x, np.inf)
    return a * np.exp(-b * x) + c


def rosenbrock_in_place(p):
    r = np.empty(2)
    r[0] = 10.0 * (p[1] - p[0] ** 2)
    r[1] = 1.0 - p[0]
    return r


def _fit_quietly(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = jaxpro.curve_fit(*args, **kwargs)
    return result, [w for w in caught if issubclass(w.category, NumPyModelWarning)]


def test_a_numpy_model_runs_as_its_exact_translation():
    (popt, pcov), host_warnings = _fit_quietly(numpy_decay, X, Y, p0=[1.0, 1.0, 0.0])
    ref, ref_cov = scipy.optimize.curve_fit(numpy_decay, X, Y, p0=[1.0, 1.0, 0.0])
    assert host_warnings == []  # compiled and exact: nothing to warn about
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-4)
    result = jaxpro.fit(numpy_decay, X, Y, p0=[1.0, 1.0, 0.0])
    assert result.plan.settings["model"] == _numpy_model.TRANSLATED
    assert any("jax.numpy translation" in reason for reason in result.plan.reasons)
    np.testing.assert_allclose(result.predict(X[:7]), numpy_decay(X[:7], *popt), rtol=1e-12)


@pytest.mark.parametrize("model", [in_place_decay, branching_decay])
def test_an_untraceable_model_runs_on_the_host_with_one_warning(model):
    (popt, pcov), host_warnings = _fit_quietly(model, X, Y, p0=[1.0, 1.0, 0.0])
    ref, ref_cov = scipy.optimize.curve_fit(model, X, Y, p0=[1.0, 1.0, 0.0])
    assert len(host_warnings) == 1
    text = str(host_warnings[0].message)
    assert "ran on the host" in text and "evaluations took" in text and "jax.numpy" in text
    assert text.count("cannot be traced by JAX") == 1  # the reason is not wrapped in itself
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-4)


def test_the_host_path_is_in_the_plan_and_predicts_at_any_x():
    with pytest.warns(NumPyModelWarning):
        result = jaxpro.fit(in_place_decay, X, Y, p0=[1.0, 1.0, 0.0])
    assert result.plan.settings["model"] == _numpy_model.HOST
    assert any("forward-difference Jacobian" in reason for reason in result.plan.reasons)
    x_new = np.linspace(0.0, 9.0, 111)  # more points than the fit had
    np.testing.assert_allclose(
        result.predict(x_new), in_place_decay(x_new, *result.values), rtol=1e-12
    )


def test_a_translation_whose_values_differ_is_not_used(monkeypatch):
    monkeypatch.setattr(_numpy_model, "values_match", lambda reference, candidate: False)
    model = lambda x, a, b, c: a * np.exp(-b * x) + c  # noqa: E731 - a fresh function: no cached path
    (popt, _), host_warnings = _fit_quietly(model, X, Y, p0=[1.0, 1.0, 0.0])
    assert len(host_warnings) == 1
    ref, _ = scipy.optimize.curve_fit(model, X, Y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(popt, ref, rtol=1e-6)


def test_a_model_broken_on_the_host_too_keeps_the_tracing_error():
    def broken(x, a, b):
        return a * np.exp(-b * x) + {}["missing"]

    with pytest.raises(ModelError, match="model"):
        jaxpro.curve_fit(broken, X, Y)


def test_least_squares_in_place_residuals_match_scipy_and_count_calls():
    calls = []

    def fun(p):
        calls.append(1)
        return rosenbrock_in_place(p)

    with pytest.warns(NumPyModelWarning, match="fun cannot be traced"):
        result = jaxpro.least_squares(fun, [-2.0, 1.0])
    reference = scipy.optimize.least_squares(rosenbrock_in_place, [-2.0, 1.0])
    np.testing.assert_allclose(result.x, reference.x, rtol=1e-6)
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-10)
    # TRF's nfev leaves out the difference evaluations, as SciPy's does
    assert 3 <= result.nfev < len(calls)

    # with a jac there are none: nfev is exactly how often fun ran (the trace
    # attempt, the first evaluation, the iterations, the final residuals)
    calls.clear()
    with pytest.warns(NumPyModelWarning):
        exact = jaxpro.least_squares(fun, [-2.0, 1.0], jac=lambda p: rosenbrock_jac(p))
    assert exact.nfev == len(calls)
    np.testing.assert_allclose(exact.x, [1.0, 1.0], atol=1e-10)


def rosenbrock_jac(p):
    jac = np.zeros((2, 2))
    jac[0] = [-20.0 * p[0], 10.0]
    jac[1, 0] = -1.0
    return jac


def test_least_squares_numpy_loss_in_place_runs_on_the_host():
    def cubic_soft_l1(z):
        rho = np.empty((3, z.size))
        t = 1 + z
        rho[0] = 3 * (t ** (1 / 3) - 1)
        rho[1] = t ** (-2 / 3)
        rho[2] = -2 / 3 * t ** (-5 / 3)
        return rho

    def residuals(p):
        return np.array([p[0] - 1.0, 3.0 * (p[1] + 2.0), p[0] * p[1] + 2.0])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumPyModelWarning)
        result = jaxpro.least_squares(residuals, [0.5, 0.5], loss=cubic_soft_l1)
    reference = scipy.optimize.least_squares(residuals, [0.5, 0.5], loss=cubic_soft_l1)
    np.testing.assert_allclose(result.x, reference.x, rtol=1e-6)
    np.testing.assert_allclose(result.cost, reference.cost, rtol=1e-8)


def test_translate_replaces_numpy_in_globals_closures_and_same_module_helpers():
    import jax.numpy as jnp

    def helper(x):
        return np.sin(x)

    scale = np.float64(2.0)

    def model(x, a):
        return a * helper(x) * scale + np.cos(x)

    translated = _numpy_model.translate(model)
    assert translated is not None and translated is not model
    values = jax.jit(translated)(jnp.linspace(0.0, 1.0, 5), 1.5)
    np.testing.assert_allclose(values, model(np.linspace(0.0, 1.0, 5), 1.5), rtol=1e-14)
    assert _numpy_model.translate(len) is None  # a builtin: nothing to translate


def test_the_host_path_keeps_float64_without_global_x64():
    # float64 crosses the host callback as raw bits: without them a process
    # that never enabled x64 would see float32 values in the callback
    script = textwrap.dedent(
        """
        import warnings
        import numpy as np, scipy.optimize, jaxpro
        warnings.simplefilter("ignore")
        def fun(p):
            r = np.empty(2)
            r[0] = 10.0 * (p[1] - p[0] ** 2)
            r[1] = 1.0 - p[0]
            return r
        result = jaxpro.least_squares(fun, [-2.0, 1.0])
        assert result.x.dtype == np.float64
        assert result.cost < 1e-25, result.cost
        print("ok", result.cost)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok")


def test_long_data_on_the_host_uses_few_large_chunks():
    # each chunk is a host round trip: one 32768-point chunk for 20,000 points
    # instead of five 4096-point ones (measured: 2^16 at most is fastest).
    # TRF: above 4096 points the compiled loop runs host models (_host_loop)
    n = 20_000
    x = np.linspace(0.0, 4.0, n)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + np.random.default_rng(5).normal(0.0, 0.02, n)
    with pytest.warns(NumPyModelWarning):
        result = jaxpro.fit(in_place_decay, x, y, p0=[1.0, 1.0, 0.0], method="trf")
    assert result.plan.settings["path"] == "chunked"
    assert result.plan.settings["chunk"] == 32768
    ref, _ = scipy.optimize.curve_fit(in_place_decay, x, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(result.values, ref, rtol=1e-6)
