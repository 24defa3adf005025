"""A fit split across two processes (jax.distributed, CPU collectives over gloo) equals one process.

Each process reads only its own rows of a shared .npy file; the oracle is the
same fit in this (single) process on all rows.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402

N = 200_001  # odd: the process count does not divide the rows

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import jax.numpy as jnp, jaxpro
    folder = sys.argv[3]
    x = np.load(folder + "/x.npy", mmap_mode="r")
    rows = jaxpro.io.process_rows(x.shape[0])
    x = np.array(x[rows]); y = np.array(np.load(folder + "/y.npy", mmap_mode="r")[rows])
    sigma = np.array(np.load(folder + "/s.npy", mmap_mode="r")[rows])
    def two_peaks(x, a1, m1, s1, a2, m2, s2):
        return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)
    r = jaxpro.fit(two_peaks, x, y, p0=(1.8, 1.4, 0.5, 1.0, 3.0, 0.5), sigma=sigma)
    print("RESULT " + json.dumps({"values": r.values.tolist(), "stderr": r.stderr.tolist(),
        "chi2": r.chi2, "n": r.n, "rows": [rows.start, rows.stop], "reasons": list(r.plan.reasons),
        "r_squared": r.r_squared}))
    """
)


def two_peaks(x, a1, m1, s1, a2, m2, s2):
    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    x = np.linspace(0, 5, N)
    y = 2.0 * np.exp(-0.5 * ((x - 1.5) / 0.4) ** 2) + 1.2 * np.exp(-0.5 * ((x - 3.2) / 0.6) ** 2)
    sigma = rng.uniform(0.04, 0.06, N)
    y += rng.normal(0, 1, N) * sigma
    for name, a in (("x", x), ("y", y), ("s", sigma)):
        np.save(folder / f"{name}.npy", a)
    address = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, address, str(pid), str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for pid in (0, 1)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        line = next(line for line in out.splitlines() if line.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT ") :]))
    single = jaxpro.fit(two_peaks, x, y, p0=(1.8, 1.4, 0.5, 1.0, 3.0, 0.5), sigma=sigma)
    return results, single


def test_two_processes_equal_one(shared):
    results, single = shared
    for result in results:
        np.testing.assert_allclose(result["values"], single.values, rtol=1e-10, err_msg="values")
        # the covariance comes from the last data pass, whose rounding differs
        # with the split; ~1e-8 relative
        np.testing.assert_allclose(result["stderr"], single.stderr, rtol=1e-7, err_msg="stderr")
        np.testing.assert_allclose(result["chi2"], single.chi2, rtol=1e-10, err_msg="chi2")
        np.testing.assert_allclose(result["r_squared"], single.r_squared, rtol=1e-10)
        assert result["n"] == N


def test_each_process_read_its_own_rows(shared):
    results, _ = shared
    assert results[0]["rows"] == [0, N // 2]
    assert results[1]["rows"] == [N // 2, N], "uneven split: the count does not divide the rows"
    assert any("2 processes" in reason for reason in results[0]["reasons"]), results[0]["reasons"]
