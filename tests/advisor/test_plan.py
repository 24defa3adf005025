"""jaxpro.plan: the advice, and that it is what a real run does (the same code decides)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import jaxpro
import jaxpro.bayes
import jaxpro.cfd as cfd
import jaxpro.md
import jaxpro.ode
from jaxpro.cli import cli
from jaxpro.errors import InputError


def test_a_ten_million_point_bounded_fit_is_trf_in_chunks():
    advice = jaxpro.plan("fit", n=10_000_000, params=3, bounds=True, calibrate=False)
    assert advice.method == "trf"
    assert advice.plan.settings["layout"] == "chunked"
    assert "bounds" in advice.call
    # x, y and weights in float64 are 229 MiB; the advice cannot be below them
    assert advice.memory_bytes >= 3 * 8 * 10_000_000
    assert advice.seconds is None and "calibrate=False" in advice.seconds_note
    assert any("LM cannot honour bounds" in r for r in advice.plan.reasons)
    payload = json.loads(advice.to_json())
    assert payload["kind"] == "advice" and payload["method"] == "trf"


@pytest.mark.parametrize(
    ("facts", "fit_kwargs"),
    [
        ({}, {}),
        ({"bounds": True}, {"bounds": ([0, 0, 0], [np.inf] * 3)}),
        ({"loss": "huber"}, {"loss": "huber"}),
    ],
)
def test_fit_advice_chooses_what_the_fit_chooses(facts, fit_kwargs):
    rng = np.random.default_rng(3)
    x = np.linspace(0, 4, 2000)
    y = 2.0 * np.exp(-0.7 * x) + 0.3 + 0.01 * rng.standard_normal(x.size)
    advice = jaxpro.plan("fit", n=x.size, params=3, calibrate=False, **facts)
    run = jaxpro.fit("a*exp(-b*x)+c", x, y, [1.0, 1.0, 1.0], progress=False, **fit_kwargs)
    assert run.plan.method == advice.method
    # the same sentence (the same code decides), up to the parameters' names
    unnamed = [re.sub(r"\(.*?\)", "", r.plan.reasons[0]) for r in (run, advice)]
    assert unnamed[0] == unnamed[1]
    assert advice.plan.settings["layout"] == "direct"
    # left to jaxpro, unbounded least squares goes through the compact LM first
    how = "Householder QR" if facts else "Gram matrix of [J | r]"
    assert any(how in r for r in run.plan.reasons)
    assert any(how in r for r in advice.plan.reasons)


def test_fit_advice_times_a_calibration_fit():
    advice = jaxpro.plan("fit", n=5000, params=4)
    assert advice.seconds > 0
    assert "calibrated on 5000 synthetic points, 4 parameters" in advice.seconds_note


def test_cfd_advice_is_the_simulation_s_own_first_record():
    advice = jaxpro.plan("cfd", flow="taylor_green", grid=32, viscosity=0.05, t_end=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cfd.simulate("taylor_green", grid=32, viscosity=0.05, t_end=1.0)
    assert advice.plan.method == run.method == "spectral"
    assert advice.extra["dt"] == run.dt
    assert advice.extra["steps"] == run.steps
    assert advice.seconds > 0 and advice.memory_bytes > 0
    assert any("Taylor-Green" in v for v in advice.validation)
    # the estimate is the same program's time: within a factor of 3 of the run itself
    assert advice.seconds / 3 < run.timings.run + run.timings.compile + 1.0


def test_cfd_advice_for_a_run_to_steady_state_gives_a_rate():
    advice = jaxpro.plan("cfd", flow="lid_driven_cavity", grid=32, reynolds=100)
    assert advice.seconds is None and "until steady" in advice.seconds_note
    assert advice.plan.method == "projection"
    assert any("cell Reynolds" in v for v in advice.validation)


def test_md_advice_is_the_simulation_s_own_decisions():
    advice = jaxpro.plan("md", n=108, steps=400, ensemble="nvt")
    with warnings.catch_warnings():  # 400 steps: too short for the temperature check
        warnings.simplefilter("ignore")
        run = jaxpro.md.simulate(jaxpro.md.lennard_jones_fluid(108, 0.8442, 0.72), "nvt", 400,
                                 progress=False)  # fmt: skip
    assert advice.method == run.plan.method
    for key in ("dt", "record_every", "chunk_steps", "neighbor_list"):
        assert advice.plan.settings[key] == run.plan.settings[key], key
    assert advice.seconds > 0 and "steps/s" in advice.seconds_note
    assert any("temperature" in v for v in advice.validation)


# slow (about 20 s: a real NUTS fit): the default suite keeps under 15 minutes; the
# decisions themselves are tested just below
@pytest.mark.slow
def test_bayes_advice_is_the_fit_s_own_decision():
    from jaxpro.advisor._bayes import _frame

    facts = dict(n=300, family="poisson", num_chains=2, num_warmup=500, num_samples=500)
    advice = jaxpro.plan("bayes", **facts)
    frame = _frame(300, 1, "poisson", None, np.random.default_rng(0))
    real = jaxpro.bayes.fit("y ~ x1", frame, "poisson", num_chains=2, num_warmup=500,
                            num_samples=500, progress=False)  # fmt: skip
    assert advice.method == real.plan.method == "nuts"
    # the advice's reasons are the run's first reasons, word for word
    assert real.plan.reasons[: len(advice.plan.reasons)] == advice.plan.reasons
    # the time, compilation included, within a factor 3 of the real run's (measured
    # 2026-12-07, compilation cache off, one process: advice 1.68 s, run 1.74 s; the
    # advice without the sampler's compile would have said 0.33 s)
    assert real.seconds / 3 < advice.seconds < 3 * real.seconds, (advice.seconds, real.seconds)


def test_bayes_advice_for_few_rows_is_nuts_with_its_compile_measured():
    small = jaxpro.plan("bayes", n=300, family="poisson")
    assert small.method == "nuts" and small.seconds > 0 and "gradient" in small.seconds_note
    # NumPyro compiles inside the run: the advice measures it and adds it
    assert (
        small.plan.settings["compile_s"] > 0 and "s to compile (a run of one" in small.seconds_note
    )
    assert any("NUTS: 300 observations" in r for r in small.plan.reasons)
    with pytest.raises(InputError, match="family"):
        jaxpro.plan("bayes", n=100, family="binomial")


# slow (about 9 s: 120,000 rows, SVI's window compiled): the default suite keeps under
# 15 minutes; the SVI decision and its compile measurement stay there on 1,500 rows
# (tests/bayes/test_fit.py::test_tall_grouped_data_avoid_consensus)
@pytest.mark.slow
def test_bayes_advice_for_tall_data_is_svi_with_its_compile_measured():
    tall = jaxpro.plan("bayes", n=120_000, hierarchical=True, family="poisson")
    assert tall.method == "svi" and tall.plan.settings["compile_s"] > 0
    assert "window compiled, measured" in tall.seconds_note
    assert any("variational inference" in r for r in tall.plan.reasons)


def _robertson(t, y, args):
    import jax.numpy as jnp

    return jnp.array([-0.04 * y[0] + 1e4 * y[1] * y[2],
                      0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2])  # fmt: skip


def test_ode_advice_chooses_what_solve_chooses_for_the_same_spectrum():
    from jaxpro.ode._stiffness import spectral_radius

    # Robertson: stiff over 1e5 (a spectral radius near 1e4 later, 0.04 at t0 where the
    # explicit attempt starts: solve switches when it runs out)
    y0 = np.array([1.0, 0.0, 0.0])
    stiff = jaxpro.ode.solve(_robertson, (0.0, 1e5), y0, rtol=1e-6, atol=1e-10)
    advice = jaxpro.plan("ode", stiff=True, span=1e5, rtol=1e-6, atol=1e-10)
    assert advice.method == stiff.plan.method == "kvaerno5"
    # Lotka-Volterra: the radius at t0 says non-stiff, both take Tsit5
    radius = spectral_radius(_lotka_volterra, 0.0, np.array([10.0, 5.0]), None)
    plain = jaxpro.ode.solve(_lotka_volterra, (0.0, 15.0), np.array([10.0, 5.0]))
    advice = jaxpro.plan("ode", n=2, radius=radius, span=15.0)
    assert advice.method == plain.plan.method == "tsit5"
    assert advice.seconds > 0 and "stand-in" in advice.seconds_note


def _lotka_volterra(t, y, args):
    import jax.numpy as jnp

    return jnp.array([1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]])


def test_unknown_domain_and_bad_facts_are_named():
    with pytest.raises(InputError, match="domain") as caught:
        jaxpro.plan("weather")
    assert "weather" in str(caught.value)
    with pytest.raises(InputError, match="n: must be a positive whole number"):
        jaxpro.plan("fit", n=0, params=3)
    with pytest.raises(InputError, match="grid"):
        jaxpro.plan("cfd", grid=4)
    with pytest.raises(InputError, match="span: must be a positive number"):
        jaxpro.plan("ode", span=-1.0)


def test_command_line_prints_and_refuses_in_one_line():
    result = CliRunner().invoke(
        cli, ["plan", "fit", "--n", "1000000", "--params", "3", "--no-calibrate", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["method"] == "lm" and payload["plan"]["settings"]["layout"] == "chunked"
    text = CliRunner().invoke(cli, ["plan", "cfd", "--flow", "taylor_green", "--grid", "16",
                                    "--t-end", "0.5"])  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "call: jaxpro.cfd.simulate('taylor_green'" in text.output
    assert "expected time:" in text.output and "validation:" in text.output
    for args, message in (
        (["weather"], "No such command"),
        (["fit", "--n", "10", "--params", "3", "--bogus"], "No such option"),
        (["fit", "--n", "0", "--params", "3"], "n: must be a positive whole number"),
    ):
        done = subprocess.run([sys.executable, "-m", "jaxpro", "plan", *args],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2, done.stdout
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
