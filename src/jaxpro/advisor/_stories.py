"""The demo's stories: five end-to-end runs, each with its plan, checks, tables and figures.

``jaxpro demo`` runs them in order and writes their HTML report
(:mod:`jaxpro.advisor._report`). Each story generates its own data from a
fixed seed, runs jaxpro as a user would, measures a peer where there is one
(SciPy in the same process), and checks the answer against an oracle: the
generating values, SciPy's parameters, ``jax.vmap`` on one device. A story
whose checks fail is reported as failed, never hidden.

``quick=True`` shrinks every story (a 1e6-point fit instead of 1e7, shorter
simulations) so that all five finish within a minute on a 2-core CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Check, Plan, Result, Timings, format_table

__all__ = ["STORIES", "Story", "StoryDef", "Table", "sleep_study_frame"]

Step = Callable[[], None]  # advances the story's progress bar by one phase


@dataclass(frozen=True)
class Table:
    """A captioned table of a story (cells: numbers or text)."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "headers": list(self.headers),
                "rows": [list(row) for row in self.rows]}  # fmt: skip


@dataclass(frozen=True, repr=False)
class Story(Result):
    """One story's outcome.

    Attributes:
        name, title: short name (``jaxpro demo NAME``) and heading.
        blurb: what the story shows, in a sentence or two.
        tables: its tables; figures: ``(caption, matplotlib Figure)`` pairs.
        checks: what was verified, against which oracle; ``passed`` is their conjunction.
        plan, timings: the method jaxpro chose and why; the story's wall time.
    """

    name: str
    title: str
    blurb: str
    tables: tuple[Table, ...]
    figures: tuple[tuple[str, Any], ...]
    checks: tuple[Check, ...]
    plan: Plan
    timings: Timings
    kind: str = "story"

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> str:
        lines = [f"{self.title}: {'passed' if self.passed else 'FAILED'}", self.blurb]
        for table in self.tables:
            lines += [table.caption, format_table(table.headers, table.rows)]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.message}" for c in self.checks]
        lines += [self.plan.summary(), self.timings.summary()]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "passed": self.passed,
                "blurb": self.blurb, "tables": [t.to_dict() for t in self.tables],
                "checks": [c.to_dict() for c in self.checks],
                "figures": [caption for caption, _ in self.figures]}  # fmt: skip

    def plot(self, **kwargs: Any):
        """The story's first figure."""
        return self.figures[0][1]


@dataclass(frozen=True)
class StoryDef:
    """A story to run: ``run(quick, seed, step) -> Story``, calling ``step()`` ``phases`` times."""

    name: str
    title: str
    phases: int
    run: Callable[[bool, int, Step], Story] = field(repr=False)


def _check(name: str, value: float, limit: float, passed: bool, message: str) -> Check:
    return Check(name, float(value), float(limit), bool(passed), message)


def _figure(width: float = 9.0, height: float = 3.4, columns: int = 2):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns)


def _seconds(value: float) -> str:
    return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"


# ----------------------------------------------------------------------------- 1. curve fit

DECAY_TRUTH = {"A": 1200.0, "tau": 47.0, "B": 80.0}


