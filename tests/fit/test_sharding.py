"""Long data split over several devices equals the one-device fit.

The subprocess gets four virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``); the oracle is the same
fit in this process, on one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402
from jaxpro.fit import _orchestrate  # noqa: E402

N = 2_500_000  # 2.5e6 > 2**20 points per device on 2 devices; lowered below for 4


def two_peaks(x, a1, m1, s1, a2, m2, s2):
    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax, jax.numpy as jnp
    import jaxpro
    from jaxpro.fit import _orchestrate
    _orchestrate.SHARD_MIN_POINTS = 1 << 16  # split even this test-sized data
    def two_peaks(x, a1, m1, s1, a2, m2, s2):
        return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)
    n = int(sys.argv[1])
    x = np.linspace(0, 5, n)
    rng = np.random.default_rng(0)
    y = 2.0 * np.exp(-0.5 * ((x - 1.5) / 0.4) ** 2) + 1.2 * np.exp(-0.5 * ((x - 3.2) / 0.6) ** 2)
    y += rng.normal(0, 0.05, n)
    sigma = np.full(n, 0.05)
    result = jaxpro.fit(two_peaks, x, y, p0=(1.8, 1.4, 0.5, 1.0, 3.0, 0.5), sigma=sigma)
    print(json.dumps({"devices": jax.device_count(), "values": result.values.tolist(),
                      "stderr": result.stderr.tolist(), "layout": result.plan.settings["layout"],
                      "chi2": result.chi2}))
    """
)


@pytest.fixture(scope="module")
def sharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(N)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_equal_one_device(sharded):
    x = np.linspace(0, 5, N)
    rng = np.random.default_rng(0)
    y = 2.0 * np.exp(-0.5 * ((x - 1.5) / 0.4) ** 2) + 1.2 * np.exp(-0.5 * ((x - 3.2) / 0.6) ** 2)
    y += rng.normal(0, 0.05, N)  # NumPy, not jnp: identical float64 data in both processes
    single = jaxpro.fit(two_peaks, x, y, p0=(1.8, 1.4, 0.5, 1.0, 3.0, 0.5), sigma=np.full(N, 0.05))
    assert sharded["devices"] == 4
    assert "split over 4 devices" in sharded["layout"], sharded["layout"]
    assert "split" not in single.plan.settings["layout"]
    np.testing.assert_allclose(sharded["values"], single.values, rtol=1e-10, err_msg="popt")
    np.testing.assert_allclose(sharded["stderr"], single.stderr, rtol=1e-8, err_msg="stderr")
    np.testing.assert_allclose(sharded["chi2"], single.chi2, rtol=1e-10, err_msg="chi2")


def test_shard_count_rule():
    assert _orchestrate._shards(10) == 1, "one device here: never split"


def test_use_cpu_cores_gives_one_device_per_core_before_start():
    script = "import jaxpro, jax; n = jaxpro.use_cpu_cores(3); print(n, jax.device_count())"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3"]


def test_use_cpu_cores_after_start_raises():
    jnp.ones(1).block_until_ready()  # the backend is running in this process
    with pytest.raises(jaxpro.errors.BackendStartedError, match="before any JAX computation"):
        jaxpro.use_cpu_cores(2)
    with pytest.raises(jaxpro.errors.InputError, match=r"^count"):
        jaxpro.use_cpu_cores(0)
