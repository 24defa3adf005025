"""``jaxpro.plan("bayes", ...)``: a regression formula's inference method, by ``bayes.fit``.

The advice builds a synthetic data frame with the stated rows, predictors,
family and grouping, and calls :func:`jaxpro.bayes.fit` on it with the same
method and sampler settings, stopping where the real call would start sampling
(``_plan_only``): the method and every reason are the fit's own. The time is
an estimate from measured costs: one compiled gradient of the model's log
density on those data, times the gradients the method typically needs, plus
the compilation: NUTS's by a run of one iteration each, SVI's by compiling its
optimisation window.
"""

from __future__ import annotations

import time

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.advisor._advice import Advice
from jaxpro.errors import InputError

__all__ = ["plan_bayes"]

FAMILIES = ("gaussian", "student_t", "bernoulli", "poisson", "negative_binomial", "gamma")
# leapfrog steps per NUTS draw: tree depth 3 to 6 is typical of a well-scaled
# posterior (7 to 63 steps); the middle is used for the estimate
LEAPFROG = (7, 15, 63)
SVI_STEPS = (5_000, 50_000)  # jaxpro's SVI stops on a flat ELBO, at most 50,000 steps

VALIDATION = (
    "R-hat <= 1.01 for every parameter",
    "bulk and tail ESS >= 400",
    "no divergent transitions; E-BFMI >= 0.3; tree depth saturated in <= 5% of draws",
    "SVI: Pareto k of the importance weights <= 0.7",
    "on failure: the remedy loop (non-centring, longer warmup, dense mass) and advice",
)


def _frame(n: int, predictors: int, family: str, groups: int | None, rng):
    import pandas as pd

    columns = {f"x{k + 1}": rng.standard_normal(n) for k in range(predictors)}
    eta = 0.5 + sum(0.3 * c for c in columns.values())
    if groups:
        g = rng.integers(0, groups, n)
        columns["g"] = g
        eta = eta + 0.5 * rng.standard_normal(groups)[g]
    if family in ("gaussian", "student_t"):
        y = eta + rng.standard_normal(n)
    elif family == "bernoulli":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif family in ("poisson", "negative_binomial"):
        y = rng.poisson(np.exp(np.clip(eta, -5, 5))).astype(float)
    else:  # gamma: positive, log link
        y = rng.gamma(2.0, np.exp(eta) / 2.0)
    return pd.DataFrame({"y": y, **columns})


def plan_bayes(n: int, hierarchical: bool = False, family: str = "gaussian",
               predictors: int = 1, groups: int | None = None, method: str = "auto",
               num_chains: int = 4, num_warmup: int = 1000, num_samples: int = 1000,
               seed: int = 0) -> Advice:  # fmt: skip
    """The Bayesian regression jaxpro would run on ``n`` rows (see :func:`jaxpro.bayes.fit`)."""
    import jax

    import jaxpro.bayes as bayes

    started = time.perf_counter()
    for value, name in ((n, "n"), (predictors, "predictors")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError("must be a positive whole number", argument=name, received=value)
    if family not in FAMILIES:
        raise InputError(f"must be one of {FAMILIES} (binomial needs a trials column)",
                         argument="family", received=family)  # fmt: skip
    if hierarchical and groups is None:
        groups = int(min(max(n // 100, 2), 1000))
    rng = np.random.default_rng(seed)
    frame = _frame(n, predictors, family, groups if hierarchical else None, rng)
    terms = " + ".join(f"x{k + 1}" for k in range(predictors))
    formula = f"y ~ {terms}" + (" + (1 | g)" if hierarchical else "")
    decided = bayes.fit(formula, frame, family, method=method, num_chains=num_chains,
                        num_warmup=num_warmup, num_samples=num_samples, seed=seed,
                        progress=False, _plan_only=True)  # fmt: skip
    chosen, gradient, compiling = decided["method"], decided["gradient_s"], decided["compile_s"]
    if chosen == "svi":
        low, high = (gradient * s for s in SVI_STEPS)
        seconds = (low * high) ** 0.5
        how = f"{SVI_STEPS[0]:,} to {SVI_STEPS[1]:,} optimisation steps"
    else:
        draws = num_chains * (num_warmup + num_samples)
        low, mid, high = (gradient * draws * steps for steps in LEAPFROG)
        seconds = mid
        how = (f"{num_chains} chains x {num_warmup + num_samples} iterations x"
               f" {LEAPFROG[0]}-{LEAPFROG[2]} leapfrog steps")  # fmt: skip
        if chosen in ("hmcecs", "consensus"):
            how += " (full-data gradients: subsampling or shards make it cheaper)"
    note = (f"one gradient of the log density measured at {gradient * 1e3:.3g} ms on the"
            f" synthetic data; {how}: {low:.3g} to {high:.3g} s")  # fmt: skip
    if compiling is not None:
        seconds += compiling
        how_measured = ("a run of one warm-up iteration and one draw per chain" if chosen == "nuts"
                        else "its optimisation window compiled")  # fmt: skip
        note += f"; plus {compiling:.3g} s to compile ({how_measured}, measured)"
    else:
        note += "; compilation not included (not measured for this method)"
    data_bytes = float(frame.memory_usage(deep=True).sum())
    draws_bytes = 8.0 * num_chains * num_samples * decided["parameters"]
    devices = jax.devices()
    return Advice(
        domain="bayes",
        method=chosen,
        call=f"jaxpro.bayes.fit({formula!r}, data, {family!r})",
        memory_bytes=data_bytes + draws_bytes,
        memory_note=f"the data ({data_bytes / 2**20:.3g} MiB) and the draws ({num_chains} x"
        f" {num_samples} x {decided['parameters']} parameters)",
        seconds=seconds,
        seconds_note=note,
        validation=VALIDATION,
        devices=f"{len(devices)} x {devices[0].platform}",
        plan=Plan(
            method=chosen,
            reasons=decided["reasons"],
            settings={
                "rows": n,
                "formula": formula,
                "family": family,
                "parameters": decided["parameters"],
                "gradient_s": gradient,
                "compile_s": compiling,
            },
        ),
        timings=Timings(None, 0.0, time.perf_counter() - started),
    )
