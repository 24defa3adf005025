"""Single fits through the compact LM first (``_orchestrate._compact_first``), and the hand-over.

Oracles: MINPACK's LM as jaxpro's full program runs it (``method="lm"``,
itself checked against SciPy and NIST elsewhere), SciPy ``curve_fit`` at tight
tolerances, and NIST StRD's certified values (test_nist.py runs every
problem-start through the default path, so through this one).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

jax.config.update("jax_enable_x64", True)

from nist import load, log_relative_error  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.fit import _compact, _orchestrate  # noqa: E402
from jaxpro.fit import _data as _data_module  # noqa: E402

P0 = (1.0, 1.0, 1.0)


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def _data(n, seed=0):
    x = np.linspace(0.0, 4.0, n)
    y = decay_np(x, 2.5, 1.3, 0.5) + np.random.default_rng(seed).normal(0.0, 0.01, n)
    return x, y


@pytest.mark.parametrize("n", [50, 3000])  # the direct layout (<= DIRECT_MAX points)
def test_compact_single_fit_agrees_with_minpack_lm_and_scipy(n):
    x, y = _data(n)
    compact = jaxpro.fit(decay, x, y, p0=P0)
    full = jaxpro.fit(decay, x, y, p0=P0, method="lm")
    assert compact.plan.settings["program"] == "compact LM"
    assert "program" not in full.plan.settings
    assert [name.split(",")[0] for name, _ in compact.timings.programs] == ["compact LM"]
    assert any(reason.startswith("the compact LM finished it") for reason in compact.plan.reasons)
    assert compact.converged and compact.status in (1, 2, 3, 4)
    # both at jaxpro's tolerances (1e-15): the same optimum to rounding, far
    # inside the standard errors, and the same covariance
    np.testing.assert_allclose(compact.values, full.values, rtol=1e-9)
    np.testing.assert_allclose(compact.stderr, full.stderr, rtol=1e-7)
    np.testing.assert_allclose(compact.chi2, full.chi2, rtol=1e-12)
    popt, pcov = so.curve_fit(decay_np, x, y, p0=P0, ftol=1e-15, xtol=1e-15, gtol=1e-15)
    np.testing.assert_array_less(np.abs(compact.values - popt), 1e-6 * np.sqrt(np.diag(pcov)))
    np.testing.assert_allclose(compact.covariance, pcov, rtol=1e-6)


def test_curve_fit_takes_the_compact_path_and_returns_scipys_fields():
    x, y = _data(400)
    popt, pcov, info, message, ier = jaxpro.curve_fit(decay, x, y, p0=P0, full_output=True)
    ref, ref_cov = jaxpro.curve_fit(decay, x, y, p0=P0, method="lm")
    np.testing.assert_allclose(popt, ref, rtol=1e-9)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-7)
    assert ier in (1, 2, 3, 4) and isinstance(message, str)
    # R^T R = J^T J at the answer (to the last step, below rounding in the
    # cost); R^T qtr, the gradient of the last pass, vanishes there as J^T f
    # does: both far below |J| |f| (rounding)
    J = np.stack([np.exp(-popt[1] * x), -popt[0] * x * np.exp(-popt[1] * x), np.ones_like(x)], 1)
    f = decay_np(x, *popt) - y
    np.testing.assert_allclose(info["R"].T @ info["R"], J.T @ J, rtol=1e-9)
    scale = np.linalg.norm(J, axis=0) * np.linalg.norm(f)
    assert (np.abs(info["R"].T @ info["qtr"]) < 1e-9 * scale).all()
    assert (np.abs(J.T @ f) < 1e-9 * scale).all()
    np.testing.assert_allclose(info["fvec"], f, atol=1e-12)


def test_an_ill_conditioned_fit_is_handed_to_the_full_lm(monkeypatch):
    """x constant: the three Jacobian columns are parallel, the compact LM never converges."""
    x = np.ones(30)
    y = 3.0 + np.random.default_rng(1).normal(0.0, 0.1, 30)
    auto = jaxpro.fit(decay, x, y, p0=P0)
    assert [name.split(",")[0] for name, _ in auto.timings.programs][:2] == ["compact LM", "LM"]
    assert any(reason.startswith("the compact LM gave up") for reason in auto.plan.reasons)
    assert auto.plan.settings["program"] in ("LM", "TRF")  # TRF: LM's plateau, second opinion
    # the full program started afresh from p0: the answer it gives without the compact LM
    monkeypatch.setattr(_orchestrate, "_compact_first", lambda *args: False)
    alone = jaxpro.fit(decay, x, y, p0=P0)
    assert "program" not in alone.plan.settings
    np.testing.assert_array_equal(auto.values, alone.values)
    assert (auto.status, auto.nfev) == (alone.status, alone.nfev)


def test_a_non_finite_start_is_reported_as_before():
    x, y = _data(100)
    with pytest.raises(jaxpro.errors.ModelError, match="non-finite"):
        jaxpro.fit(decay, x, y, p0=(1.0, -800.0, 0.0))  # exp(800 x) overflows


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "lm"},
        {"method": "trf"},
        {"bounds": ([0, 0, -1], [10, 10, 1])},
        {"loss": "soft_l1"},
        {"x_scale": [1.0, 1.0, 1.0]},
        {"sigma": np.diag(np.full(200, 0.01**2))},  # a full covariance: whitened by its factor
    ],
    ids=["lm", "trf", "bounds", "robust", "x_scale", "covariance"],
)
def test_only_unbounded_least_squares_left_to_jaxpro_takes_the_compact_path(kwargs):
    x, y = _data(200)
    result = jaxpro.fit(decay, x, y, p0=P0, **kwargs)
    assert "program" not in result.plan.settings
    assert not any("compact LM" in name for name, _ in result.timings.programs)


@pytest.mark.parametrize("n", [_data_module.DIRECT_MAX + 1, _orchestrate.WARM_START_MIN])
def test_chunked_data_and_the_warm_start_take_the_compact_path(n):
    """Chunks (LAPACK's small linear algebra in the loop), and from WARM_START_MIN
    points the compact LM's own warm start on the subsample."""
    x, y = _data(n)
    compact = jaxpro.fit(decay, x, y, p0=P0)
    full = jaxpro.fit(decay, x, y, p0=P0, method="lm")
    assert compact.plan.settings["path"] == "chunked"
    assert compact.plan.settings["program"] == "compact LM"
    assert compact.plan.settings.get("warm_start") == full.plan.settings.get("warm_start")
    if n >= _orchestrate.WARM_START_MIN:
        assert compact.plan.settings["warm_start"]["used"]
        ((label, _),) = compact.timings.programs
        assert label.startswith("compact LM, ") and label.endswith("warm start on 4096 points")
        assert any("started from a fit to a 4096-point" in r for r in compact.plan.reasons)
        # from the warm start no more passes over the data than the full LM
        # (3 each; the damping of a rough start, 1e-3, would take 4)
        assert compact.nfev <= full.nfev
    np.testing.assert_allclose(compact.values, full.values, rtol=1e-9)
    np.testing.assert_allclose(compact.stderr, full.stderr, rtol=1e-7)


@pytest.mark.parametrize(("name", "start"), [("Misra1a", 0), ("Gauss1", 0), ("BoxBOD", 1)])
def test_single_compact_fits_reach_nists_certified_values(name, start):
    """>= 8 digits in every value and >= 7 in every standard error, finished by the compact LM."""
    problem = load(name)
    result = jaxpro.fit(problem.model, problem.x, problem.y, p0=problem.starts[start])
    assert result.plan.settings["program"] == "compact LM"
    assert result.converged
    values = log_relative_error(result.values, problem.certified_values)
    errors = log_relative_error(result.stderr, problem.certified_std_errors)
    assert values.min() >= 8, values
    assert errors.min() >= 7, errors


def test_outcome_fields_of_one_raw_row():
    """The host side of a single compact fit: NumPy's factorisations of the raw Gram matrix."""
    rng = np.random.default_rng(4)
    J = rng.standard_normal((60, 3)) * np.array([1.0, 30.0, 0.1])
    r = rng.standard_normal(60)
    theta = np.array([0.5, -1.0, 2.0])
    raw = np.concatenate([theta, (J.T @ J).ravel(), J.T @ r, [r @ r, 2, 9, 8, 0, 0]])
    out = _compact.outcome_fields(raw, 3)
    np.testing.assert_allclose(out["covariance"], np.linalg.inv(J.T @ J), rtol=1e-12)
    np.testing.assert_allclose(out["R"].T @ out["R"], J.T @ J, rtol=1e-12)
    np.testing.assert_allclose(out["R"].T @ out["qtr"], J.T @ r, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out["R"], np.triu(out["R"]))
    assert (out["status"], out["nfev"], out["njev"], out["nit"]) == (2, 9, 9, 8)
    assert out["rank"] == 3 and out["finite"] and out["cost"] == 0.5 * (r @ r)
    # not positive definite (only where the compact LM gave up): no covariance
    bad = raw.copy()
    bad[3:12] = np.ones(9)
    assert not _compact.outcome_fields(bad, 3)["finite"]
    assert np.isinf(_compact.outcome_fields(bad, 3)["covariance"]).all()


def _lowered_compact(n, warm=True):
    """The compact LM's lowered program for a decay of ``n`` points (StableHLO text)."""
    from jaxpro.fit import _compact_single, _engine

    captured = {}
    original = _engine.solve

    def spy(prepared):
        if prepared.program.method == "compact":
            captured["prepared"] = prepared
        return original(prepared)

    x, y = _data(n)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_engine, "solve", spy)
        if not warm:
            patch.setattr(_orchestrate, "WARM_START_MIN", 10 * n)
        jaxpro.fit(decay, x, y, p0=P0)
    prepared = captured["prepared"]
    return jax.jit(_compact_single.single_fn(prepared.program)).lower(*prepared.args).as_text()


