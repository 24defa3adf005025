"""Parallel NUTS chains in bounded segments (``jaxpro.bayes._chains``).

Oracles:

* NumPyro's own ``MCMC(chain_method="parallel")`` from the same key and starting
  point: the same draws, deterministic sites and sampler fields (to 1e-6 absolute:
  the programs differ, so rounding differs, and warm-up carries it; a posterior sd
  here is about 0.3), whatever the segment length;
* memory: on jaxlib 0.12.1 one multi-device program keeps about one
  loop-carried vector per device per loop iteration until it ends. A
  50,000-parameter model run for 80 iterations of up to 63 leapfrog steps on 2
  chains (400 kB vectors) must stay within 600 MB of its starting peak RSS.
  Measured here: 0.41 GB in segments of 4 (mostly compiling) on 0.12.0.1 and
  0.12.1; as one program 0.48 GB on 0.12.0.1 and 2.56 GB on 0.12.1.

* which runs are segmented: the worst case of one program (2 parameter vectors
  per leapfrog step, ``2**depth - 1`` steps per iteration) against 1 GiB, by hand.

The first two need two CPU devices, so they run in fresh processes (together,
about 15 s).
"""

import textwrap

import numpy as np
import pytest
from fresh import run_fresh

_HEADER = """
import json, resource, sys
import jax
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_enable_x64", True)
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model
from jaxpro.bayes._chains import run_segmented
"""

_SAME_DRAWS = _HEADER + textwrap.dedent(
    """
    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0, 5))
        sigma = numpyro.sample("sigma", dist.HalfNormal(5))
        numpyro.deterministic("cv", sigma / mu)
        numpyro.sample("obs", dist.Normal(mu, sigma), obs=y)

    y = np.random.default_rng(0).normal(3.0, 2.0, 50)
    z0 = initialize_model(jax.random.split(jax.random.PRNGKey(3), 2), model, model_args=(y,)).param_info.z
    key = jax.random.PRNGKey(7)
    mcmc = MCMC(NUTS(model), num_warmup=30, num_samples=40, num_chains=2,
                chain_method="parallel", progress_bar=False)
    mcmc.run(key, y, init_params=z0, extra_fields=("diverging", "num_steps", "energy"))
    ref = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    ref.update({k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()})
    out = {}
    for segment in (1, 7, 100):
        calls = []
        draws, extra = run_segmented(NUTS(model), (y,), {}, z0, key, num_warmup=30, num_samples=40,
                                     num_chains=2, segment=segment,
                                     progress=lambda done, total: calls.append((done, total)))
        mine = {**draws, **extra}
        out[segment] = {
            "keys": sorted(mine) == sorted(ref),
            "shapes": {k: list(v.shape) for k, v in mine.items()},
            "worst": max(float(np.max(np.abs(mine[k].astype(float) - ref[k].astype(float)))) for k in ref),
            "progress": calls,
        }
    print(json.dumps(out))
    """
)

_MEMORY = _HEADER + textwrap.dedent(
    """
    def model():
        numpyro.sample("x", dist.Normal(0, 1).expand([50_000]))

    z0 = initialize_model(jax.random.split(jax.random.PRNGKey(0), 2), model).param_info.z
    kernel = NUTS(model, max_tree_depth=6)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = rss()
    draws, extra = run_segmented(kernel, (), {}, z0, jax.random.PRNGKey(1), num_warmup=40,
                                 num_samples=40, num_chains=2, segment=int(sys.argv[1]))
    print(json.dumps({"grew": rss() - before, "steps": int(extra["num_steps"].sum()),
                      "shape": list(draws["x"].shape), "jax": jax.__version__}))
    """
)


@pytest.fixture(scope="module")
def runs():
    return run_fresh({"same": (_SAME_DRAWS, []), "memory": (_MEMORY, ["4"])})


@pytest.mark.parametrize("segment", ["1", "7", "100"])
def test_segments_give_numpyros_parallel_draws(runs, segment):
    run = runs["same"][segment]
    assert run["keys"]
    assert run["shapes"]["mu"] == [2, 40] and run["shapes"]["num_steps"] == [2, 40]
    assert run["worst"] < 1e-6, run


def test_progress_is_reported_after_each_segment(runs):
    assert runs["same"]["7"]["progress"] == [[min(7 * i, 70), 70] for i in range(1, 11)]
    assert runs["same"]["100"]["progress"] == [[70, 70]]


