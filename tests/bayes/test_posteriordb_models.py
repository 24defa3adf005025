"""The NumPyro ports of the posteriordb Stan programs are right (plain NumPyro, no jaxpro).

Oracle: posteriordb's reference posteriors (tests/data/posteriordb; Stan, 10 chains x 1000
draws). Before ``jaxpro.bayes`` is validated against them, this file checks the ports in
``posteriordb.py`` with NumPyro's own NUTS (seed 0, float64, 4 chains x 1000 draws after
1000 warm-up, ``chain_method="vectorized"``):

* eight schools (non-centered) and kidscore_interaction_c: every reference mean within
  0.1 reference sd and every reference sd within 10%, once R-hat < 1.01 and bulk ESS > 400
  show that the run itself is sound. Over seeds 0-8 the worst misses were 0.052 sd (means)
  and 6.3% (sds), so these tolerances have room for Monte Carlo error yet catch a wrong
  prior, a missing term or a wrong parameterisation.
* eight schools (centered): the same posterior, but the centered form has a funnel that
  NUTS mixes badly in (divergences are expected and not counted), so only mu and tau, with
  target_accept_prob=0.99 and 2000 warm-up draws, within 0.2 reference sd. With these
  settings seed 0 misses by 0.02 sd; one seed in nine (seed 2: a chain stuck in the funnel,
  308 divergences) misses mu by 0.28 sd, which is the sampler's problem the issue's
  remediation is about, not the port's. The exact check of the centered port is the log
  density identity with the non-centered one.
* radon (no reference posterior in posteriordb): a short single-chain run (200/200) gives
  finite log densities and draws of the right shapes.

The whole file runs in about 30 s on the 2-core development machine.
"""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
from numpyro.infer import MCMC, NUTS, Predictive  # noqa: E402
from numpyro.infer.util import initialize_model, log_density  # noqa: E402
from posteriordb import (  # noqa: E402
    NAMES,
    load,
    reference_name,
    reference_table,
    site_value,
)

MEAN_TOL = 0.1  # |mean - reference mean| / reference sd
SD_TOL = 0.10  # |sd / reference sd - 1|
CENTERED_MEAN_TOL = 0.2

# model -> (latent sample sites, deterministic sites, {plate: size}, observed site)
STRUCTURE = {
    "eight_schools_noncentered": (
        {"mu", "tau", "theta_trans"},
        {"theta"},
        {"school": 8},
        "y",
    ),
    "eight_schools_centered": ({"mu", "tau", "theta"}, set(), {"school": 8}, "y"),
    "kidscore_interaction_c": ({"beta", "sigma"}, set(), {"obs": 434}, "kid_score"),
    "radon_variable_intercept_slope_noncentered": (
        {"sigma_y", "sigma_alpha", "sigma_beta", "alpha_raw", "beta_raw", "mu_alpha", "mu_beta"},
        {"alpha", "beta"},
        {"county": 85, "obs": 919},
        "log_radon",
    ),
}


def _nuts(model, data, *, num_warmup, num_samples, num_chains, seed=0, **kwargs):
    mcmc = MCMC(
        NUTS(model, **kwargs),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), **data, extra_fields=("diverging", "potential_energy"))
    return mcmc


# --- the data and the name mapping ---


