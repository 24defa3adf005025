"""Checkpoints of a flow run (``simulate(..., checkpoint_dir=DIR)``), on ``jaxpro.core``'s
Orbax checkpoints: atomic, the last three kept.

A checkpoint holds the solver state, the records so far and the loop's clock
(time, steps taken, dt, steps per record, dt halvings), so a resumed run goes
on exactly as the uninterrupted one would have: the same compiled program, the
same dt, the same numbers bit for bit. Its metadata carries a fingerprint of
the run's settings; a folder written by another run is refused rather than
silently continued.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxpro.errors import InputError

__all__ = ["Resume", "fingerprint", "load", "save"]

KEEP = 3


@dataclass(frozen=True)
class Resume:
    """Where a run starts again: its state, records and clock."""

    state: Any
    rows: dict[str, list[float]]
    t: float
    taken: int
    dt: float
    steps: int
    halvings: int
    record: int
    steady: bool | None
    frames: list
    frame_times: list


def fingerprint(settings: dict[str, Any], field: np.ndarray | None) -> str:
    """A digest of everything that makes a run what it is (the start field included)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    if field is not None:
        digest.update(np.ascontiguousarray(field, dtype=np.float64).tobytes())
    return digest.hexdigest()[:32]


def save(directory: Path, record: int, state, records, clock: dict, print_: str) -> None:
    """Save the run after record ``record`` (the checkpoint's step number).

    ``records``: the loop's records (their rows, vorticity frames and frame times).
    """
    from jaxpro.core._checkpoint import save_checkpoint

    rows = records.rows
    tree = {
        "state": state,
        "records": {key: np.asarray(values, dtype=np.float64) for key, values in rows.items()},
    }
    if records.frames:  # Orbax refuses zero-size arrays: no frames, no entry
        tree["frames"] = np.stack(records.frames)
        tree["frame_times"] = np.asarray(records.frame_times, dtype=np.float64)
    save_checkpoint(directory, record, tree, keep=KEEP,
                    metadata={"fingerprint": print_, "clock": clock})  # fmt: skip


def load(directory: Path, print_: str, like_state) -> Resume | None:
    """The last checkpoint in ``directory`` (None when it has none).

    Raises:
        InputError: the folder holds checkpoints of another run.
    """
    from jaxpro.core._checkpoint import checkpoint_steps, restore_checkpoint

    if not directory.exists() or not checkpoint_steps(directory):
        return None
    restored = restore_checkpoint(directory)
    if restored.metadata.get("fingerprint") != print_:
        raise InputError(
            "holds checkpoints of another run (different flow, grid, viscosity, t_end, dt,"
            " method or precision); use an empty folder or the run's own settings",
            argument="checkpoint_dir", received=str(directory),
        )  # fmt: skip
    import jax
    import jax.numpy as jnp

    # Orbax gives tuples back as lists: rebuild the engine's own structure
    likes, structure = jax.tree_util.tree_flatten(like_state)
    saved = jax.tree_util.tree_leaves(restored.tree["state"])
    state = jax.tree_util.tree_unflatten(
        structure, [jnp.asarray(a, dtype=b.dtype) for a, b in zip(saved, likes, strict=True)]
    )
    clock = restored.metadata["clock"]
    rows = {key: list(np.asarray(values)) for key, values in restored.tree["records"].items()}
    return Resume(state=state, rows=rows, t=float(clock["t"]), taken=int(clock["taken"]),
                  dt=float(clock["dt"]), steps=int(clock["steps"]),
                  halvings=int(clock["halvings"]), record=restored.step,
                  steady=clock.get("steady"),
                  frames=list(np.asarray(restored.tree.get("frames", np.zeros((0, 1, 1))))),
                  frame_times=list(np.asarray(restored.tree.get("frame_times", [])))
                  )  # fmt: skip
