"""One NUTS run with given settings: draws, sampler fields, time.

Chains run in parallel when JAX has a device for each (``chain_method=
"parallel"``; on a CPU, ``jaxpro.use_cpu_cores(4)`` before any JAX work gives
four), otherwise vectorised in one program (``"vectorized"``), which on a CPU
is faster than running them one after another. Parallel chains of a large
model run in bounded segments instead of NumPyro's one program (``_chains``).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro.errors import ModelError

__all__ = ["NutsRun", "NutsSettings", "chain_method", "run_nuts"]

INIT_STRATEGIES = ("uniform", "median", "feasible", "sample")


@dataclass(frozen=True)
class NutsSettings:
    """Everything one NUTS attempt is run with.

    Attributes:
        num_warmup, num_samples: draws per chain (warm-up discarded).
        target_accept: NUTS's target acceptance probability.
        max_tree_depth: trajectory length limit (2**depth leapfrog steps).
        init: initialisation strategy (``INIT_STRATEGIES``), or a mapping
            ``{site: value}``: each chain starts near those values (see
            :func:`init_strategy`).
        noncentered: sites reparameterised with ``LocScaleReparam(centered=0)``.
        dense_mass: adapt a dense mass matrix.
    """

    num_warmup: int = 1000
    num_samples: int = 1000
    target_accept: float = 0.8
    max_tree_depth: int = 10
    init: Any = "uniform"  # a name in INIT_STRATEGIES, or {site: value}
    noncentered: tuple[str, ...] = ()
    dense_mass: bool = False

    def describe(self) -> str:
        text = (
            f"NUTS, {self.num_warmup} warm-up + {self.num_samples} draws per chain, "
            f"target accept {self.target_accept:g}, max tree depth {self.max_tree_depth}"
        )
        if self.noncentered:
            text += f", non-centred: {', '.join(self.noncentered)}"
        if isinstance(self.init, Mapping):
            text += ", chains started near given values"
        elif self.init != "uniform":
            text += f", init {self.init}"
        return text


@dataclass(frozen=True)
class NutsRun:
    draws: dict  # site -> (chains, draws, *shape), deterministic sites included
    extra: dict  # diverging, num_steps, energy: (chains, draws)
    seconds: float
    chain_method: str
    settings: NutsSettings = field(default_factory=NutsSettings)


def chain_method(num_chains: int, *, vectorizable: bool = True) -> str:
    """Parallel chains when there are devices for them, else vectorised.

    ``vectorizable=False`` for kernels NumPyro cannot vectorise over chains
    (HMCECS's Gibbs step): those run one chain after another instead.
    """
    import jax

    if jax.local_device_count() >= num_chains:
        return "parallel"
    return "vectorized" if vectorizable else "sequential"


INIT_RADIUS = 0.1  # chains started near given values: spread in the unconstrained space


def init_strategy(name):
    """The NumPyro init strategy called ``name`` (one of ``INIT_STRATEGIES``).

    A mapping ``{site: value}`` instead starts each chain at the value moved by a
    uniform draw in ``(-INIT_RADIUS, INIT_RADIUS)`` in the site's unconstrained space
    (about +-10% of a positive value), so chains start apart, as R-hat needs; sites
    not named start as with "uniform".
    """
    from numpyro.infer import init_to_feasible, init_to_median, init_to_sample, init_to_uniform

    if isinstance(name, Mapping):
        return _init_near(dict(name))

    return {
        "uniform": init_to_uniform,
        "median": init_to_median,
        "feasible": init_to_feasible,
        "sample": init_to_sample,
    }[name]


def _init_near(values: dict):
    # a functools.partial, as NumPyro's own strategies are: initialize_model reads .func
    return functools.partial(_near, values=values)


def _near(site=None, values=None):
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer import init_to_uniform

    if site is None:
        return functools.partial(_near, values=values)
    if (site["type"] != "sample" or site["is_observed"] or site["name"] not in values
            or site["fn"].support.is_discrete):  # fmt: skip
        return init_to_uniform(site)
    transform = biject_to(site["fn"].support)
    centre = transform.inv(jnp.broadcast_to(jnp.asarray(values[site["name"]], dtype=float),
                                            site["fn"].shape()))  # fmt: skip
    sample_shape = site["kwargs"].get("sample_shape") or ()
    shift = dist.Uniform(-INIT_RADIUS, INIT_RADIUS)(
        rng_key=site["kwargs"].get("rng_key"), sample_shape=tuple(sample_shape) + centre.shape
    )
    return transform(centre + shift)


def reparameterized(model: Callable, noncentered: tuple[str, ...]) -> Callable:
    if not noncentered:
        return model
    from numpyro.handlers import reparam
    from numpyro.infer.reparam import LocScaleReparam

    return reparam(model, config={name: LocScaleReparam(centered=0) for name in noncentered})


class InitializationError(ModelError):
    """NUTS found no valid initial parameters with this strategy."""


def run_nuts(
    model: Callable,
    args: tuple,
    kwargs: dict,
    settings: NutsSettings,
    *,
    num_chains: int,
    seed: int,
    progress: bool = False,
) -> NutsRun:
    """Run NUTS once. Call inside ``float64()``.

    Raises:
        InitializationError: no valid starting point was found.
    """
    import jax
    from numpyro.infer import MCMC, NUTS
    from numpyro.infer.util import initialize_model

    from jaxpro.bayes import _chains

    sampled = reparameterized(model, settings.noncentered)
    kernel = NUTS(
        sampled,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        init_strategy=init_strategy(settings.init),
        dense_mass=settings.dense_mass,
    )
    method = chain_method(num_chains)
    start = time.perf_counter()
    init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    # The starting points are found here, not inside MCMC: with a device per
    # chain NumPyro initialises under pmap, where its "cannot find valid
    # initial parameters" check cannot see the values, and the chains then
    # start from an invalid point and diverge at every step.
    keys = jax.random.split(init_key, num_chains) if num_chains > 1 else init_key
    try:
        start_point = initialize_model(
            keys,
            sampled,
            init_strategy=init_strategy(settings.init),
            model_args=args,
            model_kwargs=kwargs,
        ).param_info.z
    except Exception as exc:  # no valid start, or the model fails at this strategy's start
        raise InitializationError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if num_chains == 1:  # one key gave one point without a chain axis
        start_point = jax.tree.map(lambda v: v[None], start_point)
    one_chain = jax.tree.map(lambda v: v[0], start_point)
    iterations = settings.num_warmup + settings.num_samples
    if method == "parallel" and _chains.needs_segments(
        one_chain, settings.max_tree_depth, iterations
    ):
        # A device per chain and a large model: our segmented runner, not NumPyro's
        # one pmap program, whose memory grows with every leapfrog step on
        # jaxlib 0.12.1 (see _chains).
        with _progress_bar(progress, settings) as bar:
            draws, extra = _chains.run_segmented(
                kernel,
                args,
                kwargs,
                start_point,
                run_key,
                num_warmup=settings.num_warmup,
                num_samples=settings.num_samples,
                num_chains=num_chains,
                segment=_chains.segment_length(one_chain, settings.max_tree_depth),
                progress=bar,
            )
        return NutsRun(draws, extra, time.perf_counter() - start, method, settings)
    mcmc = MCMC(
        kernel,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        num_chains=num_chains,
        chain_method=method,
        progress_bar=progress and sys.stderr.isatty(),
    )
    mcmc.run(
        run_key,
        *args,
        init_params=start_point if num_chains > 1 else one_chain,
        extra_fields=("diverging", "num_steps", "energy"),
        **kwargs,
    )
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return NutsRun(draws, extra, time.perf_counter() - start, method, settings)


@contextmanager
def _progress_bar(progress: bool, settings: NutsSettings):
    """A ``progress(done, total)`` callback drawing a bar on a terminal, else None."""
    if not (progress and sys.stderr.isatty()):
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(
        total=settings.num_warmup + settings.num_samples, desc="NUTS", file=sys.stderr
    ) as bar:
        yield lambda done, total: bar.update(done - bar.n)
