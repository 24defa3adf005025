"""``jaxpro.ode.fit``: Lotka-Volterra parameters recovered from noisy observations.

Oracle: the generating parameters (a, b, c, d) = (1.5, 1, 3, 1), 40 times x 2
states, noise 2% of the mean level (seeded), started 20% off: the fit must land
within 3 of its own standard errors of the truth and within 3% of it; fitting
the initial state too recovers it within 5%.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.ode as ode
from jaxpro.errors import InputError

TRUTH = {"a": 1.5, "b": 1.0, "c": 3.0, "d": 1.0}
Y0 = np.array([10.0, 5.0])


def lotka_volterra(t, y, p):
    a, b, c, d = p
    return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


@pytest.fixture(scope="module")
def data():
    times = np.linspace(0.0, 8.0, 40)
    clean = ode.solve(lotka_volterra, (0.0, 8.0), jnp.asarray(Y0), t_eval=times,
                      args=jnp.array(list(TRUTH.values())), rtol=1e-10, atol=1e-12).ys  # fmt: skip
    noise = 0.02 * clean.mean() * np.random.default_rng(3).normal(size=clean.shape)
    return times, clean + noise


def test_recovers_lotka_volterra_parameters(data):
    times, observed = data
    result = ode.fit(lotka_volterra, times, observed, {"a": 1.2, "b": 0.8, "c": 2.5, "d": 0.8},
                     Y0)  # fmt: skip
    assert result.converged and result.names == ("a", "b", "c", "d")
    truth = np.array(list(TRUTH.values()))
    assert np.all(np.abs(result.values - truth) < 3 * result.stderr)
    np.testing.assert_allclose(result.values, truth, rtol=0.03)
    assert np.all(result.stderr > 0) and np.all(result.stderr < 0.05 * truth)
    assert result.plan.settings["ode_method"] == "tsit5"
    assert result.plan.reasons[0].startswith("ODE fit: 80 observations")


def test_a_fit_caught_where_the_phase_wrapped_is_refitted_on_growing_windows(data, monkeypatch):
    """The full LM (fit's compact LM, tried first by default, gets out of it here
    by itself) stops from 20% off where the solution's phase wrapped (R^2 0.23):
    the growing windows get out of it."""
    from jaxpro.fit import _orchestrate

    monkeypatch.setattr(_orchestrate, "_compact_first", lambda *args: False)
    times, observed = data
    result = ode.fit(lotka_volterra, times, observed, {"a": 1.2, "b": 0.8, "c": 2.5, "d": 0.8},
                     Y0)  # fmt: skip
    assert any("refitted on growing windows" in r for r in result.plan.reasons)
    truth = np.array(list(TRUTH.values()))
    np.testing.assert_allclose(result.values, truth, rtol=0.03)


def test_fits_the_initial_state_too(data):
    times, observed = data
    result = ode.fit(lotka_volterra, times, observed, [1.2, 0.8, 2.5, 0.8], Y0 * 1.2,
                     fit_y0=True)  # fmt: skip
    assert result.names == ("p0", "p1", "p2", "p3", "y0_0", "y0_1")
    np.testing.assert_allclose(result.values[4:], Y0, rtol=0.05)
    np.testing.assert_allclose(result.values[:4], list(TRUTH.values()), rtol=0.03)


def test_a_state_never_observed_is_fitted_through_the_others(data):
    """Only the prey measured (the predator's column NaN): the four parameters are still
    determined, through the prey's response to the predator it never sees."""
    times, observed = data
    prey_only = observed.copy()
    prey_only[:, 1] = np.nan
    result = ode.fit(lotka_volterra, times, prey_only, {"a": 1.2, "b": 0.8, "c": 2.5, "d": 0.8},
                     Y0)  # fmt: skip
    truth = np.array(list(TRUTH.values()))
    assert result.converged
    assert np.all(np.abs(result.values - truth) < 3 * result.stderr), (result.values,
                                                                       result.stderr)  # fmt: skip
    np.testing.assert_allclose(result.values, truth, rtol=0.05)
    assert result.n == times.size  # the prey's 40 values only
    assert result.plan.reasons[0].startswith(
        "ODE fit: 40 observations (40 times x 2 states,"
        " 40 values not observed (NaN): state(s) 1 never"
    )


def test_missed_measurements_are_left_out(data):
    """Oracle: NaN entries are dropped, so the fit equals one on the full data whose
    missed entries carry no weight (sigma 1e100: weight 1e-100; an infinite sigma is
    refused)."""
    times, observed = data
    holes = observed.copy()
    missed = np.random.default_rng(5).random(holes.shape) < 0.15
    holes[missed] = np.nan
    start = {"a": 1.4, "b": 0.95, "c": 3.1, "d": 1.05}
    result = ode.fit(lotka_volterra, times, holes, start, Y0)
    assert result.n == int((~missed).sum())
    weightless = ode.fit(lotka_volterra, times, observed, start, Y0,
                         sigma=np.where(missed, 1e100, 1.0))  # fmt: skip
    np.testing.assert_allclose(result.values, weightless.values, rtol=1e-8)
    assert f"{int(missed.sum())} values not observed (NaN)" in result.plan.reasons[0]
    assert "never" not in result.plan.reasons[0]


def test_bad_fit_input():
    times = np.linspace(0, 1, 5)
    with pytest.raises(InputError, match=r"y_obs: must be \(5, 2\)"):
        ode.fit(lotka_volterra, times, np.ones((5, 3)), [1, 1, 1, 1], Y0)
    with pytest.raises(InputError, match="t_obs: must be at least two increasing times"):
        ode.fit(lotka_volterra, times[::-1], np.ones((5, 2)), [1, 1, 1, 1], Y0)
    with pytest.raises(InputError, match="p0: must be finite"):
        ode.fit(lotka_volterra, times, np.ones((5, 2)), [1, np.nan, 1, 1], Y0)
    with pytest.raises(InputError, match="y_obs: must be finite, or NaN where"):
        ode.fit(lotka_volterra, times, np.full((5, 2), np.inf), [1, 1, 1, 1], Y0)
    sparse = np.full((5, 2), np.nan)
    sparse[:4, 0] = 1.0
    with pytest.raises(InputError, match="y_obs: has 4 observed values for 4 parameters"):
        ode.fit(lotka_volterra, times, sparse, [1, 1, 1, 1], Y0)
