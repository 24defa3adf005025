"""``jaxpro.ode.bayes_fit``: the posterior of ODE parameters by NUTS through Diffrax.

Oracles: for exponential decay with a known noise scale and a uniform prior the
posterior of the rate is one-dimensional, so its mean and standard deviation are
computed exactly by quadrature on a fine grid (the closed-form solution
x0 exp(-k t)); NUTS must land within 4 Monte Carlo standard errors of the mean
and 10% of the sd. Lotka-Volterra (slow): the true parameters inside the 90%
credible intervals, with log-normal noise, an inferred noise scale and an
inferred initial state.
"""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import jaxpro.ode as ode
from jaxpro.errors import InputError


def decay(t, y, p):
    return -p[0] * y


def decay_data():
    times = np.linspace(0.0, 4.0, 15)
    observed = 2.0 * np.exp(-0.8 * times) + 0.1 * np.random.default_rng(3).standard_normal(15)
    return times, observed


def assert_matches_quadrature(posterior, grid, weights):
    """k's draws: the mean within 4 MCSE and the sd within 10% of the gridded posterior."""
    weights = weights / weights.sum()
    mean = float(np.sum(weights * grid))
    sd = float(np.sqrt(np.sum(weights * (grid - mean) ** 2)))
    draws = posterior.flat("k")
    mcse = float(posterior.table.loc["k", "mcse_mean"])
    assert abs(draws.mean() - mean) < 4 * mcse, (draws.mean(), mean, mcse)
    assert draws.std() == pytest.approx(sd, rel=0.1)


def test_decay_rate_posterior_matches_quadrature():
    times, observed = decay_data()
    posterior = ode.bayes_fit(decay, times, observed, {"k": (0.1, 3.0)}, [2.0], sigma=0.1,
                              num_warmup=300, num_samples=400, progress=False)  # fmt: skip
    assert posterior.ok, posterior.problems
    assert posterior.plan.method == "nuts on tsit5"
    assert any("ODE posterior: 15 observations" in r for r in posterior.plan.reasons)
    assert any("chains start near the least-squares fit" in r for r in posterior.plan.reasons)
    grid = np.linspace(0.1, 3.0, 20001)
    curves = 2.0 * np.exp(-np.outer(grid, times))
    log_like = -0.5 * np.sum((observed - curves) ** 2, axis=1) / 0.1**2
    assert_matches_quadrature(posterior, grid, np.exp(log_like - log_like.max()))


def conversion(t, y, p):  # x -> y at rate k: y(t) = 2 (1 - exp(-k t)) from (2, 0)
    return jnp.stack([-p[0] * y[0], p[0] * y[0]])


def test_a_state_never_observed_gets_no_likelihood_and_no_scale():
    """Only y of x -> y is measured (x's column NaN, one y value missed too).

    Oracle: quadrature of the one-dimensional posterior of k from y's closed form at
    the observed entries alone (uniform prior, known sigma), as for the decay above.
    """
    times = np.linspace(0.25, 4.0, 15)
    rng = np.random.default_rng(11)
    y = 2.0 * (1.0 - np.exp(-0.8 * times)) + 0.1 * rng.standard_normal(times.size)
    y[6] = np.nan
    observed = np.column_stack([np.full(times.size, np.nan), y])
    posterior = ode.bayes_fit(conversion, times, observed, {"k": (0.1, 3.0)}, [2.0, 0.0],
                              t0=0.0, num_warmup=300, num_samples=400,
                              progress=False)  # fmt: skip
    assert posterior.ok, posterior.problems
    assert "sigma_0" not in posterior.draws  # x was never measured: no scale to infer
    reason = next(r for r in posterior.plan.reasons if r.startswith("ODE posterior"))
    assert reason.startswith("ODE posterior: 14 observations (15 times x 2 states, 16 values"
                             " not observed (NaN): state(s) 0 never)")  # fmt: skip
    # sigma_1 is inferred: integrate k's posterior over it on a grid of both
    seen = ~np.isnan(y)
    k_grid = np.linspace(0.1, 3.0, 1501)
    s_grid = np.linspace(0.02, 0.5, 400)
    curves = 2.0 * (1.0 - np.exp(-np.outer(k_grid, times[seen])))
    squares = np.sum((y[seen] - curves) ** 2, axis=1)
    scale = float(np.nanstd(y))  # the half-normal prior's scale: the data's spread
    log_post = (-0.5 * squares[:, None] / s_grid**2 - seen.sum() * np.log(s_grid)
                - 0.5 * (s_grid / scale) ** 2)  # fmt: skip
    assert_matches_quadrature(posterior, k_grid, np.exp(log_post - log_post.max()).sum(axis=1))


