"""What a NumPyro model is made of, read off two traces: observations, parameters, hierarchy.

jaxpro chooses the inference method by the number of observations, sizes its
guide by the number of parameters, and non-centres hierarchical sites only
where the data are weak; all three come from running the model twice under
``numpyro.handlers.trace`` with different random draws (nothing is fitted).
The same traces check the data: NaN or non-numeric observations, and
observations the likelihood declares impossible (a negative Poisson count),
fail here with the site named, before any sampling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxpro.bayes._nuts import INIT_STRATEGIES, init_strategy
from jaxpro.errors import InputError, ModelError

__all__ = ["ModelInfo", "inspect_model", "trace_model"]

# Distributions LocScaleReparam can non-centre.
_LOC_SCALE = ("Normal", "StudentT", "Cauchy", "Laplace", "Gumbel", "Logistic", "SoftLaplace")


@dataclass(frozen=True)
class ModelInfo:
    """The structure of a model at given data.

    Attributes:
        observations: number of observed values (elements of observed sites).
        observed: observed site name -> shape.
        latent: latent sample site name -> shape.
        parameters: number of latent values.
        plates: plate name -> size.
        hierarchical: latent loc-scale sites whose location or scale depends on
            other latent values (candidates for non-centring).
    """

    observations: int
    observed: dict
    latent: dict
    parameters: int
    plates: dict
    hierarchical: tuple[str, ...]


def _base_name(fn) -> str:
    """The distribution's family name, looking through expand/Independent/masked wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def _loc_scale(fn):
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return getattr(fn, "loc", None), getattr(fn, "scale", None)


def trace_model(model: Callable, args, kwargs, seed: int, strategy: str | None = None):
    """A trace with latent values drawn as NUTS initialises them (improper priors included).

    ``strategy`` None tries NUTS's own start (uniform on (-2, 2) unconstrained)
    first and, where the model fails there (``log(x - 5)`` for an ``x`` near
    10), the prior median, then a prior draw, as sampling's init fallbacks do;
    the first failure is raised when every start fails (the model itself is
    broken). A named strategy is tried alone.
    """
    if strategy is None:
        first = None
        for name in INIT_STRATEGIES:
            try:
                return trace_model(model, args, kwargs, seed, name)
            except Exception as error:  # the model's own error, whatever its type
                first = first or error
        raise first

    from numpyro import handlers

    seeded = handlers.seed(model, rng_seed=seed)
    traced = handlers.trace(handlers.substitute(seeded, substitute_fn=init_strategy(strategy)))
    return traced.get_trace(*args, **kwargs)


def _trace(model: Callable, args, kwargs, seed: int):
    """``trace_model``, its failures turned into a ModelError naming where the model stopped."""
    import numpyro

    class _Recorder(numpyro.primitives.Messenger):
        def __init__(self):
            super().__init__()
            self.visited: list[str] = []

        def process_message(self, msg):
            if msg["type"] in ("sample", "deterministic", "param", "plate"):
                self.visited.append(msg["name"])

    first = None
    for strategy in INIT_STRATEGIES:
        recorder = _Recorder()
        try:
            with recorder:
                return trace_model(model, args, kwargs, seed, strategy)
        except InputError:
            raise
        except Exception as exc:  # the model's own error, whatever its type
            first = first or (exc, recorder.visited)
    exc, visited = first
    # the failing statement comes after the last site the model reached
    where = f" after site {visited[-1]!r}" if visited else " before its first site"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    fix = ""
    if "TracerArrayConversion" in text or "numpy" in text.lower():
        fix = "; write the model with jax.numpy, not NumPy"
    raise ModelError(f"the model failed when run{where}: {text}{fix}") from exc


def inspect_model(model: Callable, args=(), kwargs=None) -> ModelInfo:
    """Trace ``model(*args, **kwargs)`` twice and describe it; check the observed data.

    Raises:
        InputError: observed values that are NaN/Inf, not numeric, or impossible
            under their likelihood (the message names the site and the index).
        ModelError: the model fails when run (the message names the site).
    """
    import jax

    kwargs = kwargs or {}
    with jax.enable_x64(True):
        first = _trace(model, args, kwargs, 0)
        second = _trace(model, args, kwargs, 1)
        observed, latent, plates = {}, {}, {}
        hierarchical = []
        for name, site in first.items():
            if site["type"] == "plate":
                plates[name] = int(site["args"][0])
                continue
            if site["type"] != "sample":
                continue
            value = np.asarray(site["value"])
            if site["is_observed"]:
                _check_observed(name, site, value)
                observed[name] = value.shape
                continue
            latent[name] = value.shape
            if _base_name(site["fn"]) in _LOC_SCALE and name in second:
                loc1, scale1 = _loc_scale(site["fn"])
                loc2, scale2 = _loc_scale(second[name]["fn"])
                moved = any(
                    a is not None and not np.allclose(np.asarray(a), np.asarray(b))
                    for a, b in ((loc1, loc2), (scale1, scale2))
                )
                if moved:  # its prior depends on other latent values: a hierarchy
                    hierarchical.append(name)
    if not observed:
        raise InputError(
            "the model has no observed sites (pass the data, e.g. obs=y, to numpyro.sample)",
            argument="model",
        )
    return ModelInfo(
        observations=int(sum(int(np.prod(s)) for s in observed.values())),
        observed=observed,
        latent=latent,
        parameters=int(sum(int(np.prod(s)) for s in latent.values())),
        plates=plates,
        hierarchical=tuple(hierarchical),
    )


def _check_observed(name: str, site, value: np.ndarray) -> None:
    if value.dtype.kind not in "biuf":
        raise InputError(
            f"observed data of site {name!r} must be numeric", argument=name, received=value
        )
    bad = ~np.isfinite(value)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"observed data of site {name!r} has {int(bad.sum())} NaN/Inf value(s), first at index "
            f"{index if len(index) > 1 else index[0]}; drop or impute them before sampling",
            argument=name,
        )
    fn = site["fn"]
    with warnings.catch_warnings():  # NumPyro warns of out-of-support values: reported below
        warnings.simplefilter("ignore")
        log_prob = np.asarray(fn.log_prob(site["value"]))
    impossible = ~np.isfinite(log_prob)
    try:  # out-of-support values do not always give -inf (e.g. a Bernoulli y = 2)
        inside = np.broadcast_to(np.asarray(fn.support(site["value"])), impossible.shape)
        impossible = impossible | ~inside
    except (NotImplementedError, ValueError, TypeError):
        pass
    if impossible.any():
        index = tuple(int(i) for i in np.argwhere(impossible)[0])
        flat = index if len(index) > 1 else index[0]
        shown = (value[index] if value.ndim else value).item()
        raise InputError(
            f"observed value {shown!r} at index {flat} of site {name!r} is impossible under its "
            f"{_base_name(site['fn'])} likelihood (log-probability {log_prob[index]}); check the data "
            "or the likelihood's support",
            argument=name,
        )