def _curve(quick: bool, seed: int, step: Step) -> Story:
    import jax.numpy as jnp
    from scipy.optimize import curve_fit as scipy_curve_fit

    import jaxpro

    started = time.perf_counter()
    n = 1_000_000 if quick else 10_000_000
    rng = np.random.default_rng(20261207)
    t = np.linspace(0.0, 300.0, n)
    y = DECAY_TRUTH["A"] * np.exp(-t / DECAY_TRUTH["tau"]) + DECAY_TRUTH["B"]
    y += rng.normal(0.0, 10.0, n)
    p0 = {"A": 1000.0, "tau": 30.0, "B": 50.0}
    step()

    def decay(t, A, tau, B):
        return A * jnp.exp(-t / tau) + B

    clock = time.perf_counter()
    first = jaxpro.fit(decay, t, y, p0=p0, progress=False)
    cold = time.perf_counter() - clock
    clock = time.perf_counter()
    result = jaxpro.fit(decay, t, y, p0=p0, progress=False)
    warm = time.perf_counter() - clock
    step()

    def decay_numpy(t, A, tau, B):
        return A * np.exp(-t / tau) + B

    clock = time.perf_counter()
    popt, _ = scipy_curve_fit(decay_numpy, t, y, p0=list(p0.values()), method="lm")
    scipy_seconds = time.perf_counter() - clock
    step()

    truth = np.array(list(DECAY_TRUTH.values()))
    difference = float(np.max(np.abs(result.values - popt) / np.abs(popt)))
    z = float(np.max(np.abs(result.values - truth) / result.stderr))
    speedup = scipy_seconds / warm
    checks = (
        _check("agrees_with_scipy", difference, 1e-6, difference <= 1e-6,
               f"largest relative difference from SciPy's parameters {difference:.1e}"
               " (limit 1e-6)"),
        _check("truth_recovered", z, 5.0, z < 5.0,
               f"every parameter within {z:.2f} standard errors of the generating value"
               " (limit 5)"),
        _check("faster_than_scipy", speedup, 1.0, speedup > 1.0,
               f"the second fit took {_seconds(warm)}, SciPy's {_seconds(scipy_seconds)}:"
               f" {speedup:.1f}x"),
        _check("no_warnings", len(result.warnings), 0, not result.warnings,
               "; ".join(result.warnings) or "the fit raised no warning"),
    )  # fmt: skip
    parameters = Table(
        f"Parameters of A exp(-t/tau) + B from {n:,} points (noise sd 10)",
        ("parameter", "truth", "jaxpro", "standard error", "SciPy lm"),
        tuple((name, DECAY_TRUTH[name], float(v), float(s), float(p))
              for name, v, s, p in zip(result.names, result.values, result.stderr, popt,
                                       strict=True)),
    )  # fmt: skip
    compile_seconds = first.timings.compile or 0.0
    times = Table(
        "Time for one fit, in this process",
        ("engine", "time", "SciPy time / this"),
        (
            (f"jaxpro, first call (compile {_seconds(compile_seconds)})", _seconds(cold),
             f"{scipy_seconds / cold:.1f}x"),
            ("jaxpro, second call", _seconds(warm), f"{speedup:.1f}x"),
            ("scipy.optimize.curve_fit (lm)", _seconds(scipy_seconds), "1.0x"),
        ),
    )  # fmt: skip
    figure, (data_axes, time_axes) = _figure()
    every = max(1, n // 2000)
    data_axes.plot(t[::every], y[::every], ".", ms=2, color="0.6", label=f"every {every}th point")
    data_axes.plot(t, np.asarray(decay_numpy(t, *result.values)), color="C0", lw=1.5,
                   label="jaxpro fit")  # fmt: skip
    data_axes.set_xlabel("t (s)")
    data_axes.set_ylabel("counts")
    data_axes.legend(fontsize="small")
    labels = ["jaxpro 1st", "jaxpro 2nd", "SciPy lm"]
    time_axes.barh(labels, [cold, warm, scipy_seconds], color=["C1", "C0", "C2"])
    time_axes.set_xscale("log")
    time_axes.set_xlabel("seconds (log scale)")
    time_axes.invert_yaxis()
    total = time.perf_counter() - started
    return Story(
        "curve",
        f"A {n:,}-point curve fit against SciPy",
        "A decay curve with noise, fitted by jaxpro (compiled, exact derivatives, the data in"
        " chunks) and by SciPy's curve_fit in the same process, on the same data.",
        (parameters, times),
        (("Data, fit and time per fit", figure),),
        checks,
        result.plan,
        Timings(compile_seconds, total - compile_seconds, total),
    )


# ----------------------------------------------------------------------------- 2. hierarchical


def sleep_study_frame():
    """Simulated reaction times in the spirit of lme4's sleepstudy: 18 subjects x 10 days.

    Truth: 250 ms + 10 ms/day; subject sds 25 and 6 ms, correlation 0.3; noise sd 25 ms.
    """
    import pandas as pd

    rng = np.random.default_rng(20261125)
    subjects, days = 18, np.arange(10.0)
    sd, correlation = np.array([25.0, 6.0]), 0.3
    covariance = np.outer(sd, sd) * np.array([[1.0, correlation], [correlation, 1.0]])
    effects = rng.multivariate_normal([0.0, 0.0], covariance, size=subjects)
    subject = np.repeat(np.arange(subjects), days.size)
    day = np.tile(days, subjects)
    reaction = 250 + effects[subject, 0] + (10 + effects[subject, 1]) * day
    return pd.DataFrame(
        {
            "reaction": reaction + rng.normal(0, 25, day.size),
            "days": day,
            "subject": [f"s{i + 1:02d}" for i in subject],
        }
    )


SLEEP_FORMULA = "reaction ~ days + (1 + days | subject)"
SLEEP_TRUTH = {"Intercept": 250.0, "days": 10.0}
_POPULATION = ("Intercept", "days", "sigma", "sd(Intercept|subject)", "sd(days|subject)",
               "cor(Intercept,days|subject)")  # fmt: skip


def _hierarchical(quick: bool, seed: int, step: Step) -> Story:
    import jaxpro

    started = time.perf_counter()
    frame = sleep_study_frame()
    step()
    posterior = jaxpro.bayes.fit(SLEEP_FORMULA, frame, seed=seed, progress=False)
    step()
    table = posterior.table
    diagnostics = posterior.diagnostics
    level = round(100 * posterior.level)
    inside = [
        name for name, value in SLEEP_TRUTH.items()
        if table.loc[name, "lower"] <= value <= table.loc[name, "upper"]
    ]  # fmt: skip
    checks = (
        _check("gate", len(posterior.problems), 0, posterior.ok,
               f"max R-hat {diagnostics.max_rhat:.4f} (< 1.01), min bulk ESS"
               f" {diagnostics.min_ess_bulk:.0f} (> 400), {diagnostics.divergences} divergences"
               + ("" if posterior.ok else ": " + "; ".join(posterior.warnings))),
        _check("truth_in_intervals", len(inside), len(SLEEP_TRUTH), len(inside) == len(SLEEP_TRUTH),
               f"{len(inside)} of {len(SLEEP_TRUTH)} generating population values inside their"
               f" {level}% credible intervals"),
    )  # fmt: skip
    rows = tuple(
        (name, *(float(table.loc[name, column]) for column in
                 ("mean", "sd", "lower", "upper", "r_hat", "ess_bulk")))
        for name in _POPULATION if name in table.index
    )  # fmt: skip
    population = Table(
        f"Population parameters: posterior mean, sd, {level}% credible interval"
        f" ({posterior.interval.upper()}), R-hat and bulk ESS",
        ("parameter", "mean", "sd", "lower", "upper", "R-hat", "ESS"),
        rows,
    )
    figure, (forest, lines) = _figure(9.0, 4.2)
    subjects = [name for name in table.index if name.startswith("subject[")]
    centre = table.loc[subjects, "mean"].to_numpy()
    low = centre - table.loc[subjects, "lower"].to_numpy()
    high = table.loc[subjects, "upper"].to_numpy() - centre
    positions = np.arange(len(subjects))
    forest.errorbar(centre, positions, xerr=[low, high], fmt="o", ms=3, color="C0")
    forest.axvline(0.0, color="0.5", lw=0.8)
    forest.set_yticks(positions, [name[8:-1] for name in subjects], fontsize="x-small")
    forest.set_xlabel(f"subject intercept offset (ms), {level}% interval")
    for _, group in frame.groupby("subject"):
        lines.plot(group["days"], group["reaction"], lw=0.6, color="0.7")
    days = np.linspace(0, 9, 10)
    lines.plot(days, table.loc["Intercept", "mean"] + table.loc["days", "mean"] * days,
               color="C0", lw=2, label="population mean")  # fmt: skip
    lines.set_xlabel("days of sleep restriction")
    lines.set_ylabel("reaction time (ms)")
    lines.legend(fontsize="small")
    step()
    total = time.perf_counter() - started
    return Story(
        "hierarchical",
        "A hierarchical model with credible intervals and diagnostics",
        f"Bayesian regression {SLEEP_FORMULA} with correlated subject effects, sampled by"
        " NUTS on parallel chains and held to the gate (R-hat, ESS, divergences) before"
        " anything is reported.",
        (population,),
        (("Subject effects and the population line", figure),
         ("Trace of the top-level parameters", posterior.plot("trace"))),
        checks,
        posterior.plan,
        Timings(None, total, total),
    )  # fmt: skip


# ----------------------------------------------------------------------------- 3. parallel


def _physical_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _best_of(function: Callable[[], Any], repeats: int = 3) -> float:
    import jax

    jax.block_until_ready(function())  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        clock = time.perf_counter()
        jax.block_until_ready(function())
        best = min(best, time.perf_counter() - clock)
    return best


def _parallel(quick: bool, seed: int, step: Step) -> Story:
    import jax
    import jax.numpy as jnp

    from jaxpro._precision import float64
    from jaxpro.core import pmap_batch

    started = time.perf_counter()
    # A batch small enough that XLA runs one device's share on one thread: at
    # 8,192 recurrences it already spreads a single device's matrix products
    # over both cores of a 2-core CPU (jax.vmap 63 ms against 2,048's 28 ms),
    # leaving devices little to add (1.2x measured), where a user with
    # independent work per core gets the 2x shown here.
    batch = 2048
    width, steps = 32, 400 if quick else 2000
    rng = np.random.default_rng(seed)
    with float64():
        weights = jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width))
        starts = jnp.asarray(rng.normal(size=(batch, width)))
        biases = jnp.asarray(0.1 * rng.normal(size=(batch, width)))

        def recurrence(x0, bias):  # steps of x <- tanh(W x + b): compute-bound
            return jax.lax.fori_loop(0, steps, lambda _, x: jnp.tanh(weights @ x + bias), x0)

        one_device = jax.jit(jax.vmap(recurrence))
        reference = np.asarray(one_device(starts, biases))
        base = _best_of(lambda: one_device(starts, biases))
        step()
        devices = jax.devices()
        counts = sorted({1, *(k for k in (2, 4, 8) if k <= len(devices)), len(devices)})
        seconds, result = {}, None
        for count in counts:
            seconds[count] = _best_of(lambda c=count: pmap_batch(recurrence, starts, biases,
                                                                  devices=c).values)  # fmt: skip
        result = pmap_batch(recurrence, starts, biases)
        values = np.asarray(result.values)
    step()
    cores = _physical_cores()
    best = len(devices)
    speedup = base / seconds[best]
    difference = float(np.max(np.abs(values - reference)))
    checks = [
        _check("equals_vmap", difference, 1e-12, difference <= 1e-12,
               f"largest difference from jax.vmap on one device {difference:.1e} (limit 1e-12)"),
    ]  # fmt: skip
    usable = min(cores, len(devices))
    if usable >= 2:
        checks.append(_check(
            "speedup", speedup, 1.0, speedup > 1.0,
            f"{speedup:.2f}x over one device with {len(devices)} devices on {cores} cores"
            f" ({speedup / usable:.0%} of the {usable}x the cores allow)"))  # fmt: skip
    table = Table(
        f"{batch:,} recurrences of {steps} steps each, split over CPU devices"
        f" ({cores} physical cores)",
        ("devices", "time", "speed-up over jax.vmap on one device"),
        (("jax.vmap, one device", _seconds(base), "1.0x"),
         *((f"pmap_batch, {k}", _seconds(seconds[k]), f"{base / seconds[k]:.2f}x")
           for k in counts)),
    )  # fmt: skip
    figure, (timing, scaling) = _figure()
    timing.bar([str(k) for k in counts], [seconds[k] for k in counts], color="C0")
    timing.axhline(base, color="C3", lw=1, label="jax.vmap, one device")
    timing.set_xlabel("devices")
    timing.set_ylabel("seconds")
    timing.legend(fontsize="small")
    scaling.plot(counts, [base / seconds[k] for k in counts], "o-", label="measured")
    scaling.plot(counts, [min(k, cores) for k in counts], "--", color="0.5",
                 label=f"ideal on {cores} cores")  # fmt: skip
    scaling.set_xlabel("devices")
    scaling.set_ylabel("speed-up")
    scaling.legend(fontsize="small")
    total = time.perf_counter() - started
    return Story(
        "parallel",
        "Multi-device parallelism with jaxpro.core",
        "jaxpro.core.pmap_batch splits a batch over every device (jax.shard_map on a mesh) and"
        " returns what jax.vmap returns; here on CPU devices, one per core or more.",
        (table,),
        (("Time and speed-up against the number of devices", figure),),
        tuple(checks),
        result.plan,
        Timings(None, total, total),
    )


