"""``checkpointed_scan``: ``lax.scan`` whose gradient needs memory O(sqrt(length)), not O(length).

Reverse-mode differentiation of a plain scan keeps every step's carry (and
intermediates) for the backward pass, so a gradient through 10^6 MD or ODE
steps runs out of memory long before it runs out of time. Here the loop is
cut into segments of ``segment`` steps: an outer scan over segments keeps
only the carry at each segment boundary, and each segment is rematerialised
(``jax.checkpoint``) when the backward pass reaches it. With the default
``segment = ceil(sqrt(length))`` the stored state is about
``length/segment + segment = 2 sqrt(length)`` carries, for about one extra
forward pass of compute. The values and gradients are those of ``lax.scan``:
the same steps in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from jaxpro.errors import InputError

__all__ = ["checkpointed_scan", "segment_length"]


def segment_length(length: int) -> int:
    """The default segment: ``ceil(sqrt(length))`` steps (at least 1)."""
    return max(1, math.isqrt(max(length - 1, 0)) + 1) if length > 1 else 1


def checkpointed_scan(
    f: Callable,
    init: Any,
    xs: Any = None,
    length: int | None = None,
    *,
    segment: int | None = None,
    policy: Callable | None = None,
) -> tuple[Any, Any]:
    """``lax.scan(f, init, xs, length)`` with gradients in O(sqrt(length)) memory.

    Args:
        f: ``f(carry, x) -> (carry, y)`` as for ``lax.scan``.
        init: the initial carry (a pytree).
        xs: per-step inputs (pytree, leading axis ``length``) or None.
        length: number of steps; required when ``xs`` is None, else checked.
        segment: steps per rematerialised segment (default
            :func:`segment_length`); ``segment=length`` is one checkpoint
            around the whole loop, ``segment=1`` checkpoints every step.
        policy: a ``jax.checkpoint_policies`` policy for what each segment may
            keep (default: nothing but its input carry).

    Returns:
        ``(carry, ys)`` exactly as ``lax.scan`` returns them.

    Raises:
        InputError: ``f`` is not callable, ``length`` is missing, negative or
            disagrees with ``xs``, or ``segment`` is not a positive integer.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    if not callable(f):
        raise InputError("must be a callable f(carry, x) -> (carry, y)", argument="f", received=f)
    leaves = jax.tree.leaves(xs)
    if leaves:
        lengths = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
        if -1 in lengths or len(lengths) != 1:
            raise InputError(
                "every leaf needs the same leading (step) axis", argument="xs", received=xs
            )
        (steps,) = lengths
        if length is not None and length != steps:
            raise InputError(f"is {length} but xs has {steps} steps", argument="length")
    elif length is None:
        raise InputError("is needed when xs is None", argument="length")
    else:
        steps = length
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InputError("must be a non-negative integer", argument="length", received=steps)
    if segment is None:
        segment = segment_length(steps)
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise InputError("must be a positive integer", argument="segment", received=segment)
    segment = min(segment, max(steps, 1))
    full, tail = divmod(steps, segment)

    def run(carry, seg_xs, n):
        return lax.scan(f, carry, seg_xs, length=n)

    # Each segment keeps only its input carry; its steps are recomputed in the
    # backward pass (prevent_cse stays on: inside a scan it is what stops XLA
    # from merging the recomputation back into the forward pass).
    segment_run = jax.checkpoint(lambda c, x: run(c, x, segment), policy=policy)
    main = jax.tree.map(
        lambda a: jnp.reshape(a[: full * segment], (full, segment, *jnp.shape(a)[1:])), xs
    )
    carry, ys = lax.scan(segment_run, init, main, length=full)
    ys = jax.tree.map(lambda a: jnp.reshape(a, (full * segment, *jnp.shape(a)[2:])), ys)
    if tail:
        rest = jax.tree.map(lambda a: a[full * segment :], xs)
        tail_run = jax.checkpoint(lambda c, x: run(c, x, tail), policy=policy)
        carry, ys_tail = tail_run(carry, rest)
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
    return carry, ys
