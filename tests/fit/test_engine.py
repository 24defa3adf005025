"""The least-squares engine end to end, against SciPy as the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402
from jaxpro import _cache  # noqa: E402
from jaxpro.fit import _data  # noqa: E402


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def two_peaks(x, a1, m1, s1, a2, m2, s2):
    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


def _decay_data(n, seed=0, noise=0.05, truth=(2.5, 1.3, 0.5)):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 5, n)
    return x, decay_np(x, *truth) + rng.normal(0, noise, n)


TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}


def _gauss_newton_polish(x, y, w, p, steps=20):
    """Exact Gauss-Newton iterations for the decay model (NumPy lstsq)."""
    p = np.array(p, dtype=float)
    for _ in range(steps):
        e = np.exp(-p[1] * x)
        J = np.stack([e, -p[0] * x * e, np.ones_like(x)], axis=1) * w[:, None]
        r = (decay_np(x, *p) - y) * w
        p = p + np.linalg.lstsq(J, -r, rcond=None)[0]
    return p


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(30, 3000),
    a=st.floats(0.5, 5),
    b=st.floats(0.4, 3),
    c=st.floats(-1, 1),
    relative_noise=st.floats(1e-3, 0.05),
    seed=st.integers(0, 2**31 - 1),
    weighted=st.booleans(),
)
def test_agrees_with_scipy_on_random_well_posed_problems(
    n, a, b, c, relative_noise, seed, weighted
):
    # well posed: the curve decays by at least e^-1.6 over the data and the
    # noise is at most 5% of the amplitude
    noise = relative_noise * a
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 4, n))
    sigma = rng.uniform(0.5, 2.0, n) * noise if weighted else None
    y = decay_np(x, a, b, c) + rng.normal(0, noise, n) * (sigma / noise if weighted else 1)
    p0 = (a * 0.8, b * 1.2, c + 0.1)
    ours, our_cov = jaxpro.curve_fit(decay, x, y, p0=p0, sigma=sigma)
    ref, ref_cov = so.curve_fit(decay_np, x, y, p0=p0, sigma=sigma, **TIGHT)
    # SciPy stops ~1e-7 short of the optimum even at 1e-15 tolerances; polish
    # its answer with exact Gauss-Newton steps (NumPy lstsq) to get the oracle.
    w = 1 / sigma if weighted else np.ones(n)
    oracle = _gauss_newton_polish(x, y, w, ref)
    stderr = np.sqrt(np.diag(ref_cov))
    np.testing.assert_array_less(
        np.abs(ours - oracle), 1e-6 * stderr + 1e-12, err_msg="popt vs oracle (in std errors)"
    )
    np.testing.assert_allclose(ours, oracle, rtol=1e-7, atol=1e-9, err_msg="popt vs oracle")
    # MINPACK's pcov comes from the last Jacobian it evaluated, one step before
    # its answer; the oracle covariance is s^2 (J^T J)^-1 at the oracle point.
    e = np.exp(-oracle[1] * x)
    J = np.stack([e, -oracle[0] * x * e, np.ones_like(x)], axis=1) * w[:, None]
    r = (decay_np(x, *oracle) - y) * w
    oracle_cov = np.linalg.inv(J.T @ J) * (r @ r) / (n - 3)
    scale = np.outer(stderr, stderr)  # compare covariances entrywise on the scale of sd_i sd_j
    # pcov comes from the last data pass, which may precede a final Gauss-Newton
    # correction of ~1e-8 relative (below what the cost can resolve)
    np.testing.assert_array_less(
        np.abs(our_cov - oracle_cov), 1e-6 * scale, err_msg="pcov vs oracle"
    )


def test_two_dimensional_sigma_matches_scipy():
    x, y = _decay_data(60, seed=4)
    idx = np.arange(60)
    cov = 0.05**2 * np.exp(-np.abs(idx[:, None] - idx[None, :]) / 3.0)
    ours, our_cov = jaxpro.curve_fit(decay, x, y, p0=(2, 1, 0), sigma=cov)
    ref, ref_cov = so.curve_fit(decay_np, x, y, p0=(2, 1, 0), sigma=cov, **TIGHT)
    np.testing.assert_allclose(ours, ref, rtol=1e-8)
    np.testing.assert_allclose(our_cov, ref_cov, rtol=1e-6)


@pytest.mark.parametrize("absolute_sigma", [False, True])
def test_bounded_fit_matches_scipy_trf(absolute_sigma):
    x, y = _decay_data(200, seed=5)
    sigma = np.full(200, 0.05)
    kw = {
        "p0": (2, 1, 0.2),
        "bounds": ([0, 0, 0], [10, 1.2, 1]),
        "sigma": sigma,
        "absolute_sigma": absolute_sigma,
    }
    ours, our_cov = jaxpro.curve_fit(decay, x, y, **kw)
    ref, ref_cov = so.curve_fit(decay_np, x, y, method="trf", x_scale="jac", **kw, **TIGHT)
    assert ours[1] == pytest.approx(1.2, abs=1e-9), "b must end on its upper bound"
    np.testing.assert_allclose(ours, ref, rtol=1e-7)
    np.testing.assert_allclose(our_cov, ref_cov, rtol=1e-5)


def test_least_squares_matches_scipy_with_bounds():
    def rosenbrock(p):
        return jnp.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    def rosenbrock_np(p):
        return np.array([10 * (p[1] - p[0] ** 2), 1 - p[0]])

    ours = jaxpro.least_squares(rosenbrock, [2.0, 2.0], bounds=([-np.inf, 1.5], np.inf))
    ref = so.least_squares(
        rosenbrock_np, [2.0, 2.0], bounds=([-np.inf, 1.5], np.inf), x_scale="jac", **TIGHT
    )
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-8)
    assert ours.success and ours.status in (1, 2, 3, 4)
    # exact: discrete, and the solution lies on the bound p[1] = 1.5 (not near a tie)
    np.testing.assert_array_equal(ours.active_mask, ref.active_mask)
    np.testing.assert_allclose(ours.jac, ref.jac, rtol=1e-6)
    np.testing.assert_allclose(ours.cost, ref.cost, rtol=1e-8)
    assert set(ours) >= {
        "x",
        "cost",
        "fun",
        "jac",
        "grad",
        "optimality",
        "active_mask",
        "nfev",
        "njev",
        "status",
        "message",
        "success",
    }


def test_least_squares_args_kwargs_and_lm():
    x, y = _decay_data(100, seed=6)

    def residuals(p, x, y, *, scale):
        return scale * (decay(x, *p) - y)

    ours = jaxpro.least_squares(
        residuals, [1.0, 1.0, 1.0], method="lm", args=(x, y), kwargs={"scale": 2.0}
    )
    ref = so.least_squares(
        lambda p: 2.0 * (decay_np(x, *p) - y), [1.0, 1.0, 1.0], method="lm", **TIGHT
    )
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-8)


def test_user_jacobian_is_used():
    x, y = _decay_data(80, seed=7)
    calls = []

    def jac(x, a, b, c):
        calls.append(1)  # traced once: proves the custom Jacobian enters the program
        e = jnp.exp(-b * x)
        return jnp.stack([e, -a * x * e, jnp.ones_like(x)], axis=1)

    ours, _ = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1), jac=jac)
    ref, _ = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1))
    assert calls, "the user's jac was never called"
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_callable_loss_matches_builtin():
    x, y = _decay_data(150, seed=8)
    y[::10] += 3.0

    def soft_l1(z):
        t = 1 + z
        return jnp.stack([2 * (t**0.5 - 1), t**-0.5, -0.5 * t**-1.5])

    ours, _ = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1), loss=soft_l1, f_scale=0.1)
    builtin, _ = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1), loss="soft_l1", f_scale=0.1)
    np.testing.assert_allclose(ours, builtin, rtol=1e-10)


def test_robust_losses_resist_gross_outliers():
    """10% gross outliers at N = 1e5: robust losses within 1%, the linear loss off by > 5%."""
    n = 100_000
    truth = np.array([2.5, 1.3, 1.5])
    rng = np.random.default_rng(9)
    x = np.linspace(0, 5, n)
    y = decay_np(x, *truth) + rng.normal(0, 0.05, n)
    bad = rng.random(n) < 0.10
    y[bad] += rng.uniform(1.0, 5.0, bad.sum())  # one-sided gross errors
    p0 = (1.0, 1.0, 1.0)
    linear, _ = jaxpro.curve_fit(decay, x, y, p0=p0)
    worst_linear = np.max(np.abs(linear / truth - 1))
    assert worst_linear > 0.05, f"the linear loss should be biased by > 5%, got {worst_linear:.3%}"
    for loss in ("huber", "cauchy", "arctan"):
        # f_scale = the inlier noise level, the textbook choice
        robust, _ = jaxpro.curve_fit(decay, x, y, p0=p0, loss=loss, f_scale=0.05)
        worst = np.max(np.abs(robust / truth - 1))
        assert worst < 0.01, f"{loss}: worst relative error {worst:.3%} >= 1%"


def test_chunked_path_equals_direct_path(monkeypatch):
    """The same data through the chunked (Gram) and direct (Householder) paths."""
    x = np.linspace(0, 5, 40_000)
    y = np.asarray(two_peaks(x, 2.0, 1.5, 0.4, 1.2, 3.2, 0.6)) + np.random.default_rng(10).normal(
        0, 0.05, x.size
    )
    p0 = (1.8, 1.4, 0.5, 1.0, 3.0, 0.5)
    # the full LM on both layouts (left to jaxpro, the direct block would go
    # through the compact LM first: test_compact_single.py)
    chunked, chunked_cov = jaxpro.curve_fit(two_peaks, x, y, p0=p0, method="lm")
    monkeypatch.setattr(_data, "DIRECT_MAX", 1 << 16)
    direct, direct_cov = jaxpro.curve_fit(two_peaks, x, y, p0=p0, method="lm")
    np.testing.assert_allclose(chunked, direct, rtol=1e-10, err_msg="popt: chunked vs direct")
    np.testing.assert_allclose(
        chunked_cov, direct_cov, rtol=1e-8, err_msg="pcov: chunked vs direct"
    )


def test_other_lengths_reuse_the_compiled_program():
    first = _decay_data(1000)
    jaxpro.curve_fit(decay, *first, p0=(1, 1, 1))
    before = len(_cache._executables)
    for n in (700, 901, 1024, 513):  # all padded to the 1024 bucket
        jaxpro.curve_fit(decay, *_decay_data(n, seed=n), p0=(1, 1, 1))
    assert len(_cache._executables) == before, "a length in the same bucket recompiled"


def test_large_aligned_data_is_read_in_place():
    n = 5_000_000
    # 64-byte aligned on purpose: two NumPy arrays need not share their
    # alignment, and y's would decide whether it is copied
    x = _data._aligned_empty(n)
    x[:] = np.linspace(0, 5, n)
    y = _data._aligned_empty(n)
    y[:] = 1.0
    layout, arrays = _data.build(x, y, None)
    assert layout.kind == "chunked" and not layout.copied
    body = arrays["regions"][0]["x"]
    start = body.ctypes.data
    assert start % 64 == 0 and np.shares_memory(body, x), (
        "the body must be a view of the caller's array"
    )
    assert layout.body_chunks * layout.size + arrays["regions"][1]["w"].sum() == n, (
        "every point counted once"
    )


def test_large_fit_is_right_and_stays_in_float64():
    x, y = _decay_data(300_000, seed=11)
    ours, cov = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1))
    ref, ref_cov = so.curve_fit(decay_np, x, y, p0=(1, 1, 1), **TIGHT)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-6)


def test_global_x64_flag_untouched():
    jax.config.update("jax_enable_x64", False)
    try:
        x, y = _decay_data(50)
        popt, _ = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1))
        assert popt.dtype == np.float64
        assert not jax.config.jax_enable_x64, "jaxpro flipped the global float64 flag"
        assert jnp.ones(1).dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)


def test_max_nfev_exhausted_raises_runtime_error():
    x, y = _decay_data(50)
    with pytest.raises(RuntimeError, match="Optimal parameters not found"):
        jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1), method="lm", max_nfev=2)


def test_singular_covariance_warns_and_is_inf():
    x, y = _decay_data(50)

    def redundant(x, a, b, c, d):
        return (a + d) * jnp.exp(-b * x) + c

    with pytest.warns(jaxpro.errors.OptimizeWarning, match="could not be estimated"):
        _, pcov = jaxpro.curve_fit(redundant, x, y, p0=(1, 1, 1, 1))
    assert np.all(np.isinf(pcov))


def test_full_output():
    x, y = _decay_data(50)
    popt, pcov, info, mesg, ier = jaxpro.curve_fit(decay, x, y, p0=(1, 1, 1), full_output=True)
    assert ier in (1, 2, 3, 4) and isinstance(mesg, str)
    np.testing.assert_allclose(info["fvec"], decay_np(x, *popt) - y, atol=1e-12)
    assert info["nfev"] >= 2


def test_more_parameters_than_residuals_uses_reverse_mode_and_matches_scipy():
    """TRF with m < n (underdetermined): the Jacobian comes from reverse mode."""

    def fun(p):
        return jnp.array([p[0] + 2 * p[1] - 3 * p[2] ** 2 - 1.0, jnp.sin(p[0]) * p[3] - 0.5])

    def fun_np(p):
        return np.array([p[0] + 2 * p[1] - 3 * p[2] ** 2 - 1.0, np.sin(p[0]) * p[3] - 0.5])

    ours = jaxpro.least_squares(fun, [0.3, 0.2, 0.1, 0.4])
    ref = so.least_squares(fun_np, [0.3, 0.2, 0.1, 0.4], jac="3-point", **TIGHT)
    assert ours.success
    np.testing.assert_allclose(ours.fun, 0.0, atol=1e-10, err_msg="a zero-residual solution exists")
    np.testing.assert_allclose(ours.cost, ref.cost, atol=1e-18)
    J = np.asarray(jax.jacfwd(fun)(jnp.asarray(ours.x)))
    np.testing.assert_allclose(ours.jac, J, rtol=1e-12)


def test_lm_on_a_plateau_gets_a_second_opinion_from_trf():
    """NIST BoxBOD from start 1: LM parks at b2 = 27 (model flat); jaxpro's default retries TRF."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from nist import load

    problem = load("BoxBOD")
    lm_only, lm_cov = jaxpro.curve_fit(
        problem.model, problem.x, problem.y, p0=problem.starts[0], method="lm"
    )
    assert lm_only[1] > 10, "explicit LM is respected even when it parks on the plateau"
    assert np.sqrt(lm_cov[1, 1]) > 1e6 * lm_only[1], "b2 is undetermined there"
    popt, _ = jaxpro.curve_fit(problem.model, problem.x, problem.y, p0=problem.starts[0])
    np.testing.assert_allclose(popt, problem.certified_values, rtol=1e-6)


def test_trust_region_parameter_stays_non_negative():
    """A curve where the Newton update of the LM parameter leaves its bracket (was NaN forever)."""
    rng = np.random.default_rng(0)
    m = 5000
    a, b, c = rng.uniform(1, 3, m), rng.uniform(0.5, 2, m), rng.uniform(-0.5, 0.5, m)
    x = np.linspace(0, 5, 200)
    noise = rng.normal(0, 0.05, (m, 200))
    i = 1921
    y = a[i] * np.exp(-b[i] * x) + c[i] + noise[i]
    popt, _, info, _, _ = jaxpro.curve_fit(
        decay, x, y, p0=(1.5, 1.0, 0.0), method="lm", full_output=True
    )
    assert info["nfev"] < 40
    ref, _ = so.curve_fit(decay_np, x, y, p0=(1.5, 1.0, 0.0), **TIGHT)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
