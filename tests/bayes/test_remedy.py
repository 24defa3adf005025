"""jaxpro.bayes._remedy: what is tried next after a failed gate, and the per-site non-centring choice."""

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from jaxpro._precision import float64
from jaxpro.bayes._diagnose import Problem
from jaxpro.bayes._model import inspect_model
from jaxpro.bayes._nuts import NutsSettings, run_nuts
from jaxpro.bayes._remedy import WEAK_DATA, informativeness, next_settings

jax.config.update("jax_enable_x64", True)

EIGHT = {
    "J": 8,
    "y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]),
    "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]),
}
QUICK = NutsSettings(num_warmup=300, num_samples=300)


def eight_schools(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def many_groups(group, groups, y=None):
    """20 groups of 250 observations each: the data pin every group mean down."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    with numpyro.plate("groups", groups):
        alpha = numpyro.sample("alpha", dist.Normal(mu, tau))
    with numpyro.plate("data", group.shape[0]):
        numpyro.sample("y", dist.Normal(alpha[group], 1.0), obs=y)


@pytest.fixture(scope="module")
def grouped():
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(20), 250)
    means = rng.normal(1.0, 2.0, size=20)
    return {"group": group, "groups": 20, "y": means[group] + rng.normal(size=group.size)}


def _run(model, data):
    with float64():
        return run_nuts(model, (), data, QUICK, num_chains=2, seed=0)


def _divergent():
    return [Problem("divergences", "12 divergent transitions", (), 12.0)]


def test_weakly_informed_site_is_non_centred():
    """Eight schools: theta's posterior sd is about its prior scale tau (ratio > 0.5)."""
    run = _run(eight_schools, EIGHT)
    with float64():
        ratio = informativeness(eight_schools, (), EIGHT, run, "theta")
        info = inspect_model(eight_schools, (), EIGHT)
        remedy = next_settings(_divergent(), QUICK, info, eight_schools, (), EIGHT, run, np.inf, 0)
    assert ratio > WEAK_DATA
    assert remedy.settings.noncentered == ("theta",)
    assert remedy.settings.target_accept == 0.99  # one rung: see _remedy's docstring
    assert any("non-centred" in r and "theta" in r for r in remedy.reasons)


def test_strongly_informed_site_stays_centred(grouped):
    """250 observations per group: alpha's posterior sd (~0.06) is tiny next to tau (~2).

    Non-centring such a site was measured to cost 8x the leapfrog steps and 15x
    the ESS, so only target_accept is raised.
    """
    run = _run(many_groups, grouped)
    with float64():
        ratio = informativeness(many_groups, (), grouped, run, "alpha")
        info = inspect_model(many_groups, (), grouped)
        remedy = next_settings(_divergent(), QUICK, info, many_groups, (), grouped, run, np.inf, 0)
    assert info.hierarchical == ("alpha",)
    assert ratio < 0.1  # sd 1/sqrt(250) = 0.063 over a prior scale near 2: about 0.03
    assert remedy.settings.noncentered == ()
    assert remedy.settings.target_accept == 0.99  # one rung: see _remedy's docstring
    assert any("kept centred" in r and "alpha" in r for r in remedy.reasons)


def test_divergences_with_nothing_left_to_try_give_up(grouped):
    run = _run(many_groups, grouped)
    exhausted = NutsSettings(num_warmup=300, num_samples=300, target_accept=0.99)
    with float64():
        info = inspect_model(many_groups, (), grouped)
        remedy = next_settings(
            _divergent(), exhausted, info, many_groups, (), grouped, run, np.inf, 0
        )
    assert remedy is None


# The remaining remedies do not look at the model or the run.


def _next(problems, settings=QUICK, min_ess=np.inf, wanted=0.0):
    return next_settings(problems, settings, None, None, (), {}, None, min_ess, wanted)


def test_high_rhat_doubles_the_warmup():
    remedy = _next([Problem("rhat", "R-hat 1.05", ("mu",), 1.05)])
    assert remedy.settings.num_warmup == 600
    assert not remedy.settings.dense_mass


def test_poor_bfmi_adds_a_dense_mass_matrix():
    remedy = _next([Problem("bfmi", "E-BFMI 0.2", (), 0.2)])
    assert remedy.settings.num_warmup == 600
    assert remedy.settings.dense_mass


def test_saturated_trees_get_deeper():
    remedy = _next([Problem("treedepth", "10% saturated", (), 0.1)])
    assert remedy.settings.max_tree_depth == 12


def test_low_ess_draws_as_many_more_as_the_shortfall_says():
    # 1.2 x 400 / 150 = 3.2 times the draws
    remedy = _next(
        [Problem("ess_tail", "tail ESS 150", ("mu",), 150.0)], min_ess=150.0, wanted=400.0
    )
    assert remedy.settings.num_samples == 960
    assert "ESS 150 < 400" in remedy.reasons[0]


def test_more_draws_are_capped_at_eight_times():
    remedy = _next([Problem("ess_bulk", "bulk ESS 3", ("mu",), 3.0)], min_ess=3.0, wanted=400.0)
    assert remedy.settings.num_samples == 2400


def test_low_ess_waits_while_the_chains_disagree():
    """More draws cannot fix chains that disagree: only the warm-up grows."""
    remedy = _next(
        [
            Problem("rhat", "R-hat 1.05", ("mu",), 1.05),
            Problem("ess_bulk", "ESS 50", ("mu",), 50.0),
        ],
        min_ess=50.0,
        wanted=400.0,
    )
    assert remedy.settings.num_samples == QUICK.num_samples
    assert remedy.settings.num_warmup == 600


def test_no_problem_no_remedy():
    assert _next([]) is None


def test_marginal_rhat_draws_more_instead_of_warming_up_longer():
    """R-hat 1.011 after 300 warm-up + 300 draws: the chains agree; the run is just short."""
    remedy = _next(
        [
            Problem("rhat", "R-hat 1.011", ("mu",), 1.011),
            Problem("ess_bulk", "ESS 250", ("mu",), 250.0),
        ],
        min_ess=250.0,
        wanted=400.0,
    )
    assert remedy.settings.num_warmup == QUICK.num_warmup
    assert remedy.settings.num_samples == 600  # max(2, 1.2 x 400 / 250 = 1.92) x 300
    assert "just above the limit" in remedy.reasons[0]


def test_marginal_rhat_after_a_short_warmup_still_warms_up_longer():
    short = NutsSettings(num_warmup=200, num_samples=1000)
    remedy = _next([Problem("rhat", "R-hat 1.011", ("mu",), 1.011)], settings=short)
    assert remedy.settings.num_warmup == 400 and remedy.settings.num_samples == 1000
