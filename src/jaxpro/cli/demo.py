"""``jaxpro demo``: the five stories end to end with an HTML report, and the short demos.

``jaxpro demo`` runs the stories of :mod:`jaxpro.advisor._stories` (a
10-million-point curve fit against SciPy, a hierarchical Bayesian model,
multi-device parallelism, differentiable MD, an ODE fitted to data), each with
a progress bar, prints each one's summary and writes the HTML report
(:mod:`jaxpro.advisor._report`) into ``--out`` (default ``./jaxpro-demo``).
``--quick`` runs smaller versions of them (about half a minute on 2 cores).

The short self-checking demos on bundled data (``fit``, ``bayes``, ``formula``)
run by name: ``jaxpro demo fit``; with ``--out DIR`` each saves its
``result.json`` and figures into ``DIR/NAME/``.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jaxpro.advisor._stories import STORIES
from jaxpro.cli._app import _debug_requested, debug_option, info, one_line

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
    import jaxpro
    from jaxpro.advisor._stories import SLEEP_FORMULA, sleep_study_frame

    echo(
        "Regression formula: reaction ~ days + (1 + days | subject), simulated sleep-deprivation"
        " reaction times (ms) of 18 subjects over 10 days (truth: 250 + 10 ms/day; subject sds"
        " 25 and 6, correlation 0.3)."
    )
    echo(
        "jaxpro parses the formula, builds the model with correlated subject effects and scaled"
        " priors, and samples and checks it:"
    )
    return jaxpro.bayes.fit(SLEEP_FORMULA, sleep_study_frame(), seed=seed, progress=False)


#: The short demos, run by name (``jaxpro demo fit``).
DEMOS: dict[str, Demo] = {
    "fit": Demo("fit", "nonlinear least squares on bundled decay counts", _fit_demo),
    "bayes": Demo("bayes", "hierarchical model (eight schools) with automatic repair", _bayes_demo),
    "formula": Demo("formula", "regression formula with correlated group effects", _formula_demo),
}

DEFAULT_REPORT_DIRECTORY = "jaxpro-demo"


@click.command()
@click.argument(
    "names",
    nargs=-1,
    metavar="[NAME]...",
    type=click.Choice([*STORIES, *DEMOS]),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Directory of the stories' HTML report (default ./jaxpro-demo); the short demos"
    " save their result.json and plot into OUT/NAME/.",
)
@click.option("--quick", is_flag=True, help="Smaller stories: all five in about a minute.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON {name: result}.")
@click.option("--no-plot", is_flag=True, help="With --out, the short demos draw no plots.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed of the samplers and simulations.",
)
@debug_option
@click.pass_context
def demo(
    ctx: click.Context,
    names: tuple[str, ...],
    out: str | None,
    quick: bool,
    as_json: bool,
    no_plot: bool,
    seed: int,
) -> None:
    """Run the five stories and write their HTML report (or the named demos).

    \b
    Stories (all of them by default; exit code 1 when a check fails):
      curve         a 10-million-point curve fit timed against SciPy
      hierarchical  a hierarchical Bayesian model: credible intervals, diagnostics
      parallel      multi-device parallelism (jaxpro.core) and its speed-up
      md            differentiable MD recovering Lennard-Jones parameters
      ode           an ODE fitted to noisy data
    Short demos on bundled data (by name only):
      fit      nonlinear least squares on bundled decay counts
      bayes    hierarchical model (eight schools) with automatic repair
      formula  regression formula with correlated group effects
    """
    chosen = list(dict.fromkeys(names or STORIES))
    if any(name not in ("fit",) for name in chosen):
        _cpu_devices_for_chains(4)  # parallel chains, and the parallel story's devices
    echo = lambda text: info(text, json_output=as_json)  # noqa: E731
    results: dict[str, Any] = {}
    stories, started = [], time.perf_counter()
    for i, name in enumerate(chosen):
        if i and not as_json:
            click.echo()
        if name in STORIES:
            result = _run_story(STORIES[name], quick, seed, echo)
            stories.append(result)
        else:
            result = DEMOS[name].run(echo, seed)
        if as_json:
            results[name] = result.to_dict()
        else:
            click.echo(result.summary())
        if name in DEMOS and out is not None:
            directory = result.save(Path(out) / name, figures=not no_plot)
            saved = directory / ("result.json" if no_plot else f"{result.kind}.png")
            what = "result" if no_plot else "plot"
            echo(f"{what} saved to {saved}")
    if stories:
        from jaxpro.advisor._report import write_report

        index = write_report(
            stories,
            out or DEFAULT_REPORT_DIRECTORY,
            quick=quick,
            seconds=time.perf_counter() - started,
        )
        failed = [story.name for story in stories if not story.passed]
        verdict = f"failed: {', '.join(failed)}" if failed else "every check passed"
        echo(f"report: {index.resolve()} ({verdict}; {time.perf_counter() - started:.0f} s)")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    if any(not story.passed for story in stories):
        ctx.exit(1)


def _run_story(definition, quick: bool, seed: int, echo: Callable[[str], None]):
    """Run one story with its progress bar; an exception becomes a failed story, not a crash."""
    from jaxpro._progress import progress_bar
    from jaxpro._result import Check, Plan, Timings
    from jaxpro.advisor._stories import Story

    echo(f"{definition.title}{' (quick)' if quick else ''}:")
    started = time.perf_counter()
    with progress_bar(None, definition.phases, label=definition.name) as update:

        def step() -> None:
            if update is not None:
                update(1)

        try:
            return definition.run(quick, seed, step)
        except Exception as error:  # the other stories still run; the report says why
            if _debug_requested(sys.argv):
                raise
            seconds = time.perf_counter() - started
            message = f"{type(error).__name__}: {one_line(str(error))}"
            return Story(
                definition.name, definition.title, "The story stopped with an error.", (), (),
                (Check("ran", 0.0, 1.0, False, message),), Plan("none", (message,)),
                Timings(None, seconds, seconds),
            )  # fmt: skip


def _cpu_devices_for_chains(chains: int) -> None:
    """A CPU device per MCMC chain (at least one per core), so the chains run in parallel."""
    import contextlib
    import os

    import jaxpro
    from jaxpro.errors import BackendStartedError

    # JAX already running (e.g. under a test runner): its devices stay as they are
    with contextlib.suppress(BackendStartedError):
        jaxpro.use_cpu_cores(max(chains, len(os.sched_getaffinity(0))))