# ----------------------------------------------------------------------------- 4. MD


def _md(quick: bool, seed: int, step: Step) -> Story:
    from jaxpro import md

    started = time.perf_counter()
    particles = 108
    truth = md.lennard_jones_fluid(particles, 0.8, 1.2, seed=seed)
    reference = md.simulate(truth, "nvt", steps=2000 if quick else 8000, dt=0.005,
                            record_every=20, progress=False)  # fmt: skip
    kept = slice(len(reference.times) // 4, None)
    targets = {
        "potential_energy": float(reference.potential_energy[kept].mean() / particles),
        "pressure": float(reference.pressure[kept].mean()),
    }
    step()
    initial = {"sigma": 0.95, "epsilon": 1.1}
    fitted = md.fit_potential(
        truth, targets, initial=initial, iterations=12 if quick else 30,
        learning_rate=0.03 if quick else 0.02, sample_steps=1000 if quick else 3000,
        relax_steps=200 if quick else 500, seed=seed,
    )  # fmt: skip
    step()
    limit = 0.03
    errors = {name: abs(fitted.values[name] - 1.0) for name in initial}
    checks = tuple(
        _check(f"{name}_recovered", error, limit, error <= limit,
               f"{name} = {fitted.values[name]:.4f} against the generating 1 ({error:.1%} off,"
               f" limit {limit:.0%})")
        for name, error in errors.items()
    )  # fmt: skip
    parameters = Table(
        "Lennard-Jones parameters (reduced units)",
        ("parameter", "truth", "start", "fitted", "error"),
        tuple((name, 1.0, initial[name], float(fitted.values[name]), f"{errors[name]:.1%}")
              for name in initial),
    )  # fmt: skip
    observables = Table(
        "Observables the fit matches (NVT averages)",
        ("observable", "target (truth's simulation)", "simulated at the fit"),
        tuple((name, targets[name], float(fitted.observables[name])) for name in targets),
    )
    total = time.perf_counter() - started
    return Story(
        "md",
        "Differentiable molecular dynamics recovers Lennard-Jones parameters",
        f"An NVT simulation of {particles} Lennard-Jones particles at known sigma and epsilon"
        " gives the targets (energy per particle, pressure); jaxpro.md.fit_potential starts 5%"
        " and 10% off and follows the gradient of the simulated averages back.",
        (parameters, observables),
        (("Loss and parameters per iteration", fitted.plot()),),
        checks,
        fitted.plan,
        Timings(None, total, total),
    )


# ----------------------------------------------------------------------------- 5. ODE

LV_TRUTH = {"a": 1.5, "b": 1.0, "c": 3.0, "d": 1.0}
LV_START = {"a": 1.2, "b": 0.8, "c": 2.5, "d": 0.8}
LV_Y0 = (10.0, 5.0)


def _lotka_volterra(t, y, p):
    import jax.numpy as jnp

    a, b, c, d = p
    return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def _ode(quick: bool, seed: int, step: Step) -> Story:
    import jax.numpy as jnp

    from jaxpro import ode

    started = time.perf_counter()
    times = np.linspace(0.0, 8.0, 40)
    y0 = np.array(LV_Y0)
    truth = np.array(list(LV_TRUTH.values()))
    clean = np.asarray(ode.solve(_lotka_volterra, (0.0, 8.0), jnp.asarray(y0), t_eval=times,
                                 args=jnp.asarray(truth), rtol=1e-10, atol=1e-12).ys)  # fmt: skip
    observed = clean + 0.02 * clean.mean() * np.random.default_rng(seed + 3).normal(
        size=clean.shape
    )
    step()
    result = ode.fit(_lotka_volterra, times, observed, dict(LV_START), y0)
    step()
    z = float(np.max(np.abs(result.values - truth) / result.stderr))
    checks = (
        _check("converged", float(result.converged), 1.0, result.converged, result.message),
        _check("truth_recovered", z, 3.0, z < 3.0,
               f"every parameter within {z:.2f} standard errors of the generating value"
               " (limit 3)"),
    )  # fmt: skip
    table = Table(
        "Lotka-Volterra parameters from 40 noisy observations of both species",
        ("parameter", "truth", "start", "fitted", "standard error"),
        tuple((name, LV_TRUTH[name], LV_START[name], float(v), float(s))
              for name, v, s in zip(result.names, result.values, result.stderr, strict=True)),
    )  # fmt: skip
    dense = np.linspace(0.0, 8.0, 400)
    fitted = np.asarray(ode.solve(_lotka_volterra, (0.0, 8.0), jnp.asarray(y0), t_eval=dense,
                                  args=jnp.asarray(result.values)).ys)  # fmt: skip
    figure, (series, phase) = _figure()
    for state, label in enumerate(("prey x", "predator y")):
        series.plot(times, observed[:, state], "o", ms=3, color=f"C{state}", label=label)
        series.plot(dense, fitted[:, state], color=f"C{state}", lw=1.2)
    series.set_xlabel("t")
    series.legend(fontsize="small")
    phase.plot(observed[:, 0], observed[:, 1], "o", ms=3, color="0.5", label="observed")
    phase.plot(fitted[:, 0], fitted[:, 1], color="C0", label="fitted")
    phase.set_xlabel("prey x")
    phase.set_ylabel("predator y")
    phase.legend(fontsize="small")
    total = time.perf_counter() - started
    return Story(
        "ode",
        "An ODE fitted to noisy data",
        "Lotka-Volterra predator-prey equations solved by Diffrax inside jaxpro's"
        " least-squares engine, differentiating through the solver, from a start 20% off.",
        (table,),
        (("Observations and the fitted solution", figure),),
        checks,
        result.plan,
        Timings(None, total, total),
    )


#: The stories, in the order ``jaxpro demo`` runs them.
STORIES: dict[str, StoryDef] = {
    "curve": StoryDef("curve", "curve fit of millions of points vs SciPy", 3, _curve),
    "hierarchical": StoryDef("hierarchical", "hierarchical Bayesian model", 3, _hierarchical),
    "parallel": StoryDef("parallel", "multi-device parallelism", 2, _parallel),
    "md": StoryDef("md", "differentiable MD: Lennard-Jones parameters", 2, _md),
    "ode": StoryDef("ode", "ODE fitted to noisy data", 2, _ode),
}
