"""``jaxpro demo``: short, self-checking runs of each domain on bundled data.

Each domain adds one entry to :data:`DEMOS`; ``jaxpro demo`` runs them all in
order and ``jaxpro demo NAME`` runs one. With ``--out DIR`` each demo saves its
``result.json`` and figures into ``DIR/NAME/``.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jaxpro.cli._app import debug_option, info

__all__ = ["DEMOS", "Demo", "demo"]


@dataclass(frozen=True)
class Demo:
    """One demo: ``run(echo, seed)`` prints what it does through ``echo`` and returns a Result.

    ``seed`` is the sampler's random seed (the Bayesian demos; the fit demo is deterministic).
    """

    name: str
    description: str
    run: Callable[[Callable[[str], None], int], Any]


def _fit_demo(echo: Callable[[str], None], seed: int = 0):
    from jaxpro.cli.fit import run_fit

    model = "A*exp(-t/tau) + B"
    echo(
        f"Curve fit: {model} to decay.csv, 200 synthetic counts of a decaying source over"
        " 300 s with Poisson errors sigma = sqrt(counts) (truth: A=1200, tau=47 s, B=80)."
    )
    echo(
        "jaxpro checks the data, picks the solver, compiles the model (cached on disk for the"
        " next run) and validates the result:"
    )
    resource = importlib.resources.files("jaxpro.data") / "decay.csv"
    with importlib.resources.as_file(resource) as path:
        return run_fit(
            path,
            model=model,
            x=("t",),
            y="counts",
            sigma="sigma",
            p0=("A=1000,tau=30,B=50",),
            absolute_sigma=True,
            data_argument="decay.csv",
        )


# Rubin (1981): estimated effects of SAT coaching in eight schools and their standard errors
EIGHT_SCHOOLS_EFFECT = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
EIGHT_SCHOOLS_SE = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)


def _eight_schools_centred(J, sigma, y=None):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def _bayes_demo(echo: Callable[[str], None], seed: int = 0):
    import numpy as np

    import jaxpro

    echo(
        "Bayesian inference: eight schools (Rubin 1981: SAT coaching effects in 8 schools with"
        " their standard errors), a hierarchical model written in the centred form whose"
        " funnel makes plain NUTS diverge."
    )
    echo(
        "jaxpro picks the sampler, checks R-hat, ESS and divergences, and repairs a run that"
        " fails those checks:"
    )
    return jaxpro.bayes.sample(
        _eight_schools_centred,
        J=len(EIGHT_SCHOOLS_EFFECT),
        sigma=np.array(EIGHT_SCHOOLS_SE),
        y=np.array(EIGHT_SCHOOLS_EFFECT),
        seed=seed,
        progress=False,
    )


def _formula_demo(echo: Callable[[str], None], seed: int = 0):
    import numpy as np
    import pandas as pd

    import jaxpro

    # simulated in the spirit of lme4's sleepstudy: 18 subjects, 10 days of sleep restriction
    rng = np.random.default_rng(20261125)
    subjects, days = 18, np.arange(10.0)
    sd, correlation = np.array([25.0, 6.0]), 0.3
    covariance = np.outer(sd, sd) * np.array([[1.0, correlation], [correlation, 1.0]])
    effects = rng.multivariate_normal([0.0, 0.0], covariance, size=subjects)
    subject = np.repeat(np.arange(subjects), days.size)
    day = np.tile(days, subjects)
    reaction = 250 + effects[subject, 0] + (10 + effects[subject, 1]) * day
    frame = pd.DataFrame(
        {
            "reaction": reaction + rng.normal(0, 25, day.size),
            "days": day,
            "subject": [f"s{i + 1:02d}" for i in subject],
        }
    )
    echo(
        "Regression formula: reaction ~ days + (1 + days | subject), simulated sleep-deprivation"
        " reaction times (ms) of 18 subjects over 10 days (truth: 250 + 10 ms/day; subject sds"
        " 25 and 6, correlation 0.3)."
    )
    echo(
        "jaxpro parses the formula, builds the model with correlated subject effects and scaled"
        " priors, and samples and checks it:"
    )
    return jaxpro.bayes.fit(
        "reaction ~ days + (1 + days | subject)", frame, seed=seed, progress=False
    )


#: Every demo, in the order ``jaxpro demo`` runs them.
DEMOS: dict[str, Demo] = {
    "fit": Demo("fit", "nonlinear least squares on bundled decay counts", _fit_demo),
    "bayes": Demo("bayes", "hierarchical model (eight schools) with automatic repair", _bayes_demo),
    "formula": Demo("formula", "regression formula with correlated group effects", _formula_demo),
}


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...", type=click.Choice(list(DEMOS)))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Save each demo's result.json and plot into OUT/NAME/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON {name: result}.")
@click.option("--no-plot", is_flag=True, help="With --out, do not draw the plots.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed of the samplers (bayes, formula).",
)
@debug_option
def demo(names: tuple[str, ...], out: str | None, as_json: bool, no_plot: bool, seed: int) -> None:
    """Run the demos on bundled data (all of them by default).

    \b
    Demos:
      fit      nonlinear least squares on bundled decay counts
      bayes    hierarchical model (eight schools) with automatic repair
      formula  regression formula with correlated group effects
    """
    chosen = [DEMOS[name] for name in dict.fromkeys(names or DEMOS)]
    if any(entry.name in ("bayes", "formula") for entry in chosen):
        _cpu_devices_for_chains(4)
    results: dict[str, Any] = {}
    for i, entry in enumerate(chosen):
        if i and not as_json:
            click.echo()
        result = entry.run(lambda text: info(text, json_output=as_json), seed)
        if as_json:
            results[entry.name] = result.to_dict()
        else:
            click.echo(result.summary())
        if out is not None:
            directory = result.save(Path(out) / entry.name, figures=not no_plot)
            saved = directory / ("result.json" if no_plot else f"{result.kind}.png")
            what = "result" if no_plot else "plot"
            info(f"{what} saved to {saved}", json_output=as_json)
    if as_json:
        click.echo(json.dumps(results, indent=2))


def _cpu_devices_for_chains(chains: int) -> None:
    """A CPU device per MCMC chain (at least one per core), so the chains run in parallel."""
    import contextlib
    import os

    import jaxpro
    from jaxpro.errors import BackendStartedError

    # JAX already running (e.g. under a test runner): its devices stay as they are
    with contextlib.suppress(BackendStartedError):
        jaxpro.use_cpu_cores(max(chains, len(os.sched_getaffinity(0))))
