"""jaxpro.bayes against reference posteriors: posteriordb (drawn by Stan) and analytic ones.

Criteria are the issue's: centred eight schools comes out with no divergences
after remediation and every mean within 0.1 reference sd; kidscore_interaction
within 0.1 sd on means and 10% on sds. The tall-data methods (HMCECS, SVI,
consensus Monte Carlo) are checked against a regression's analytic posterior:
means within 0.2 posterior sd, sds within 15%.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from posteriordb import (
    eight_schools_centered,
    kidscore_interaction_c,
    load,
    reference_table,
    site_value,
)

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402


def _compare(posterior, reference, mean_sd=0.1, sd_rel=None):
    failures = []
    for stan_name, row in reference_table(reference).items():
        if row.site not in posterior.draws:
            continue
        values = site_value(posterior.flat(row.site), row.index)
        mean_gap = abs(values.mean() - row.mean) / row.sd
        if mean_gap > mean_sd:
            failures.append(
                f"{stan_name}: mean off by {mean_gap:.3f} reference sd (limit {mean_sd})"
            )
        if sd_rel is not None:
            sd_gap = abs(values.std(ddof=1) / row.sd - 1)
            if sd_gap > sd_rel:
                failures.append(f"{stan_name}: sd off by {sd_gap:.1%} (limit {sd_rel:.0%})")
    return failures


def test_centred_eight_schools_is_repaired_and_matches_stan():
    reference = load("eight_schools_noncentered")
    posterior = jaxpro.bayes.sample(eight_schools_centered, **reference.data, seed=0)
    assert posterior.ok, posterior.warnings
    assert posterior.diagnostics.divergences == 0
    assert "theta" in posterior.attempts[-1].settings, "the funnel is fixed by non-centring theta"
    assert not _compare(posterior, reference, mean_sd=0.1)


def test_kidscore_interaction_matches_stan():
    reference = load("kidscore_interaction")
    posterior = jaxpro.bayes.sample(kidscore_interaction_c, **reference.data, seed=0)
    assert posterior.ok, posterior.warnings
    assert not _compare(posterior, reference, mean_sd=0.1, sd_rel=0.10)


def regression(x, y=None):
    """A subsample-aware linear regression (reads its data plate through numpyro.subsample)."""
    a = numpyro.sample("a", dist.Normal(0, 10))
    b = numpyro.sample("b", dist.Normal(0, 10))
    s = numpyro.sample("s", dist.HalfNormal(5))
    with numpyro.plate("data", x.shape[0]):
        xb = numpyro.subsample(x, event_dim=0)
        yb = None if y is None else numpyro.subsample(y, event_dim=0)
        numpyro.sample("y", dist.Normal(a + b * xb, s), obs=yb)


def _tall_data(n, seed):
    """Regression data and its analytic posterior (mean, sd) for a, b, s.

    The priors are flat at this much data, so the posterior of (a, b) is
    normal around least squares with covariance s^2 (X'X)^-1, and that of s
    is normal around sqrt(RSS / n) with sd s / sqrt(2n).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(scale=2.0, size=n)
    design = np.column_stack([np.ones(n), x])
    coef, rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    sigma = float(np.sqrt(rss[0] / n))
    se = sigma * np.sqrt(np.diag(np.linalg.inv(design.T @ design)))
    exact = {"a": (coef[0], se[0]), "b": (coef[1], se[1]), "s": (sigma, sigma / np.sqrt(2 * n))}
    return (jnp.asarray(x), jnp.asarray(y)), exact


def _against_exact(posterior, exact, mean_sd=0.2, sd_rel=0.15):
    failures = []
    for site, (mean, sd) in exact.items():
        values = posterior.flat(site)
        gap = abs(values.mean() - mean) / sd
        if gap > mean_sd:
            failures.append(f"{site}: mean off by {gap:.3f} posterior sd (limit {mean_sd})")
        ratio = values.std(ddof=1) / sd
        if abs(ratio - 1) > sd_rel:
            failures.append(f"{site}: sd {ratio:.3f} x the exact one (limit {sd_rel:.0%} off)")
    return failures


@pytest.mark.parametrize(
    ("method", "expected"), [("auto", "hmcecs"), ("svi", "svi"), ("consensus", "consensus")]
)
def test_tall_data_methods_match_the_exact_posterior(method, expected):
    """50,000 rows: auto picks HMCECS; SVI and consensus MC run when asked; all match (0.2 sd, 15%)."""
    data, exact = _tall_data(50_000, seed=0)
    posterior = jaxpro.bayes.sample(regression, *data, method=method, num_chains=2, seed=2)
    assert posterior.plan.method == expected
    assert posterior.ok, posterior.problems
    assert not _against_exact(posterior, exact)


# slow (9-14 s cold: an SVI run on 100,000 rows): the default suite keeps under 15
# minutes; SVI's answer stays there against the exact posterior (the tall-data test)
# and the decision in tests/advisor/test_plan.py
@pytest.mark.slow
def test_auto_picks_svi_above_100k_rows():
    data, exact = _tall_data(200_000, seed=1)
    posterior = jaxpro.bayes.sample(regression, *data, seed=3)
    assert posterior.plan.method == "svi"
    assert any("200,000 observations" in r for r in posterior.plan.reasons)
    assert posterior.ok, posterior.problems
    assert not _against_exact(posterior, exact)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["svi", "hmcecs"])
def test_tall_methods_agree_with_nuts_on_200k_rows(method):
    """The issue's criterion as stated: 200,000 rows, within 0.2 NUTS posterior sd of NUTS."""
    data, exact = _tall_data(200_000, seed=4)
    nuts = jaxpro.bayes.sample(regression, *data, method="nuts", num_chains=2, seed=1)
    assert nuts.ok, nuts.problems
    posterior = jaxpro.bayes.sample(regression, *data, method=method, num_chains=2, seed=2)
    assert posterior.ok, posterior.problems
    for site in exact:
        reference = nuts.flat(site)
        gap = abs(posterior.flat(site).mean() - reference.mean()) / reference.std()
        assert gap < 0.2, f"{method}: {site} mean off by {gap:.3f} NUTS posterior sd (limit 0.2)"
