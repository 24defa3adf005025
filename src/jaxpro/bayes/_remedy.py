"""What an expert changes when a NUTS run fails its gate, in the order an expert would.

- Divergences in a hierarchy: non-centre the hierarchical sites the data
  inform weakly (``LocScaleReparam``) and raise ``target_accept``. Where the
  data inform a site strongly, the centred form is the better geometry
  (non-centring a 20-group model with 250 observations per group cost 8x the
  leapfrog steps and 15x the ESS here), so the choice is made per site: the
  ratio of the site's posterior spread to its prior scale, read off the failed
  run, tells which regime it is in. ``target_accept`` goes from 0.8 straight
  to 0.99, not up a 0.9/0.95 ladder: every rung is a whole run, and divergences
  that survive 0.8 were seldom gone at 0.9 or 0.95 here (measured 2026-12-06:
  non-centred eight schools still diverged at 0.9 in 1 run of 30 and at 0.95
  in 1 of 10, never at 0.99 in 40; the then-centred sleepstudy-like formula
  demo climbed all four rungs on 3 seeds of 10), while 0.99 costs about twice
  the leapfrog steps of one run.
- Divergences at 0.99 with nothing left to non-centre: give up and say so.
- High R-hat: longer warm-up; R-hat just above the limit (< 1.02) after a
  warm-up at least as long as the draws: more draws (rank-normalised R-hat of
  four short chains sits there by Monte Carlo noise alone). Low ESS: more
  draws, as many as the shortfall says.
- Saturated trees: a deeper tree; poor E-BFMI: longer warm-up with a dense mass matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from jaxpro.bayes._model import ModelInfo, _loc_scale
from jaxpro.bayes._nuts import NutsRun, NutsSettings, reparameterized

__all__ = ["Remedy", "informativeness", "next_settings"]

# posterior sd / prior scale above this: the prior dominates, the funnel bites: non-centre
WEAK_DATA = 0.5
# R-hat below this (with warm-up as long as the draws) is the noise of a short run: draw more
MARGINAL_RHAT = 1.02
_TARGETS = (0.8, 0.99)  # see the module docstring


@dataclass(frozen=True)
class Remedy:
    """The next attempt's settings and the reasons, in words."""

    settings: NutsSettings
    reasons: tuple[str, ...]


def informativeness(
    model: Callable, args, kwargs, run: NutsRun, site: str, draws_used: int = 48
) -> float:
    """Posterior sd of ``site`` over its prior scale (averaged over elements and draws).

    Near 1: the data barely move the site from its prior (non-centre it); near
    0: the data pin it down (keep it centred).
    """
    from numpyro import handlers

    draws = run.draws
    if site not in draws:
        return math.nan
    chains, count = draws[site].shape[:2]
    picks = np.linspace(0, chains * count - 1, draws_used).astype(int)
    model = reparameterized(model, run.settings.noncentered)
    latent = {k: v.reshape(chains * count, *v.shape[2:]) for k, v in draws.items()}
    scales = []
    for i in picks:
        values = {k: v[i] for k, v in latent.items()}
        traced = handlers.trace(
            handlers.substitute(handlers.seed(model, 0), data=values)
        ).get_trace(*args, **kwargs)
        node = traced.get(site) or traced.get(f"{site}_decentered")
        if node is None or node["type"] != "sample":
            return math.nan
        _, scale = _loc_scale(node["fn"])
        if scale is None:
            return math.nan
        scales.append(float(np.mean(np.asarray(scale))))
    spread = float(np.mean(np.std(latent[site], axis=0)))
    prior = float(np.mean(scales))
    return spread / prior if prior > 0 else math.inf


def next_settings(
    problems,
    settings: NutsSettings,
    info: ModelInfo,
    model: Callable,
    args,
    kwargs,
    run: NutsRun,
    min_ess: float,
    ess_wanted: float,
) -> Remedy | None:
    """The next attempt after ``problems``, or None when nothing sensible is left to try."""
    codes = {p.code for p in problems}
    reasons: list[str] = []
    new = settings
    if "divergences" in codes:
        candidates = [s for s in info.hierarchical if s not in settings.noncentered]
        chosen, kept = [], []
        for site in candidates:
            ratio = informativeness(model, args, kwargs, run, site)
            (chosen if not ratio < WEAK_DATA else kept).append((site, ratio))
        if chosen:
            names = tuple(s for s, _ in chosen)
            new = replace(new, noncentered=settings.noncentered + names)
            detail = ", ".join(f"{s} (posterior sd / prior scale {r:.2g})" for s, r in chosen)
            reasons.append(
                f"divergences: non-centred the weakly informed hierarchical site(s) {detail}"
            )
        if kept:
            detail = ", ".join(f"{s} ({r:.2g})" for s, r in kept)
            reasons.append(f"kept centred, the data inform them strongly: {detail}")
        higher = next((t for t in _TARGETS if t > settings.target_accept), None)
        if higher is not None:
            new = replace(new, target_accept=higher)
            reasons.append(f"divergences: target_accept {settings.target_accept:g} -> {higher:g}")
        if not chosen and higher is None:
            return None
    # Divergences distort everything else (R-hat, ESS, E-BFMI are symptoms of the
    # same bad geometry): fix them first, alone, and look again.
    if "divergences" in codes and new != settings:
        return Remedy(new, tuple(reasons))
    rhat = max((p.worst for p in problems if p.code == "rhat"), default=math.nan)
    marginal = (
        "rhat" in codes
        and "bfmi" not in codes
        and rhat < MARGINAL_RHAT
        and settings.num_warmup >= settings.num_samples
    )
    if marginal:
        # Chains that agree to within Monte Carlo noise: a short run, not a short warm-up
        factor = 2.0
        if codes & {"ess_bulk", "ess_tail"} and math.isfinite(min_ess):
            factor = min(8.0, max(2.0, 1.2 * ess_wanted / max(min_ess, 1.0)))
        new = replace(new, num_samples=math.ceil(settings.num_samples * factor))
        reasons.append(
            f"R-hat {rhat:.3f}, just above the limit: more draws {settings.num_samples} -> "
            f"{new.num_samples} (the warm-up is already as long as the draws)"
        )
    elif "rhat" in codes or "bfmi" in codes:
        new = replace(new, num_warmup=settings.num_warmup * 2)
        reasons.append(
            f"chains disagree (R-hat/E-BFMI): warm-up {settings.num_warmup} -> {new.num_warmup}"
        )
        if "bfmi" in codes and not settings.dense_mass:
            new = replace(new, dense_mass=True)
            reasons.append("poor E-BFMI: dense mass matrix")
    if "treedepth" in codes:
        new = replace(new, max_tree_depth=settings.max_tree_depth + 2)
        reasons.append(
            f"trees saturate: max tree depth {settings.max_tree_depth} -> {new.max_tree_depth}"
        )
    if (
        codes & {"ess_bulk", "ess_tail"}
        and not codes & {"divergences", "rhat"}
        and math.isfinite(min_ess)
    ):
        factor = min(8.0, max(1.5, 1.2 * ess_wanted / max(min_ess, 1.0)))
        new = replace(new, num_samples=math.ceil(settings.num_samples * factor))
        reasons.append(
            f"ESS {min_ess:.0f} < {ess_wanted:.0f}: draws {settings.num_samples} -> {new.num_samples}"
        )
    return Remedy(new, tuple(reasons)) if new != settings else None
