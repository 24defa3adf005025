"""``jaxpro.bayes.sample``: the method an expert would choose, checked, and repaired when it fails.

1. **Plan.** The model is traced at the data: the number of observations picks
   the method (NUTS below 10K; HMCECS up to 100K; SVI up to 1M; consensus
   Monte Carlo beyond), the number of parameters the SVI guide. The tall-data
   methods need a model that reads its data plate through
   ``numpyro.subsample``; otherwise NUTS runs on all the data, and the plan
   says why.
2. **Run.** Chains run in parallel on separate devices when there are enough
   (``jaxpro.use_cpu_cores(4)`` on a CPU), vectorised otherwise.
3. **Check.** ArviZ's rank-normalised R-hat, bulk and tail ESS, divergences,
   tree depth and E-BFMI against a :class:`~jaxpro.bayes._diagnose.Gate`.
4. **Repair.** A failed gate leads to the next attempt an expert would make
   (:mod:`jaxpro.bayes._remedy`), within an attempt and time budget; every
   attempt is recorded. If the gate still fails, ``posterior.ok`` is False
   and a warning says what failed and what to try.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from jaxpro._cache import enable_persistent_cache
from jaxpro._precision import float64
from jaxpro._result import Plan
from jaxpro.errors import InputError, JaxproWarning, warn

__all__ = ["Attempt", "sample"]

METHODS = ("auto", "nuts", "hmcecs", "svi", "consensus")
NUTS_MAX = 10_000
HMCECS_MAX = 100_000
SVI_MAX = 1_000_000


@dataclass(frozen=True)
class Attempt:
    """One try: what was run, how long it took and what the diagnostics said."""

    method: str
    settings: str
    seconds: float
    problems: tuple[str, ...]
    reasons: tuple[str, ...] = ()  # why this attempt differs from the last

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "settings": self.settings,
            "seconds": self.seconds,
            "problems": list(self.problems),
            "reasons": list(self.reasons),
        }


class SamplingWarning(JaxproWarning):
    """The posterior failed its diagnostic gate after every remedy tried."""


def _choose(method: str, info, tall_ready: bool) -> tuple[str, list[str]]:
    n = info.observations
    if method != "auto":
        return method, [f"{method.upper()}: requested by the caller"]
    if n < NUTS_MAX:
        return "nuts", [f"NUTS: {n} observations (< {NUTS_MAX:,}): exact MCMC is affordable"]
    wanted = "hmcecs" if n <= HMCECS_MAX else ("svi" if n <= SVI_MAX else "consensus")
    names = {"hmcecs": "HMCECS", "svi": "SVI", "consensus": "consensus Monte Carlo"}
    why = {
        "hmcecs": f"{n:,} observations ({NUTS_MAX:,}-{HMCECS_MAX:,}): subsampled HMC (HMCECS) with a Taylor proxy",
        "svi": f"{n:,} observations ({HMCECS_MAX:,}-{SVI_MAX:,}): variational inference",
        "consensus": f"{n:,} observations (> {SVI_MAX:,}): consensus Monte Carlo over data shards",
    }[wanted]
    if wanted in ("hmcecs", "consensus") and not tall_ready:
        return "nuts", [
            f"{why} would fit, but the model does not read its data plate through numpyro.subsample, "
            "so NUTS runs on all the data (see jaxpro.bayes docs to enable subsampling)"
        ]
    return wanted, [f"{names[wanted]}: {why}"]


def sample(
    model: Callable,
    *args,
    method: str = "auto",
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    gate=None,
    remedy: bool = True,
    max_attempts: int = 4,
    time_budget: float = 600.0,
    level: float = 0.9,
    interval: str = "hdi",
    progress: bool = True,
    parallel_chains: bool = True,
    dense_mass: bool = False,
    derived: Callable | None = None,
    init_values: Mapping | None = None,
    _plan_only: bool = False,
    **kwargs,
):
    """Draw from the posterior of a NumPyro model with an expert's choices, checked.

    Args:
        model: a NumPyro model function; ``args``/``kwargs`` are passed to it
            (the observed data among them).
        method: "auto" (by the number of observations), "nuts", "hmcecs", "svi" or "consensus".
        num_chains, num_warmup, num_samples: MCMC sizes (draws per chain).
        seed: random seed (all randomness flows from it).
        gate: a :class:`Gate` (default: R-hat < 1.01, bulk/tail ESS >= 400, no divergences).
        remedy: repair a failed gate by further attempts.
        max_attempts, time_budget: limits of the repair loop (attempts, seconds).
        level, interval: credible intervals in summaries ("hdi" or "eti").
        progress: progress bars on an interactive terminal.
        parallel_chains: when this call is the process's first JAX work, give
            JAX's CPU backend one device per chain so the chains run in
            parallel (a process-wide setting; see ``jaxpro.use_cpu_cores``).
        derived: optional function of the draws (site -> ``(chains, draws, ...)``)
            returning further quantities (name -> same layout) whose R-hat and
            ESS the gate must also pass: transformed parameters that will be
            reported (``jaxpro.bayes.fit`` passes its named coefficients).
        dense_mass: adapt a dense mass matrix in NUTS (worth it for up to a few
            hundred correlated parameters; the repairs switch it on when
            E-BFMI is poor).
        init_values: ``{site: value}``: NUTS chains start near these values (each
            moved by up to +-0.1 in the site's unconstrained space, so chains still
            start apart); default: uniform in (-2, 2) unconstrained. Worth it where
            random starts fall into local modes (an ODE's oscillating solutions).

    Returns:
        :class:`~jaxpro.bayes.Posterior`.

    Raises:
        InputError: unusable arguments or observations (NaN, impossible under
            the likelihood), naming the site; ModelError: the model fails when
            run, naming the site.
    """
    from jaxpro.bayes._diagnose import Gate
    from jaxpro.bayes._model import inspect_model
    from jaxpro.bayes._nuts import NutsSettings, chain_method
    from jaxpro.bayes._posterior import Posterior
    from jaxpro.bayes._subsample import data_plate, subsample_aware

    started = time.perf_counter()
    enable_persistent_cache()  # a second process with the same model skips XLA compilation
    if method not in METHODS:
        raise InputError(f"must be one of {', '.join(METHODS)}", argument="method", received=method)
    for name, value in (
        ("num_chains", num_chains),
        ("num_warmup", num_warmup),
        ("num_samples", num_samples),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError("must be a positive integer", argument=name, received=value)
    if interval not in ("hdi", "eti"):
        raise InputError("must be 'hdi' or 'eti'", argument="interval", received=interval)
    if not 0 < level < 1:
        raise InputError("must be in (0, 1)", argument="level", received=level)
    gate = Gate() if gate is None else gate
    if not isinstance(gate, Gate):
        raise InputError("must be a jaxpro.bayes.Gate", argument="gate", received=gate)
    devices_note = _chain_devices(num_chains) if parallel_chains else None

    with float64():
        info = inspect_model(model, args, kwargs)
        plate = data_plate(model, args, kwargs)
        tall_ready = plate is not None and subsample_aware(model, args, kwargs, *plate)
        chosen, reasons = _choose(method, info, tall_ready)
        if chosen in ("hmcecs", "consensus") and not tall_ready:
            raise InputError(
                f"{chosen} needs a model that reads its data plate through numpyro.subsample "
                "(e.g. `with numpyro.plate('data', n): y = numpyro.subsample(y, event_dim=0)`)",
                argument="method",
            )
        if _plan_only:
            # jaxpro.plan: the method this call would run and why, and the cost of
            # one gradient of the log density (what every method spends its time on)
            return {"method": chosen, "reasons": tuple(reasons), "parameters": info.parameters,
                    "observations": info.observations,
                    "gradient_s": _gradient_seconds(model, args, kwargs, seed),
                    "compile_s": _compile_seconds(chosen, model, args, kwargs, seed, num_chains,
                                                  info.parameters)}  # fmt: skip
        settings = NutsSettings(
            num_warmup=num_warmup, num_samples=num_samples, dense_mass=bool(dense_mass),
            init="uniform" if init_values is None else dict(init_values),
        )  # fmt: skip
        run_kwargs = dict(
            derived=derived,
            model=model,
            args=args,
            kwargs=kwargs,
            info=info,
            gate=gate,
            seed=seed,
            num_chains=num_chains,
            level=level,
            interval=interval,
            progress=progress,
        )
        if chosen == "nuts":
            reasons.append(
                f"{num_chains} chains, {chain_method(num_chains)}"
                + (
                    ""
                    if chain_method(num_chains) == "parallel"
                    else " (jaxpro.use_cpu_cores(n) before any JAX work runs them in parallel)"
                )
            )
            outcome = _nuts_with_remedies(
                settings,
                remedy=remedy,
                max_attempts=max_attempts,
                time_budget=time_budget,
                **run_kwargs,
            )
        elif chosen == "svi":
            outcome = _svi(num_samples=num_samples * num_chains, **run_kwargs)
        else:
            outcome = _tall(chosen, settings, plate, **run_kwargs)
    draws, diagnostics, attempts, problems, detail, extra_info = outcome
    if devices_note:
        reasons.append(devices_note)
    if detail:
        reasons.append(detail)
    reasons.append(
        f"{info.observations} observations, {info.parameters} parameters in {len(info.latent)} sites"
    )
    plan = Plan(
        method=chosen,
        reasons=tuple(reasons),
        settings={
            "method": chosen,
            "num_chains": num_chains if chosen != "svi" else 1,
            "final": attempts[-1].settings if attempts else "",
            "gate": gate.describe() if hasattr(gate, "describe") else str(gate),
            "attempts": len(attempts),
        },
    )
    ok = not problems
    if not ok:
        warn(
            "the posterior failed its checks: "
            + "; ".join(p.message for p in problems)
            + ". "
            + _advice(problems),
            SamplingWarning,
        )
    return Posterior(
        draws=draws,
        diagnostics=diagnostics,
        problems=tuple(problems),
        attempts=tuple(attempts),
        plan=plan,
        seconds=time.perf_counter() - started,
        model=model,
        args=args,
        kwargs=kwargs,
        info=info,
        level=level,
        interval=interval,
        seed=seed,
        extra=extra_info,
    )


def _gradient_seconds(model, args, kwargs, seed: int) -> float:
    """Best of five compiled evaluations of the log density's gradient at an initial point."""
    import jax
    from numpyro.infer.util import initialize_model

    init = initialize_model(jax.random.PRNGKey(seed), model, model_args=args,
                            model_kwargs=kwargs, dynamic_args=False)  # fmt: skip
    gradient = jax.jit(jax.grad(init.potential_fn))
    point = init.param_info.z
    jax.block_until_ready(gradient(point))
    best = float("inf")
    for _ in range(5):
        tic = time.perf_counter()
        jax.block_until_ready(gradient(point))
        best = min(best, time.perf_counter() - tic)
    return best


def _compile_seconds(method: str, model, args, kwargs, seed: int, num_chains: int,
                     parameters: int) -> float | None:  # fmt: skip
    """The compilation a ``method`` run would start with, measured (None: not measured).

    NUTS: the wall time of a run of one warm-up iteration and one draw per chain
    with the same kernel, chains and devices (NumPyro compiles inside its run; a
    1,000 + 1,000 run compiles programs of the same size again, the iteration
    counts being static). SVI: the optimisation window compiled, not run. The
    subsampling methods (HMCECS, consensus) are not measured.
    """
    if method == "nuts":
        from jaxpro.bayes._nuts import NutsSettings, run_nuts

        settings = NutsSettings(num_warmup=1, num_samples=1)
        return run_nuts(model, args, kwargs, settings, num_chains=num_chains, seed=seed).seconds
    if method == "svi":
        from jaxpro.bayes import _svi

        return _svi.compile_seconds(model, args, kwargs, parameters=parameters, seed=seed)
    return None


def _chain_devices(num_chains: int) -> str | None:
    """One JAX CPU device per chain, if JAX has not started yet (else nothing changes).

    NumPyro runs chains in parallel only with a device per chain; on a CPU, JAX
    shows one device unless told before it starts. With four chains on a
    2-core machine this halved the time of centred eight schools here.
    """
    import jax

    from jaxpro.core._mesh import request_cpu_devices

    if jax.config.jax_num_cpu_devices >= num_chains or not request_cpu_devices(num_chains):
        return None
    return (
        f"gave JAX {num_chains} CPU devices before it started, so the {num_chains} chains run in "
        "parallel (parallel_chains=False keeps one)"
    )


def _advice(problems) -> str:
    codes = {p.code for p in problems}
    tips = []
    if "divergences" in codes:
        tips.append(
            "reparameterise the model (non-centre hierarchical scales) or tighten its priors"
        )
    if "rhat" in codes:
        tips.append("run longer warm-up, or check for multimodality")
    if codes & {"ess_bulk", "ess_tail"}:
        tips.append("draw more samples")
    if "pareto_k" in codes:
        tips.append(
            "the variational guide is too simple: use NUTS (method='nuts') or a richer guide"
        )
    if "elbo" in codes:
        tips.append("the ELBO had not levelled off: allow more steps")
    return "Try: " + "; ".join(tips) + "." if tips else ""


def _nuts_with_remedies(
    settings,
    *,
    remedy,
    max_attempts,
    time_budget,
    model,
    args,
    kwargs,
    info,
    gate,
    seed,
    num_chains,
    level,
    interval,
    progress,
    derived=None,
):
    from jaxpro.bayes._diagnose import mcmc_diagnostics
    from jaxpro.bayes._nuts import INIT_STRATEGIES, InitializationError, run_nuts
    from jaxpro.bayes._remedy import next_settings

    attempts: list = []
    started = time.perf_counter()
    reasons: tuple[str, ...] = ()
    inits = [settings.init] + [name for name in INIT_STRATEGIES if name != settings.init]
    best = None
    while True:
        try:
            run = run_nuts(
                model,
                args,
                kwargs,
                settings,
                num_chains=num_chains,
                seed=seed + len(attempts),
                progress=progress,
            )
        except InitializationError as exc:
            attempts.append(
                _attempt(
                    "nuts",
                    settings,
                    0.0,
                    (f"no valid initial parameters ({settings.init})",),
                    reasons,
                )
            )
            inits.remove(settings.init)
            if not inits:
                raise InitializationError(
                    f"NUTS found no valid initial parameters with any strategy ({', '.join(INIT_STRATEGIES)}): "
                    "check that the priors put mass where the likelihood is finite, and that "
                    "parameters have the constraints their distributions need"
                ) from exc
            settings = replace(settings, init=inits[0])
            reasons = (f"no valid initial parameters: trying init_to_{inits[0]}",)
            continue
        diagnostics = mcmc_diagnostics(
            run.draws,
            extra=run.extra,
            level=level,
            interval=interval,
            max_tree_depth=settings.max_tree_depth,
        )
        problems = diagnostics.problems(gate) + _derived_problems(
            derived, run.draws, gate, level, interval
        )
        attempts.append(
            _attempt("nuts", settings, run.seconds, tuple(p.message for p in problems), reasons)
        )
        best = (run.draws, diagnostics, problems)
        if not problems or not remedy:
            break
        if (
            len(attempts) >= max_attempts
            or time.perf_counter() - started + run.seconds > time_budget
        ):
            break
        ess, wanted = _ess_shortfall(problems, gate)
        fix = next_settings(problems, settings, info, model, args, kwargs, run, ess, wanted)
        if fix is None:
            break
        settings, reasons = fix.settings, fix.reasons
    draws, diagnostics, problems = best
    return draws, diagnostics, attempts, problems, None, {"extra": run.extra}


def _derived_problems(derived, draws, gate, level, interval) -> tuple:
    """The chain checks (R-hat, ESS) of the quantities ``derived(draws)`` that will be reported."""
    if derived is None:
        return ()
    from jaxpro.bayes._diagnose import mcmc_diagnostics

    values = derived(draws)
    if not values:
        return ()
    found = mcmc_diagnostics(values, level=level, interval=interval).problems(gate)
    return tuple(
        replace(p, message=f"{p.message} (reported quantity)")
        for p in found
        if p.code in ("rhat", "ess_bulk", "ess_tail")
    )


def _ess_shortfall(problems, gate) -> tuple[float, float]:
    """The failing ESS check furthest below its threshold: ``(ESS seen, ESS wanted)``.

    Bulk or tail, whichever needs the most extra draws; ``(inf, 0)`` when
    neither failed.
    """
    thresholds = {"ess_bulk": gate.ess_bulk_min, "ess_tail": gate.ess_tail_min}
    worst = (float("inf"), 0.0)
    for problem in problems:
        wanted = thresholds.get(problem.code)
        if wanted is None or math.isnan(problem.worst):  # not an ESS check, or no value
            continue
        seen = float(problem.worst)
        if wanted / max(seen, 1.0) > worst[1] / max(worst[0], 1.0):
            worst = (seen, float(wanted))
    return worst


def _attempt(method, settings, seconds, problems, reasons):
    return Attempt(method, settings.describe(), seconds, tuple(problems), tuple(reasons))


def _svi(*, model, args, kwargs, info, gate, seed, num_samples, level, interval, **_):
    from jaxpro.bayes._diagnose import mcmc_diagnostics, svi_diagnostics
    from jaxpro.bayes._svi import run_svi

    run = run_svi(
        model, args, kwargs, parameters=info.parameters, num_samples=num_samples, seed=seed
    )
    checks = svi_diagnostics(run.elbo, run.log_weights)
    diagnostics = mcmc_diagnostics(run.draws, level=level, interval=interval)
    problems = checks.problems(gate)
    detail = (
        f"{run.guide} guide, Adam, {run.steps} steps "
        f"({'ELBO levelled off' if run.converged else 'ELBO still changing at the step limit'}); "
        f"Pareto k of the importance weights {checks.pareto_k:.2f}"
    )
    attempt = Attempt(
        "svi", f"{run.guide}, {run.steps} steps", run.seconds, tuple(p.message for p in problems)
    )
    return run.draws, diagnostics, [attempt], problems, detail, {"elbo": run.elbo, "svi": checks}


def _tall(
    method,
    settings,
    plate,
    *,
    model,
    args,
    kwargs,
    info,
    gate,
    seed,
    num_chains,
    level,
    interval,
    derived=None,
    **_,
):
    from jaxpro.bayes._diagnose import mcmc_diagnostics
    from jaxpro.bayes._tall import HMCECS_SUBSAMPLE, run_consensus, run_hmcecs, shard_count

    name, size = plate
    if method == "hmcecs":
        run = run_hmcecs(
            model,
            args,
            kwargs,
            plate=name,
            size=size,
            subsample_size=min(size, HMCECS_SUBSAMPLE),
            settings=settings,
            num_chains=num_chains,
            seed=seed,
        )
        diagnostics = mcmc_diagnostics(
            run.draws,
            extra=run.extra,
            level=level,
            interval=interval,
            max_tree_depth=settings.max_tree_depth,
        )
        problems = list(diagnostics.problems(gate))
        problems += _derived_problems(derived, run.draws, gate, level, interval)
    else:
        run = run_consensus(
            model,
            args,
            kwargs,
            plate=name,
            size=size,
            shards=shard_count(info.observations),
            settings=settings,
            seed=seed,
            num_chains=num_chains,
        )
        # the combined draws are not chains: each shard's chains carry the diagnostics
        diagnostics = mcmc_diagnostics(run.draws, level=level, interval=interval)
        problems = []
        for k, (draws, extra) in enumerate(run.extra["shards"]):
            shard = mcmc_diagnostics(draws, extra=extra, max_tree_depth=settings.max_tree_depth)
            problems += [
                replace(p, message=f"shard {k + 1}: {p.message}") for p in shard.problems(gate)
            ]
    attempt = Attempt(method, settings.describe(), run.seconds, tuple(p.message for p in problems))
    return run.draws, diagnostics, [attempt], problems, run.detail, {}