@pytest.mark.slow
def test_lotka_volterra_truth_inside_the_credible_intervals():
    def lv(t, y, p):
        return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])

    truth = (0.55, 0.028, 0.8, 0.024)
    times = np.linspace(0.0, 20.0, 21)
    clean = ode.solve(lv, (0.0, 20.0), jnp.array([33.0, 6.0]), t_eval=times,
                      args=jnp.asarray(truth), rtol=1e-10, atol=1e-10).ys  # fmt: skip
    observed = clean * np.exp(0.1 * np.random.default_rng(5).standard_normal(clean.shape))
    priors = {"a": dist.LogNormal(np.log(0.5), 0.5), "b": dist.LogNormal(np.log(0.03), 0.5),
              "c": dist.LogNormal(np.log(1.0), 0.5), "d": dist.LogNormal(np.log(0.03), 0.5),
              "y0_0": dist.LogNormal(np.log(30.0), 0.5), "y0_1": dist.LogNormal(np.log(5.0), 0.5)}  # fmt: skip
    posterior = ode.bayes_fit(lv, times, observed, priors, [30.0, 5.0], fit_y0=True,
                              noise="lognormal", progress=False)  # fmt: skip
    assert posterior.ok, posterior.problems
    for name, value in zip("abcd", truth, strict=True):
        draws = posterior.flat(name)
        low, high = np.quantile(draws, [0.05, 0.95])
        assert low < value < high, (name, low, value, high)
    assert 0.05 < posterior.flat("sigma_0").mean() < 0.2


def test_bayes_fit_bad_input():
    times, observed = decay_data()

    def call(**changes):
        arguments = {"f": decay, "t_obs": times, "y_obs": observed, "priors": {"k": (0.1, 3.0)},
                     "y0": [2.0], "sigma": 0.1, **changes}  # fmt: skip
        return ode.bayes_fit(**arguments, progress=False)

    cases = (
        ({"priors": [1, 2]}, "priors: must be a dict"),
        ({"priors": {"k": (3.0, 1.0)}}, "priors: k: (low, high) must be finite with low < high"),
        ({"priors": {"k": "wide"}}, "priors: k: must be a numpyro distribution or (low, high)"),
        ({"priors": {"k": dist.Normal(jnp.zeros(2), 1.0)}}, "k: must be a scalar distribution"),
        ({"fit_y0": True}, "priors: needs priors for the initial states y0_0"),
        ({"priors": {"k": (0.1, 3.0), "y0_0": (1, 3)}}, "has priors on y0_* but fit_y0 is False"),
        ({"priors": {"y0_0": (1, 3)}, "fit_y0": True}, "at least one parameter besides y0_*"),
        ({"noise": "cauchy"}, "noise: must be one of"),
        ({"noise": "lognormal"}, "y_obs: must be positive with noise='lognormal'"),
        ({"sigma": -1.0}, "sigma: must be positive and finite"),
        ({"y_obs": observed[:5]}, "y_obs: must be (15, 1)"),
        ({"t_obs": times[::-1]}, "t_obs: must be at least two increasing times"),
        ({"y0": [np.nan]}, "y0: must be a finite 1-D state"),
        ({"y_obs": np.full(15, np.inf)}, "y_obs: must be finite, or NaN where a value"),
        ({"y_obs": np.full(15, np.nan)}, "y_obs: has no observed value (all NaN)"),
        ({"t0": 1.0}, "t0: must not come after the first observation"),
    )  # fmt: skip
    for changes, message in cases:
        with pytest.raises(InputError, match=None) as caught:
            call(**changes)
        assert message in str(caught.value), (changes, str(caught.value))
