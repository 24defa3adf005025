"""MCMC and SVI diagnostics: known answers, ArviZ agreement, the gate and its problems.

The draws are synthetic (NumPy, fixed seeds), so each check knows its answer:
iid normal draws (R-hat 1, ESS = draws), AR(1) chains (ESS = N (1 - phi) / (1 + phi)),
white-noise and random-walk energies (E-BFMI 2 and near 0), normal importance
weights with a known Pareto tail (k = 1 - 1/sigma^2).
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal, stats

from jaxpro.bayes._diagnose import (
    COLUMNS,
    Gate,
    Problem,
    mcmc_diagnostics,
    svi_diagnostics,
)
from jaxpro.errors import InputError

CHAINS, DRAWS = 4, 1000


def iid(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def ar1(phi, chains, draws, seed=0):
    """Stationary AR(1) chains of unit marginal variance."""
    noise = np.random.default_rng(seed).normal(size=(chains, draws + 500))
    path = signal.lfilter([1.0], [1.0, -phi], noise, axis=1)[:, 500:]  # 500 burn-in steps
    return path * math.sqrt(1 - phi**2)


def codes(problems):
    return [p.code for p in problems]


# ----------------------------------------------------------------------------- R-hat and ESS


def test_iid_draws_have_rhat_one_and_full_bulk_ess():
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))})
    # R-hat within 1.01; bulk ESS within 15% of the 4000 draws
    assert diag.max_rhat < 1.01
    assert diag.min_ess_bulk == pytest.approx(CHAINS * DRAWS, rel=0.15)
    assert diag.problems() == ()


def test_chains_with_different_means_fail_rhat_naming_the_site():
    draws = iid((CHAINS, DRAWS)) + np.array([0.0, 0.5, 1.0, 1.5])[:, None]
    diag = mcmc_diagnostics({"mu": draws, "ok": iid((CHAINS, DRAWS), seed=1)})
    assert diag.table.loc["mu", "r_hat"] > 1.1
    (rhat,) = [p for p in diag.problems() if p.code == "rhat"]
    assert rhat.sites == ("mu",)
    assert rhat.worst == diag.table.loc["mu", "r_hat"]
    assert rhat.message.startswith("R-hat 1.") and "for mu" in rhat.message


def test_ar1_chain_ess_matches_theory():
    phi, chains, draws = 0.9, 4, 20_000
    expected = chains * draws * (1 - phi) / (1 + phi)  # 4211
    diag = mcmc_diagnostics({"x": ar1(phi, chains, draws)})
    # within 25% (over 30 seeds the estimate fell within -18%..+10% at this
    # length; at 4 x 5000 one seed in 30 was 32% low)
    assert diag.table.loc["x", "ess_bulk"] == pytest.approx(expected, rel=0.25)


def test_mcse_of_the_mean_is_sd_over_root_ess():
    row = mcmc_diagnostics({"x": ar1(0.9, 4, 5000, seed=3)}).table.loc["x"]
    # within 10% (ArviZ divides by the mean-ESS, close to the bulk ESS for normal draws)
    assert row["mcse_mean"] == pytest.approx(row["sd"] / math.sqrt(row["ess_bulk"]), rel=0.10)


def test_low_ess_is_a_problem_per_kind():
    diag = mcmc_diagnostics({"slow": ar1(0.99, 4, 1000, seed=2)})
    found = {p.code: p for p in diag.problems()}
    assert {"ess_bulk", "ess_tail"} <= set(found)
    assert found["ess_bulk"].sites == ("slow",)
    assert (
        found["ess_bulk"].message.startswith("bulk ESS ")
        and "< 400 for slow" in found["ess_bulk"].message
    )
    loose = Gate(rhat_max=None, ess_bulk_min=None, ess_tail_min=None)
    assert diag.problems(loose) == ()


def test_one_chain_cannot_pass_rhat():
    diag = mcmc_diagnostics({"x": iid((1, 2000))})
    (rhat,) = [p for p in diag.problems() if p.code == "rhat"]
    assert "at least 2 chains" in rhat.message
    assert math.isnan(diag.max_rhat)
    assert diag.min_ess_bulk > 1000  # ESS is still defined for one chain


def test_constant_site_is_skipped():
    draws = {"x": iid((CHAINS, DRAWS)), "fixed": np.full((CHAINS, DRAWS), 3.0)}
    diag = mcmc_diagnostics(draws)
    assert math.isnan(diag.table.loc["fixed", "r_hat"])
    assert diag.problems() == ()


def test_non_finite_draws_fail():
    x = iid((CHAINS, DRAWS))
    x[2, 10] = np.nan
    (rhat, *_) = mcmc_diagnostics({"x": x}).problems()
    assert rhat.code == "rhat" and rhat.sites == ("x",) and "could not be computed" in rhat.message


# ----------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("interval", ["hdi", "eti"])
def test_interval_of_a_standard_normal(interval):
    # 100k draws: the HDI's ends wander (the shortest interval slides along a
    # flat optimum), up to 0.08 off at 20k draws, 0.05 at 100k over 20 seeds
    diag = mcmc_diagnostics({"z": iid((4, 25_000))}, level=0.9, interval=interval)
    row = diag.table.loc["z"]
    # +-1.645 within 0.05
    assert row["lower"] == pytest.approx(-1.645, abs=0.05)
    assert row["upper"] == pytest.approx(1.645, abs=0.05)
    assert row["median"] == pytest.approx(0.0, abs=0.05)
    assert diag.interval == interval and diag.level == 0.9


def test_table_columns_and_flattened_names():
    draws = {"theta": iid((CHAINS, 200, 2, 3)), "tau": iid((CHAINS, 200), seed=1)}
    table = mcmc_diagnostics(draws).table
    assert tuple(table.columns) == COLUMNS
    assert list(table.index) == [
        "theta[0,0]", "theta[0,1]", "theta[0,2]",
        "theta[1,0]", "theta[1,1]", "theta[1,2]",
        "tau",
    ]  # fmt: skip
    # row theta[1,2] is element [1, 2] of the site (C order)
    assert table.loc["theta[1,2]", "mean"] == pytest.approx(
        draws["theta"][:, :, 1, 2].mean(), abs=1e-14
    )


def test_agrees_with_arviz_summary():
    import arviz as az
    import arviz_base as azb

    rng = np.random.default_rng(5)
    draws = {
        "theta": rng.normal(size=(4, 300, 2, 3)) + np.arange(4)[:, None, None, None] * 0.1,
        "tau": np.exp(ar1(0.7, 4, 300, seed=6)),
    }
    ours = mcmc_diagnostics(draws, level=0.9, interval="hdi").table
    # ArviZ 1.x takes its tail-ESS quantiles from stats.ci_prob; 0.95 gives our 5%/95%
    with azb.rc_context({"stats.ci_prob": 0.95}):
        theirs = az.summary(
            azb.from_dict({"posterior": draws}), ci_prob=0.9, ci_kind="hdi", round_to="none"
        )
    theirs.index = [name.replace(", ", ",") for name in theirs.index]
    theirs = theirs.rename(columns={"hdi90_lb": "lower", "hdi90_ub": "upper"}).loc[ours.index]
    for column in (
        "mean",
        "sd",
        "lower",
        "upper",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "mcse_mean",
        "mcse_sd",
    ):
        np.testing.assert_allclose(
            ours[column].to_numpy(),
            theirs[column].to_numpy(dtype=float),
            rtol=1e-10,
            err_msg=column,
        )


# ----------------------------------------------------------------------------- sampler fields


def test_divergences_are_counted_per_chain():
    diverging = np.zeros((CHAINS, DRAWS), dtype=bool)
    diverging[1, [5, 50, 500]] = True
    diverging[2, 7] = True
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))}, extra={"diverging": diverging})
    assert diag.divergences == 4
    np.testing.assert_array_equal(diag.divergences_per_chain, [0, 3, 1, 0])
    (problem,) = diag.problems()
    assert problem.code == "divergences" and problem.sites == () and problem.worst == 4
    assert "4 divergent transitions (0, 3, 1, 0 per chain" in problem.message
    assert diag.problems(Gate(divergences_max=4)) == ()


def test_no_sampler_fields_means_not_recorded():
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))})
    assert diag.divergences is None and diag.divergences_per_chain is None
    assert diag.treedepth_saturation is None and diag.bfmi is None


def test_treedepth_saturation_fraction():
    num_steps = np.full((CHAINS, DRAWS), 15)
    num_steps[0, :100] = 1023  # 2**10 - 1: a full tree of depth 10
    num_steps[1, :20] = 1024
    num_steps[2, :300] = 1022  # one short of full: not saturated
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))}, extra={"num_steps": num_steps})
    assert diag.treedepth_saturation == pytest.approx(120 / (CHAINS * DRAWS), abs=1e-15)
    assert codes(diag.problems()) == []  # 3% <= 5%
    deeper = mcmc_diagnostics(
        {"x": iid((CHAINS, DRAWS))}, extra={"num_steps": num_steps}, max_tree_depth=9
    )
    assert deeper.treedepth_saturation == pytest.approx(420 / (CHAINS * DRAWS), abs=1e-15)
    (problem,) = deeper.problems()
    assert problem.code == "treedepth" and "10.5% of transitions" in problem.message


def test_bfmi_of_white_noise_energy_is_two():
    energy = iid((CHAINS, DRAWS), seed=7)
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))}, extra={"energy": energy})
    # within 10% of 2
    np.testing.assert_allclose(diag.bfmi, 2.0, rtol=0.10)
    # the textbook formula, to rounding
    centred = energy - energy.mean(axis=1, keepdims=True)
    formula = (np.diff(energy, axis=1) ** 2).sum(axis=1) / (centred**2).sum(axis=1)
    np.testing.assert_allclose(diag.bfmi, formula, rtol=1e-12)
    assert diag.problems() == ()


def test_bfmi_of_random_walk_energy_is_a_problem():
    energy = np.cumsum(iid((CHAINS, DRAWS), seed=8), axis=1)
    diag = mcmc_diagnostics({"x": iid((CHAINS, DRAWS))}, extra={"energy": energy})
    assert np.all(diag.bfmi < 0.3)
    (problem,) = diag.problems()
    assert problem.code == "bfmi" and problem.worst == diag.bfmi.min()
    assert "(and 3 more)" in problem.message


def test_summary_and_json():
    extra = {"diverging": np.zeros((CHAINS, DRAWS), bool), "energy": iid((CHAINS, DRAWS), seed=9)}
    diag = mcmc_diagnostics({"theta": iid((CHAINS, DRAWS, 2))}, extra=extra)
    text = diag.summary()
    assert "theta[1]" in text and "r_hat" in text and "90% HDI" in text and "divergences: 0" in text
    payload = json.loads(json.dumps(diag.to_dict()))
    assert set(payload["table"]["theta[0]"]) == set(COLUMNS)
    assert payload["divergences_per_chain"] == [0, 0, 0, 0]


# ----------------------------------------------------------------------------- gate and input


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rhat_max", 1.0),
        ("rhat_max", math.nan),
        ("ess_bulk_min", -1),
        ("ess_tail_min", math.inf),
        ("divergences_max", 1.5),
        ("divergences_max", True),
        ("bfmi_min", "0.3"),
        ("treedepth_saturation_max", 1.5),
        ("pareto_k_max", math.inf),
    ],
)
def test_gate_rejects_bad_thresholds(field, value):
    with pytest.raises(InputError, match=f"^{field}: "):
        Gate(**{field: value})


def test_gate_accepts_none_and_inf():
    gate = Gate(rhat_max=math.inf, ess_bulk_min=None, divergences_max=None, pareto_k_max=None)
    assert gate.rhat_max == math.inf and gate.ess_tail_min == 400


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"draws": {}}, "draws"),
        ({"draws": {"x": np.zeros(10)}}, "draws['x']"),
        ({"draws": {"x": iid((2, 10)), "y": iid((2, 11))}}, "draws['y']"),
        ({"draws": {"x": iid((2, 3))}}, "draws"),
        ({"draws": {"x": np.array([["a"] * 10] * 2)}}, "draws['x']"),
        ({"draws": {"x": iid((2, 10))}, "level": 1.0}, "level"),
        ({"draws": {"x": iid((2, 10))}, "interval": "hpd"}, "interval"),
        ({"draws": {"x": iid((2, 10))}, "max_tree_depth": 0}, "max_tree_depth"),
        ({"draws": {"x": iid((2, 10))}, "extra": {"energy": np.zeros(20)}}, "extra['energy']"),
    ],
)
def test_mcmc_input_errors_name_the_argument(kwargs, argument):
    draws = kwargs.pop("draws")
    with pytest.raises(InputError) as caught:
        mcmc_diagnostics(draws, **kwargs)
    assert caught.value.argument == argument


# ----------------------------------------------------------------------------- SVI


def test_flattened_elbo_is_a_plateau():
    steps = np.arange(5000)
    rng = np.random.default_rng(10)
    elbo = -(50.0 + 1000.0 * np.exp(-steps / 200)) + rng.normal(0.0, 0.5, steps.size)
    diag = svi_diagnostics(elbo)
    assert diag.plateau and diag.window == 500 and diag.num_steps == 5000
    assert diag.relative_change < 1e-2
    assert diag.problems() == ()


def test_still_decreasing_loss_is_not_a_plateau():
    steps = np.arange(2000)
    loss = 1000.0 - 0.25 * steps + np.random.default_rng(11).normal(0.0, 0.5, steps.size)
    diag = svi_diagnostics(loss)
    # last window mean vs the one before: 125 / 562.6
    assert not diag.plateau
    assert diag.relative_change == pytest.approx(125 / 562.6, rel=0.01)
    (problem,) = diag.problems()
    assert problem.code == "elbo" and problem.message.startswith("ELBO still changing")


def test_pareto_k_small_for_a_well_matched_guide():
    # guide N(0, 1.5^2) a little wider than the posterior N(0, 1): bounded weights
    z = np.random.default_rng(12).normal(0.0, 1.5, 4000)
    log_weights = stats.norm(0, 1).logpdf(z) - stats.norm(0, 1.5).logpdf(z)
    diag = svi_diagnostics(np.ones(100), log_weights)
    assert diag.pareto_k < 0.5
    assert diag.problems() == ()


def test_pareto_k_large_for_heavy_tailed_weights():
    # guide N(0, 1) much narrower than the posterior N(0, 3^2): k = 1 - 1/9 = 0.89
    z = np.random.default_rng(13).normal(0.0, 1.0, 4000)
    log_weights = stats.norm(0, 3).logpdf(z) - stats.norm(0, 1).logpdf(z)
    diag = svi_diagnostics(np.ones(100), log_weights)
    assert diag.pareto_k > 0.7
    (problem,) = diag.problems()
    assert problem == Problem("pareto_k", problem.message, (), diag.pareto_k)
    assert problem.message.startswith(f"Pareto k {diag.pareto_k:.2f} > 0.7")


@pytest.mark.parametrize(
    ("args", "kwargs", "argument"),
    [
        ((np.ones((2, 5)),), {}, "elbo_trace"),
        ((np.ones(3),), {}, "elbo_trace"),
        ((np.ones(10),), {"window": 1}, "window"),
        ((np.ones(10),), {"rtol": 0.0}, "rtol"),
        ((np.ones(10), np.ones(10)), {}, "log_weights"),
        ((np.ones(10), np.full(100, np.nan)), {}, "log_weights"),
    ],
)
def test_svi_input_errors_name_the_argument(args, kwargs, argument):
    with pytest.raises(InputError) as caught:
        svi_diagnostics(*args, **kwargs)
    assert caught.value.argument == argument


# ----------------------------------------------------------------------------- import


def test_import_loads_no_arviz_jax_or_numpyro():
    script = (
        "import sys, jaxpro.bayes._diagnose; "
        "print(sorted(m for m in ('arviz', 'arviz_stats', 'jax', 'numpyro', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
