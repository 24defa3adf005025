"""Subsampling a model's data plate from the outside.

A model whose data plate reads its data through ``numpyro.subsample`` (or
indexes by the plate's indices) can be run on part of its data without
changing its code: :class:`SubsamplePlate` rewrites the plate's size request,
and NumPyro's plate does the rest (it picks the indices and rescales the
likelihood by ``size / subsample_size``). jaxpro uses this for HMCECS
(random subsamples, proposed by the kernel) and consensus Monte Carlo (fixed
contiguous shards).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from numpyro.primitives import Messenger

from jaxpro.bayes._model import trace_model

__all__ = ["SubsamplePlate", "data_plate", "subsample_aware", "subsampled"]


class SubsamplePlate(Messenger):
    """Ask plate ``name`` for ``size`` elements, at ``indices`` when given."""

    def __init__(self, name: str, size: int, indices=None):
        super().__init__()
        self.plate, self.size, self.indices = name, size, indices

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["name"] == self.plate:
            msg["args"] = (msg["args"][0], self.size)
            # a plate without a subsample size arrives with its indices filled
            # in (all of them); None makes NumPyro draw ``size`` of them
            msg["value"] = self.indices


def subsampled(model: Callable, plate: str, size: int, indices=None) -> Callable:
    """``model`` with plate ``plate`` subsampled to ``size`` (at ``indices`` if given)."""

    def wrapped(*args, **kwargs):
        import jax.numpy as jnp

        chosen = None if indices is None else jnp.asarray(indices)
        with SubsamplePlate(plate, size, chosen):
            return model(*args, **kwargs)

    return wrapped


def data_plate(model: Callable, args, kwargs) -> tuple[str, int] | None:
    """The plate holding the most observations: ``(name, size)``, or None."""
    trace = trace_model(model, args, kwargs, 0)
    counts: dict[str, tuple[int, int]] = {}
    for site in trace.values():
        if site["type"] == "sample" and site["is_observed"]:
            for frame in site["cond_indep_stack"]:
                size = int(frame.size)
                n_obs = int(np.prod(np.shape(site["value"])))
                total, _ = counts.get(frame.name, (0, size))
                counts[frame.name] = (total + n_obs, size)
    if not counts:
        return None
    name = max(counts, key=lambda k: counts[k][0])
    return name, counts[name][1]


def subsample_aware(model: Callable, args, kwargs, plate: str, size: int) -> bool:
    """Whether ``model`` really reads only the subsample when its plate is subsampled."""
    probe = max(1, min(size - 1, 7))
    try:
        with warnings.catch_warnings():  # a model that is not aware makes NumPyro warn here
            warnings.simplefilter("ignore")
            trace = trace_model(subsampled(model, plate, probe), args, kwargs, 0)
    except Exception:  # a model that indexes its full data by position breaks here: not aware
        return False
    for site in trace.values():
        if site["type"] == "sample" and site["is_observed"]:
            for frame in site["cond_indep_stack"]:
                if frame.name == plate:
                    shape = np.shape(site["value"])
                    dim = frame.dim if frame.dim is not None else -1
                    event = len(site["fn"].event_shape)
                    axis = len(shape) + dim - event
                    if not (0 <= axis < len(shape)) or shape[axis] != probe:
                        return False
    return True
