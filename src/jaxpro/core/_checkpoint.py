"""Checkpoints of a pytree with its step and metadata, on Orbax: atomic, the last K kept.

A long simulation or fit saves its state every so often and, after a crash or
a pre-empted job, starts again from the last complete checkpoint. Orbax
writes each step into a temporary folder and renames it into place only when
everything is on disk, so a process killed mid-save leaves the previous steps
intact and the half-written one is never restored. jaxpro adds the step and
metadata (JSON: the caller's, plus when it was written and by which jaxpro) to
every checkpoint and checks its arguments.

Layout: ``directory/<step>/state`` (the arrays) and ``directory/<step>/metadata``.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxpro.errors import InputError

__all__ = ["Restored", "checkpoint_steps", "restore_checkpoint", "save_checkpoint"]


@dataclass(frozen=True)
class Restored:
    """A restored checkpoint.

    Attributes:
        step: the step it was saved at.
        tree: the pytree (NumPy arrays, or shaped like ``like`` when given).
        metadata: the caller's metadata plus ``step``, ``saved_at`` (UTC, ISO 8601)
            and ``jaxpro`` (version).
    """

    step: int
    tree: Any
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_directory(directory: Any) -> Path:
    if not isinstance(directory, str | Path) or not str(directory):
        raise InputError("must be a folder path", argument="directory", received=directory)
    return Path(directory).absolute()


def _manager(directory: Path, keep: int | None):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=False, create=True
    )
    return ocp.CheckpointManager(directory, options=options)


def save_checkpoint(
    directory: str | Path,
    step: int,
    tree: Any,
    *,
    metadata: dict[str, Any] | None = None,
    keep: int | None = 3,
) -> Path:
    """Save ``tree`` as checkpoint ``step`` in ``directory``; keep the last ``keep`` steps.

    Args:
        directory: the checkpoint folder (created if needed).
        step: a non-negative integer, larger than every step already saved.
        tree: a pytree of arrays (NumPy or JAX) and scalars.
        metadata: JSON-serialisable facts to keep with it (settings, seeds, units).
        keep: how many of the most recent steps to keep (None: all).

    Returns:
        The step's folder.

    Raises:
        InputError: a bad ``directory``, ``step``, ``keep`` or ``metadata``, or
            ``step`` not after the last saved step.
    """
    import jaxpro

    folder = _check_directory(directory)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError("must be a non-negative integer", argument="step", received=step)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise InputError("must be a positive integer or None", argument="keep", received=keep)
    if not isinstance(metadata, dict | type(None)):
        raise InputError("must be a dict", argument="metadata", received=metadata)
    info = dict(metadata or {})
    info.update(
        step=step,
        saved_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        jaxpro=jaxpro.__version__,
    )
    try:
        json.dumps(info)
    except (TypeError, ValueError) as error:
        raise InputError(f"must be JSON-serialisable ({error})", argument="metadata") from None
    import orbax.checkpoint as ocp

    manager = _manager(folder, keep)
    try:
        last = manager.latest_step()
        if last is not None and step <= last:
            raise InputError(
                f"must be after the last saved step ({last})", argument="step", received=step
            )
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), metadata=ocp.args.JsonSave(info)
            ),
            force=True,
        )
        manager.wait_until_finished()
    finally:
        manager.close()
    return folder / str(step)


def checkpoint_steps(directory: str | Path) -> list[int]:
    """The complete checkpoints in ``directory``, oldest first ([] when there are none)."""
    folder = _check_directory(directory)
    if not folder.is_dir():
        return []
    manager = _manager(folder, None)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def restore_checkpoint(
    directory: str | Path, step: int | None = None, *, like: Any = None
) -> Restored:
    """Restore checkpoint ``step`` (default: the last complete one) from ``directory``.

    Args:
        directory: the checkpoint folder.
        step: which step; None for the latest.
        like: optionally a pytree of the same structure whose arrays give the
            restored arrays' type, dtype and sharding (e.g. JAX arrays on devices).

    Returns:
        A :class:`Restored` with ``step``, ``tree`` and ``metadata``.

    Raises:
        InputError: the folder holds no complete checkpoint, or not ``step``.
    """
    import orbax.checkpoint as ocp

    folder = _check_directory(directory)
    steps = checkpoint_steps(folder)
    if not steps:
        raise InputError("holds no complete checkpoint", argument="directory", received=str(folder))
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise InputError(f"is not saved here (steps: {steps})", argument="step", received=step)
    manager = _manager(folder, None)
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(like), metadata=ocp.args.JsonRestore()
            ),
        )
    finally:
        manager.close()
    return Restored(step=step, tree=restored["state"], metadata=dict(restored["metadata"]))
