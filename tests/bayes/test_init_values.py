"""``sample(..., init_values={site: value})``: NUTS chains start near given values.

Oracle: the strategy's own definition: each chain's unconstrained start lies
within ``INIT_RADIUS`` of the value's unconstrained image (log for a positive
site), the chains start apart, and sites not named start uniformly in (-2, 2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer.util import initialize_model

from jaxpro.bayes._nuts import INIT_RADIUS, NutsSettings, init_strategy


def model(y):
    rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(rate, scale), obs=y)


def test_chains_start_near_the_values_and_apart():
    with jax.enable_x64(True):
        starts = initialize_model(jax.random.split(jax.random.PRNGKey(0), 8), model,
                                  init_strategy=init_strategy({"rate": 2.0}),
                                  model_args=(jnp.array([1.0, 2.0]),)).param_info.z  # fmt: skip
    rate = np.asarray(starts["rate"])  # unconstrained: log(rate)
    assert np.all(np.abs(rate - np.log(2.0)) <= INIT_RADIUS)
    assert np.unique(rate).size == 8  # apart, as R-hat needs
    scale = np.asarray(starts["scale"])
    assert np.all(np.abs(scale) <= 2.0) and np.ptp(scale) > 2 * INIT_RADIUS


def test_settings_describe_the_start():
    assert "chains started near given values" in NutsSettings(init={"rate": 2.0}).describe()
    assert "init" not in NutsSettings().describe()
