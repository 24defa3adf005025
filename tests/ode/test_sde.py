"""``jaxpro.ode.solve_sde`` against the Ornstein-Uhlenbeck process's exact moments.

Oracle: dX = theta (mu - X) dt + sigma dW from x0 has mean mu + (x0 - mu) e^(-theta t)
and variance sigma^2 / (2 theta) (1 - e^(-2 theta t)). With 4,000 paths the sample
mean must lie within 4 Monte Carlo standard errors of it, and the sample variance
within 4 standard errors of the variance (sqrt(2 / (n - 1)) of it, Gaussian).
Geometric Brownian motion checks the Ito (not Stratonovich) mean x0 e^(mu t).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.ode as ode
from jaxpro.errors import InputError

THETA, MU, SIGMA, X0 = 1.5, 1.0, 0.6, 3.0
T_EVAL = np.array([0.0, 0.5, 1.0, 2.0])
PATHS = 4000


def ou_drift(t, y, args):
    return THETA * (MU - y)


def ou_diffusion(t, y, args):
    return SIGMA * jnp.ones_like(y)


@pytest.mark.parametrize("method", ["auto", "euler"])
def test_ornstein_uhlenbeck_moments(method):
    sol = ode.solve_sde(ou_drift, ou_diffusion, (0.0, 2.0), jnp.array([X0]), jax.random.PRNGKey(1),
                        T_EVAL, method=method, dt=0.01, paths=PATHS)  # fmt: skip
    assert sol.success and sol.ys.shape == (PATHS, 4, 1)
    assert sol.plan.method == ("shark" if method == "auto" else "euler")
    x = sol.ys[:, :, 0]
    mean = MU + (X0 - MU) * np.exp(-THETA * T_EVAL)
    variance = SIGMA**2 / (2 * THETA) * (1 - np.exp(-2 * THETA * T_EVAL))
    np.testing.assert_allclose(x[:, 0], X0)
    for i in range(1, len(T_EVAL)):
        assert abs(x[:, i].mean() - mean[i]) < 4 * np.sqrt(variance[i] / PATHS)
        assert abs(x[:, i].var(ddof=1) - variance[i]) < 4 * variance[i] * np.sqrt(2 / (PATHS - 1))
    assert "mean y(t_end)" in sol.summary()


def test_geometric_brownian_motion_has_the_ito_mean():
    mu, sigma = 0.3, 0.5
    sol = ode.solve_sde(lambda t, y, a: mu * y, lambda t, y, a: sigma * y, (0.0, 1.0),
                        jnp.array([1.0]), jax.random.PRNGKey(2), [0.0, 1.0], dt=0.005,
                        paths=PATHS)  # fmt: skip
    assert sol.plan.method == "milstein"
    final = sol.ys[:, -1, 0]
    # E[X(1)] = e^mu; Var = e^(2 mu) (e^(sigma^2) - 1)
    spread = np.sqrt(np.exp(2 * mu) * (np.exp(sigma**2) - 1) / PATHS)
    assert abs(final.mean() - np.exp(mu)) < 4 * spread


def test_one_path_is_reproducible_from_its_key_and_general_noise():
    def diffusion(t, y, args):
        return jnp.array([[0.3, 0.0], [0.1, 0.2]])

    one = ode.solve_sde(lambda t, y, a: -y, diffusion, (0.0, 1.0), jnp.array([1.0, 2.0]),
                        jax.random.PRNGKey(5), np.linspace(0, 1, 5), noise="general")  # fmt: skip
    again = ode.solve_sde(lambda t, y, a: -y, diffusion, (0.0, 1.0), jnp.array([1.0, 2.0]),
                          jax.random.PRNGKey(5), np.linspace(0, 1, 5), noise="general")  # fmt: skip
    assert one.ys.shape == (5, 2) and one.plan.method == "shark"  # additive: constant matrix
    np.testing.assert_array_equal(one.ys, again.ys)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"method": "shark", "diffusion": lambda t, y, a: 0.1 * y},
            "method: 'shark' needs additive",
        ),
        ({"noise": "scalar"}, "noise: must be one of"),
        ({"t_span": (1.0, 0.0)}, "t_span: must be two finite times with t1 > t0"),
        ({"t_eval": [0.5, 0.2]}, "t_eval: must be increasing times"),
        ({"dt": 0.0}, "dt: must be a positive step"),
        ({"paths": 0}, "paths: must be a positive integer or None"),
        ({"diffusion": lambda t, y, a: jnp.ones(3)}, "diffusion: must return the shape of y0"),
    ],
)
def test_bad_sde_input(kwargs, message):
    call = {"drift": ou_drift, "diffusion": ou_diffusion, "t_span": (0.0, 1.0),
            "y0": jnp.array([1.0]), "key": jax.random.PRNGKey(0), "t_eval": [0.0, 1.0]}  # fmt: skip
    call.update(kwargs)
    with pytest.raises(InputError, match=message):
        ode.solve_sde(call.pop("drift"), call.pop("diffusion"), call.pop("t_span"),
                      call.pop("y0"), call.pop("key"), call.pop("t_eval"), **call)  # fmt: skip
