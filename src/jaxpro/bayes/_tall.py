"""Exact-ish MCMC on tall data: HMCECS subsampling and consensus Monte Carlo.

Both need a model that reads its data plate through ``numpyro.subsample``
(or indexes by the plate's indices), so that part of the data can be used
without changing the model (see :mod:`jaxpro.bayes._subsample`).

- **HMCECS** (Dang et al. 2019): NUTS on a subsample whose likelihood is
  corrected by a second-order Taylor proxy around a reference point; the
  subsample indices are Gibbs-updated between NUTS steps. The reference point
  is the MAP, found by jaxpro first (users otherwise build it by hand).
- **Consensus Monte Carlo** (Scott et al. 2016): NUTS on K disjoint shards,
  each with the prior tempered to 1/K, the sub-posteriors combined by
  NumPyro's precision-weighted ``consensus``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxpro.bayes._nuts import NutsSettings, chain_method
from jaxpro.bayes._subsample import subsampled
from jaxpro.bayes._svi import fit_map

__all__ = ["TallRun", "run_consensus", "run_hmcecs"]


HMCECS_SUBSAMPLE = 1000  # rows per likelihood estimate (NumPyro's HMCECS examples use 1000)
_SAMPLER_FIELDS = ("diverging", "num_steps", "energy")


@dataclass(frozen=True)
class TallRun:
    draws: dict  # site -> (chains, draws, *shape)
    extra: dict  # sampler fields (diverging, num_steps, energy) -> (chains, draws); per shard for consensus
    seconds: float
    detail: str


def _latent_only(draws: dict, plate: str) -> dict:
    return {k: np.asarray(v) for k, v in draws.items() if k != plate}


def _fields(mcmc, prefix: str = "") -> dict:
    """The sampler fields diagnostics need, keyed without the state prefix."""
    fields = mcmc.get_extra_fields(group_by_chain=True)
    return {
        name: np.asarray(fields[prefix + name])
        for name in _SAMPLER_FIELDS
        if prefix + name in fields
    }


def run_hmcecs(
    model: Callable,
    args,
    kwargs,
    *,
    plate: str,
    size: int,
    subsample_size: int,
    settings: NutsSettings,
    num_chains: int,
    seed: int,
) -> TallRun:
    """HMCECS with a Taylor proxy around the MAP. Call inside ``float64()``."""
    import jax
    from numpyro.infer import HMCECS, MCMC, NUTS

    start = time.perf_counter()
    reference = fit_map(model, args, kwargs, seed=seed)
    wrapped = subsampled(model, plate, subsample_size)
    kernel = HMCECS(
        NUTS(
            wrapped,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
        ),
        num_blocks=max(1, subsample_size // 100),
        proxy=HMCECS.taylor_proxy(reference),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        num_chains=num_chains,
        chain_method=chain_method(num_chains, vectorizable=False),
        progress_bar=False,
    )
    # HMCECS's state nests the NUTS state, where the sampler fields live
    mcmc.run(
        jax.random.PRNGKey(seed),
        *args,
        extra_fields=tuple(f"hmc_state.{name}" for name in _SAMPLER_FIELDS),
        **kwargs,
    )
    draws = _latent_only(mcmc.get_samples(group_by_chain=True), plate)
    extra = _fields(mcmc, "hmc_state.")
    detail = (
        f"HMCECS: subsamples of {subsample_size} of {size} rows per step, likelihood corrected by "
        "a second-order Taylor proxy around the MAP"
    )
    return TallRun(draws, extra, time.perf_counter() - start, detail)


def run_consensus(
    model: Callable,
    args,
    kwargs,
    *,
    plate: str,
    size: int,
    shards: int,
    settings: NutsSettings,
    seed: int,
    num_chains: int = 1,
) -> TallRun:
    """Consensus Monte Carlo over ``shards`` contiguous shards. Call inside ``float64()``.

    ``extra["shards"]`` holds each shard's chains ``(draws, fields)`` so every
    sub-posterior can be checked: a consensus of unconverged shards is no posterior.
    """
    import jax
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer import MCMC, NUTS
    from numpyro.infer.hmc_util import consensus

    start = time.perf_counter()
    edges = np.linspace(0, size, shards + 1).astype(int)
    width = int(np.max(np.diff(edges)))
    subposteriors, checked = [], []
    for k in range(shards):
        # equal-width shards (the last ones may overlap their neighbour by a row
        # or two) keep one compiled program for every shard
        lo = min(int(edges[k]), size - width)
        indices = jnp.arange(lo, lo + width)
        # the plate rescales the shard's likelihood by size/width (~K); scaling
        # everything by 1/K leaves the shard likelihood at 1 and the prior at 1/K
        shard_model = handlers.scale(subsampled(model, plate, width, indices), scale=width / size)
        mcmc = MCMC(
            NUTS(shard_model, target_accept_prob=settings.target_accept),
            num_warmup=settings.num_warmup,
            num_samples=settings.num_samples,
            num_chains=num_chains,
            chain_method=chain_method(num_chains),
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(seed + k), *args, extra_fields=_SAMPLER_FIELDS, **kwargs)
        subposteriors.append(_latent_only(mcmc.get_samples(), plate))
        checked.append((_latent_only(mcmc.get_samples(group_by_chain=True), plate), _fields(mcmc)))
    combined = consensus(subposteriors, num_draws=settings.num_samples * max(num_chains, 1))
    draws = {k: np.asarray(v)[None] for k, v in combined.items()}
    detail = (
        f"consensus Monte Carlo: {shards} shards of {width} rows, prior tempered to 1/{shards} "
        "per shard, sub-posteriors combined by precision weighting"
    )
    return TallRun(draws, {"shards": checked}, time.perf_counter() - start, detail)


def shard_count(observations: int, shard_rows: int = 250_000) -> int:
    return max(2, math.ceil(observations / shard_rows))