def test_memory_is_bounded_by_a_segment(runs):
    run = runs["memory"]
    assert run["shape"] == [2, 40, 50_000]
    assert run["steps"] > 1000, run  # the run is long enough to show growth
    assert run["grew"] < 600e6, run


def test_segment_length_bounds_what_a_run_may_hold():

    from jaxpro.bayes._chains import SEGMENT_BYTES, SEGMENT_MAX, segment_length

    # the million-row model: 20,006 float64 parameters, depth 10 -> one iteration per run
    assert segment_length({"a": np.zeros(20_000), "b": np.zeros(6)}, 10) == 1
    # eight schools: tiny vectors, the cap
    assert segment_length({"mu": np.zeros(()), "theta": np.zeros(8)}, 10) == SEGMENT_MAX
    # in between: 2 vectors per step, 2**depth - 1 steps per iteration, within the budget
    params = {"x": np.zeros(50_000)}
    n = segment_length(params, 6)
    assert n == SEGMENT_BYTES // (2 * 400_000 * 63)
    assert n * 2 * 400_000 * 63 <= SEGMENT_BYTES < (n + 1) * 2 * 400_000 * 63
    # float32 halves the bytes: twice the iterations
    assert segment_length({"x": np.zeros(50_000, np.float32)}, 6) in (2 * n, 2 * n + 1)


def test_only_runs_that_could_outgrow_a_gigabyte_are_segmented():

    from jaxpro.bayes._chains import ONE_PROGRAM_BYTES, needs_segments

    eight_schools = {"mu": np.zeros(()), "tau": np.zeros(()), "theta": np.zeros(8)}
    # 2 x 80 bytes x 1023 steps x 2000 iterations = 0.33 GB: NumPyro's one program
    assert not needs_segments(eight_schools, 10, 2000)
    million = {"beta": np.zeros((10_000, 2)), "rest": np.zeros(6)}
    assert needs_segments(million, 10, 600)
    # the boundary: exactly the budget stays in one program
    one = {"x": np.zeros(1)}  # 8 bytes: 16 per step, 16 * 1023 per iteration at depth 10
    per_iteration = 16 * 1023
    assert not needs_segments(one, 10, ONE_PROGRAM_BYTES // per_iteration)
    assert needs_segments(one, 10, ONE_PROGRAM_BYTES // per_iteration + 1)


def test_run_nuts_segments_a_large_model(monkeypatch):
    """In-process (one device): one chain counts as parallel; 50,000 parameters at depth 6
    could hold 2 x 400 kB x 63 x 50 = 2.5 GB in one program, so they run in segments of 5."""
    import jax
    import numpyro
    import numpyro.distributions as dist

    import jaxpro.bayes._chains as chains
    from jaxpro.bayes._nuts import NutsSettings, run_nuts

    calls = []
    real = chains.run_segmented

    def spy(*args, **kwargs):
        calls.append(kwargs["segment"])
        return real(*args, **kwargs)

    monkeypatch.setattr(chains, "run_segmented", spy)

    def model():
        numpyro.sample("x", dist.Normal(0, 1).expand([50_000]))

    settings = NutsSettings(num_warmup=20, num_samples=30, max_tree_depth=6)
    with jax.enable_x64(True):
        run = run_nuts(model, (), {}, settings, num_chains=1, seed=0)
    assert calls == [chains.segment_length({"x": np.zeros(50_000)}, 6)] == [5]
    assert run.chain_method == "parallel" and run.draws["x"].shape == (1, 30, 50_000)
    assert run.extra["num_steps"].shape == (1, 30)
    # draws from N(0, 1): the mean over 1.5 million values is within 0.01 of 0
    assert abs(float(run.draws["x"].mean())) < 0.01


def test_progress_bar_only_on_a_terminal(monkeypatch):
    import io

    from jaxpro.bayes._nuts import NutsSettings, _progress_bar

    settings = NutsSettings(num_warmup=30, num_samples=40)
    with _progress_bar(False, settings) as bar:
        assert bar is None
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    with _progress_bar(True, settings) as bar:
        assert bar is None

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    with _progress_bar(True, settings) as bar:
        bar(25, 70)
        bar(70, 70)
    assert "70/70" in screen.getvalue() and "NUTS" in screen.getvalue()