def test_the_warm_start_shares_the_data_loop_of_the_second_stage():
    """One copy of the pass per data region: the warm start adds no program of its own.

    Counted as the model's exponentials in the lowered program (one per copy of
    the pass): a body of chunks read in place and the padded region, with the
    warm start's points as the padded region's first chunk.
    """
    n = _orchestrate.WARM_START_MIN + 1000
    with_warm = _lowered_compact(n).count("stablehlo.exponential")
    without = _lowered_compact(n, warm=False).count("stablehlo.exponential")
    assert with_warm == without == 2


def test_the_lead_chunk_is_laid_out_first_and_views_give_the_data_without_it():
    """``_data.build``'s ``lead`` against the layout without it (oracle: the plain build)."""
    n = 70_000
    rng = np.random.default_rng(1)
    x = np.vstack([np.linspace(0, 1, n), rng.random(n)])  # two rows of x
    y, w = rng.random(n), 0.5 + rng.random(n)
    lead = (x[:, :100] + 7.0, y[:100] + 7.0, w[:100] * 3.0)
    plain_layout, plain = _data_module.build(x, y, w)
    layout, data = _data_module.build(x, y, w, lead=lead)
    assert layout.lead and not plain_layout.lead
    padded = data["regions"][-1]
    size = layout.size
    np.testing.assert_array_equal(padded["y"][0, :100], lead[1])
    np.testing.assert_array_equal(padded["y"][0, 100:], lead[1][-1])  # edge values
    np.testing.assert_array_equal(padded["x"][1][0, :100], lead[0][1])
    np.testing.assert_array_equal(padded["w"][0], np.r_[lead[2], np.zeros(size - 100)])
    back_layout, back = _data_module.without_lead(layout, data)
    assert back_layout == plain_layout
    for got, expected in zip(jax.tree.leaves(back), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(got, expected)
    rest = back["regions"][-1]
    assert np.shares_memory(rest["y"], padded["y"])  # views, not copies
    assert rest["y"].ctypes.data % 64 == 0  # aligned: used in place by XLA
