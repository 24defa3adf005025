"""Checkpointed MD runs: the full state saved with Orbax, a killed run resumed exactly.

A checkpoint holds everything the next step depends on, so a resumed run
repeats the uninterrupted one bit for bit:

- the integrator state (positions, momenta, forces, mass; for NVT the
  Nose-Hoover chain's positions, momenta, masses and kinetic energy), as the
  leaves of its pytree;
- the neighbour list (indices, reference positions, error flags) and its
  static sizes (capacity, cell-list capacity);
- the step, the PRNG key, and the records so far (so the trajectory of the
  resumed run is complete);
- a fingerprint of the system and settings: a checkpoint of another run is
  refused rather than silently continued.

Checkpoints are written at chunk ends through :mod:`jaxpro.core` (atomic
Orbax saves, the last two kept); NaN or an exploding energy stops the run
before a bad chunk is saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxpro.errors import InputError

__all__ = ["Resume", "fingerprint", "load", "save"]

KEEP = 2


@dataclass(frozen=True)
class Resume:
    """A run's state at a checkpoint."""

    step: int
    state_leaves: list
    neighbor_leaves: list | None
    neighbor_sizes: tuple | None
    records: dict[str, np.ndarray]


def fingerprint(system, settings, precision: str, uses_lists: bool, skin: float) -> str:
    """A digest of what determines the trajectory (the step count excluded: runs can extend)."""
    potential = system.potential
    description = {
        "positions": hashlib.sha256(np.ascontiguousarray(system.positions).tobytes()).hexdigest(),
        "velocities": hashlib.sha256(np.ascontiguousarray(system.velocities).tobytes()).hexdigest(),
        "box": system.box, "mass": system.mass, "seed": system.seed,
        "potential": None if potential is None else [potential.kind, potential.form,
                                                      sorted(potential.params.items()),
                                                      potential.cutoff, potential.onset],
        "energy": None if system.energy is None else getattr(system.energy, "__qualname__", "?"),
        "ensemble": settings.ensemble, "dt": settings.dt, "kT": settings.kT, "tau": settings.tau,
        "pressure": settings.pressure, "tau_p": settings.tau_p,
        "record_every": settings.record_every, "precision": precision, "lists": uses_lists,
        "skin": skin,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def save(directory: Path, step: int, state, neighbors, records: dict, print_: str) -> None:
    """Write the checkpoint of ``step`` (atomic; the last ``KEEP`` kept)."""
    import jax

    from jaxpro.core import save_checkpoint

    tree = {
        "state": [np.asarray(leaf) for leaf in jax.tree.leaves(state)],
        "records": {k: np.asarray(v) for k, v in records.items()},
    }
    metadata = {"fingerprint": print_, "step": step}
    if neighbors is not None:
        tree["neighbors"] = [np.asarray(leaf) for leaf in jax.tree.leaves(neighbors)]
        metadata["neighbor_sizes"] = [neighbors.capacity, neighbors.cell_capacity]
    save_checkpoint(directory, step, tree, metadata=metadata, keep=KEEP)


def load(directory: Path, print_: str, steps: int) -> Resume | None:
    """The latest checkpoint of this run in ``directory``, or None when there is none.

    Raises:
        InputError: the checkpoints belong to another run, or go past ``steps``.
    """
    from jaxpro.core import checkpoint_steps, restore_checkpoint

    if not checkpoint_steps(directory):
        return None
    restored = restore_checkpoint(directory)
    meta = restored.metadata
    if meta.get("fingerprint") != print_:
        raise InputError(
            "holds checkpoints of another run (different system or settings): use a new"
            " folder, or delete it to start over",
            argument="checkpoint_dir",
            received=str(directory),
        )
    if restored.step > steps:
        raise InputError(
            f"holds a checkpoint at step {restored.step}, past the {steps} steps asked for",
            argument="checkpoint_dir",
            received=str(directory),
        )
    tree: dict[str, Any] = restored.tree
    sizes = meta.get("neighbor_sizes")
    return Resume(
        step=restored.step,
        state_leaves=list(tree["state"]),
        neighbor_leaves=list(tree["neighbors"]) if "neighbors" in tree else None,
        neighbor_sizes=tuple(sizes) if sizes is not None else None,
        records={k: np.asarray(v) for k, v in tree["records"].items()},
    )


def rebuild(template_state, template_neighbors, resume: Resume):
    """The saved state and neighbour list, in the pytree structure of fresh ones."""
    import jax
    import jax.numpy as jnp

    state = jax.tree.unflatten(
        jax.tree.structure(template_state), [jnp.asarray(x) for x in resume.state_leaves]
    )
    neighbors = None
    if template_neighbors is not None:
        _, cell_capacity = resume.neighbor_sizes  # the capacity is the saved indices' shape
        shaped = dataclasses.replace(template_neighbors, cell_capacity=cell_capacity)
        neighbors = jax.tree.unflatten(
            jax.tree.structure(shaped), [jnp.asarray(x) for x in resume.neighbor_leaves]
        )
    return state, neighbors
