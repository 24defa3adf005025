"""Conditional work that stays conditional under ``vmap``.

Under ``jax.vmap`` a ``lax.cond`` on a batched predicate computes both branches
for every row and selects. When one branch is costly and rarely needed (the
SVD-based trust-region solve of LM, taken only when the Gauss-Newton step
leaves the trust region), that makes every row pay for it. :func:`only_where`
instead gathers the rows that need it into a small block, computes the costly
branch on that block alone and scatters the answers back; outside ``vmap`` it
is a plain ``lax.cond``. :func:`for_rows` is the loop over such blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["for_rows", "only_where"]

# Rows computed together by the costly branch: enough for the few rows of a
# batch of ~1,000 fits that need it per step, small next to the batch.
BLOCK = 64


def only_where(pred, fn: Callable[..., Any], otherwise, *operands, block: int = BLOCK):
    """``fn(*operands)`` where ``pred`` holds, ``otherwise`` elsewhere.

    Args:
        pred: scalar bool.
        fn: the costly branch; returns a pytree shaped like ``otherwise``.
        otherwise: the value where ``pred`` is false (already computed).
        operands: arrays ``fn`` reads.
        block: under ``vmap``, rows passed to ``fn`` at a time.

    Returns:
        A pytree shaped like ``otherwise``. Outside ``vmap`` this is
        ``lax.cond``; under ``vmap`` ``fn`` runs on blocks of the rows where
        ``pred`` holds (none at all when no row needs it), in order, until all
        are done: the result is the same as computing it everywhere.
    """
    flat, tree = jax.tree.flatten(otherwise)

    @jax.custom_batching.custom_vmap
    def choose(pred, flat, operands):
        return lax.cond(pred, lambda: jax.tree.leaves(fn(*operands)), lambda: list(flat))

    @choose.def_vmap
    def _rule(axis_size, in_batched, pred, flat, operands):
        pred_b, flat_b, operands_b = in_batched

        def batched(value, is_batched):
            return value if is_batched else jnp.broadcast_to(value, (axis_size, *jnp.shape(value)))

        pred = batched(pred, pred_b)
        out = [batched(v, b) for v, b in zip(flat, flat_b, strict=True)]
        operands = jax.tree.map(batched, operands, operands_b)

        def answer(take, out):
            gathered = jax.tree.map(lambda a: a[jnp.minimum(take, axis_size - 1)], operands)
            answers = jax.tree.leaves(jax.vmap(fn)(*gathered))
            return [o.at[take].set(a, mode="drop") for o, a in zip(out, answers, strict=True)]

        return for_rows(pred, answer, out, block=block), [True] * len(out)

    return jax.tree.unflatten(tree, choose(pred, flat, operands))


def for_rows(mask, update: Callable, value, *, block: int = BLOCK):
    """Apply ``update(rows, value)`` to blocks of the rows where ``mask`` holds.

    Args:
        mask: ``(n,)`` bools.
        update: ``update(rows, value) -> value``; ``rows`` is ``(block,)`` row
            indices where ``mask`` holds, in order, padded with ``n`` (to drop:
            index with ``mode="drop"`` or clamp). A block may repeat rows of the
            previous one (the last window is moved back to fit), so the update
            must give the same result when applied twice.
        value: the carried value (a pytree).
        block: rows per call (at most ``n``).

    Returns:
        ``value`` after every row was covered; untouched when no row is set.
    """
    n = mask.shape[0]
    width = min(block, n)
    count = jnp.sum(mask, dtype=jnp.int32)
    position = jnp.where(mask, jnp.cumsum(mask, dtype=jnp.int32) - 1, n)
    rows = jnp.full(n, n, jnp.int32).at[position].set(jnp.arange(n, dtype=jnp.int32), mode="drop")

    def body(carry):
        start, value = carry
        return start + width, update(lax.dynamic_slice(rows, (start,), (width,)), value)

    return lax.while_loop(lambda c: c[0] < count, body, (jnp.zeros((), jnp.int32), value))[1]