@pytest.mark.parametrize("name", NAMES)
def test_data_and_reference_files(name):
    post = load(name)
    data = post.data
    n_obs = data["J"] if name.startswith("eight_schools") else data["N"]
    assert post.data[post.observed].shape == (n_obs,)
    assert post.observed in post.stan_code
    if name.startswith("radon"):
        assert post.reference_summary is None and post.reference_draws is None
        assert data["J"] == 85 and data["N"] == 919
        # Stan's 1-based county index, every county present
        assert data["county_idx"].min() == 1 and data["county_idx"].max() == data["J"]
        assert len(np.unique(data["county_idx"])) == data["J"]
        return
    assert post.reference_summary.keys() == post.reference_draws.keys()
    for stan_name, stats in post.reference_summary.items():
        draws = post.reference_draws[stan_name]
        assert draws.shape == (10, 1000)
        np.testing.assert_allclose(draws.mean(), stats["mean"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(draws.std(ddof=1), stats["sd"], rtol=1e-12)


def test_reference_name():
    assert reference_name("theta[1]") == ("theta", 0)
    assert reference_name("beta[4]") == ("beta", 3)
    assert reference_name("tau") == ("tau", None)
    assert reference_name("x[2, 3]") == ("x", (1, 2))
    with pytest.raises(ValueError, match="start at 1"):
        reference_name("theta[0]")
    table = reference_table(load("kidscore_interaction"))
    assert list(table) == ["beta[1]", "beta[2]", "beta[3]", "beta[4]", "sigma"]
    assert table["beta[3]"][:2] == ("beta", 2) and table["sigma"].index is None
    draws = np.arange(24.0).reshape(2, 3, 4)
    assert site_value(draws, 1).tolist() == [[1.0, 5.0, 9.0], [13.0, 17.0, 21.0]]
    assert site_value(draws, None).shape == (2, 3, 4)


# --- the ports' structure and densities ---


@pytest.mark.parametrize("name", NAMES)
def test_model_structure(name):
    post = load(name)
    latent, deterministic, plates, observed = STRUCTURE[name]
    info = initialize_model(jax.random.PRNGKey(0), post.model, model_kwargs=post.data)
    trace = info.model_trace
    samples = {k for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"]}
    assert samples == latent
    assert {k for k, s in trace.items() if s["type"] == "deterministic"} == deterministic
    assert {k: s["args"][0] for k, s in trace.items() if s["type"] == "plate"} == plates
    site = trace[observed]
    assert site["is_observed"] and observed == post.observed
    np.testing.assert_array_equal(site["value"], post.data[observed])
    # the observation's plate holds one entry per observation
    assert [f.size for f in site["cond_indep_stack"]] == [site["value"].shape[0]]
    lp, _ = log_density(post.model, (), post.data, {k: trace[k]["value"] for k in latent})
    assert np.isfinite(lp)


def test_centered_and_noncentered_log_densities_agree():
    """p_centered(theta, mu, tau) = p_noncentered((theta - mu) / tau, mu, tau) / tau^J."""
    post = load("eight_schools_centered")
    nonc = load("eight_schools_noncentered")
    J = post.data["J"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        mu, tau = rng.normal(0.0, 5.0), rng.gamma(2.0, 2.0)
        theta = mu + tau * rng.normal(size=J)
        lp_c, _ = log_density(post.model, (), post.data, {"mu": mu, "tau": tau, "theta": theta})
        lp_nc, _ = log_density(
            nonc.model, (), nonc.data, {"mu": mu, "tau": tau, "theta_trans": (theta - mu) / tau}
        )
        np.testing.assert_allclose(lp_c, lp_nc - J * np.log(tau), rtol=1e-12)


@pytest.mark.parametrize(
    "name",
    [
        "eight_schools_noncentered",
        "eight_schools_centered",
        "radon_variable_intercept_slope_noncentered",
    ],
)
def test_prior_predictive(name):
    """The observed vector defaults to None: the model then draws it (proper priors only;
    kidscore's flat priors cannot be sampled forward)."""
    post = load(name)
    data = {k: v for k, v in post.data.items() if k != post.observed}
    draws = Predictive(post.model, num_samples=5)(jax.random.PRNGKey(1), **data)
    assert draws[post.observed].shape == (5, *post.data[post.observed].shape)
    assert np.isfinite(draws[post.observed]).all()


# --- NUTS against the reference posteriors ---


@pytest.mark.parametrize("name", ["eight_schools_noncentered", "kidscore_interaction_c"])
def test_nuts_matches_reference(name):
    post = load(name)
    mcmc = _nuts(post.model, post.data, num_warmup=1000, num_samples=1000, num_chains=4)
    by_chain = mcmc.get_samples(group_by_chain=True)
    for stan_name, ref in reference_table(post).items():
        x = np.asarray(site_value(by_chain[ref.site], ref.index))  # (chain, draw)
        rhat, ess = float(az.rhat(x)), float(az.ess(x))
        assert rhat < 1.01 and ess > 400, (
            f"{name} {stan_name}: the run is not sound (R-hat {rhat:.3f}, need < 1.01; "
            f"bulk ESS {ess:.0f}, need > 400)"
        )
        dmean = (x.mean() - ref.mean) / ref.sd
        sd_ratio = x.std(ddof=1) / ref.sd
        assert abs(dmean) < MEAN_TOL, (
            f"{name} {stan_name}: mean {x.mean():.4g} vs reference {ref.mean:.4g} is "
            f"{dmean:+.3f} reference sd off, tolerance {MEAN_TOL} sd"
        )
        assert abs(sd_ratio - 1.0) < SD_TOL, (
            f"{name} {stan_name}: sd {x.std(ddof=1):.4g} vs reference {ref.sd:.4g} "
            f"(ratio {sd_ratio:.3f}), tolerance {SD_TOL:.0%}"
        )


# slow (6 s cold): the default suite keeps under 15 minutes; the centred eight schools
# run there against Stan's reference in test_validation.py and in the bayes demo
@pytest.mark.slow
def test_nuts_centered_eight_schools_mu_tau():
    """The centered form mixes badly (funnel): only mu and tau, to 0.2 reference sd."""
    post = load("eight_schools_centered")
    mcmc = _nuts(
        post.model,
        post.data,
        num_warmup=2000,
        num_samples=1000,
        num_chains=4,
        target_accept_prob=0.99,
    )
    samples = mcmc.get_samples()
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    table = reference_table(post)
    for stan_name in ("mu", "tau"):
        ref = table[stan_name]
        x = np.asarray(samples[ref.site])
        dmean = (x.mean() - ref.mean) / ref.sd
        assert abs(dmean) < CENTERED_MEAN_TOL, (
            f"centered eight schools {stan_name}: mean {x.mean():.4g} vs reference "
            f"{ref.mean:.4g} is {dmean:+.3f} reference sd off, tolerance {CENTERED_MEAN_TOL} sd "
            f"(the centered form mixes badly; {divergences} divergences)"
        )


def test_nuts_radon_runs():
    post = load("radon_variable_intercept_slope_noncentered")
    J = post.data["J"]
    mcmc = _nuts(post.model, post.data, num_warmup=200, num_samples=200, num_chains=1)
    samples = mcmc.get_samples()
    for site in ("alpha_raw", "beta_raw", "alpha", "beta"):
        assert samples[site].shape == (200, J)
    for site in ("sigma_y", "sigma_alpha", "sigma_beta", "mu_alpha", "mu_beta"):
        assert samples[site].shape == (200,)
    assert (samples["sigma_y"] > 0).all()
    potential = np.asarray(mcmc.get_extra_fields()["potential_energy"])
    assert np.isfinite(potential).all(), "non-finite log density along the chain"
    last = {k: v[-1] for k, v in samples.items() if k not in ("alpha", "beta")}
    lp, _ = log_density(post.model, (), post.data, last)
    assert np.isfinite(lp)
