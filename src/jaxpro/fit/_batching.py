"""Conditional work that stays conditional under ``vmap``.

Under ``jax.vmap`` a ``lax.cond`` on a batched predicate computes both branches
for every row and selects. When one branch is costly and rarely needed (the
SVD-based trust-region solve of LM, taken only when the Gauss-Newton step
leaves the trust region), that makes every row pay for it. :func:`only_where`
instead gathers the rows that need it into a small block, computes the costly
branch on that block alone and gathers the answers back into place; outside ``vmap`` it
is a plain ``lax.cond``. :func:`for_rows` is the loop over such blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["for_rows", "only_where", "store_finished"]

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

        def answer(take, slot, out):
            gathered = jax.tree.map(lambda a: a[jnp.minimum(take, axis_size - 1)], operands)
            answers = jax.tree.leaves(jax.vmap(fn)(*gathered))
            # each row reads its answer (a gather), no scatter: see for_rows
            here = slot >= 0
            source = jnp.maximum(slot, 0)

            def placed(o, a):
                mask = here.reshape(here.shape + (1,) * (o.ndim - 1))
                return jnp.where(mask, a[source], o)

            return [placed(o, a) for o, a in zip(out, answers, strict=True)]

        return for_rows(pred, answer, out, block=block), [True] * len(out)

    return jax.tree.unflatten(tree, choose(pred, flat, operands))


def for_rows(mask, update: Callable, value, *, block: int = BLOCK):
    """Apply ``update(rows, slot, value)`` to blocks of the rows where ``mask`` holds.

    Args:
        mask: ``(n,)`` bools.
        update: ``update(rows, slot, value) -> value``; ``rows`` is ``(block,)``
            row indices where ``mask`` holds, in order, padded with ``n`` (to
            drop: clamp and ignore); ``slot`` is ``(n,)``: for each row, its
            position in ``rows``, or -1 where it is not in this block (so an
            update can gather, ``answers[slot]``, rather than scatter). A block
            may repeat rows of the previous one (the last window is moved back
            to fit), so the update must give the same result when applied twice.
        value: the carried value (a pytree).
        block: rows per call (at most ``n``).

    Returns:
        ``value`` after every row was covered; untouched when no row is set.

    Nothing here scatters: XLA's CPU backend compiles a loop without scatters
    (and without library calls) into one kernel, sparing the dispatch of each
    of its operations on every iteration.
    """
    n = mask.shape[0]
    width = min(block, n)
    count = jnp.sum(mask, dtype=jnp.int32)
    position = jnp.cumsum(mask, dtype=jnp.int32) - 1
    # the k-th flagged row is the first whose running count exceeds k (a binary search)
    rows = jnp.searchsorted(
        position, jnp.arange(n, dtype=jnp.int32), side="left", method="scan_unrolled"
    ).astype(jnp.int32)
    rows = jnp.where(jnp.arange(n) < count, rows, n)

    def body(carry):
        start, value = carry
        first = jnp.minimum(start, n - width)  # where dynamic_slice puts the window
        offset = position - first
        slot = jnp.where(mask & (offset >= 0) & (offset < width), offset, -1)
        return start + width, update(lax.dynamic_slice(rows, (start,), (width,)), slot, value)

    return lax.while_loop(lambda c: c[0] < count, body, (jnp.zeros((), jnp.int32), value))[1]


def store_finished(store, done, index, rows):
    """``store[index[s]] = rows[s]`` for every slot ``s`` where ``done`` holds.

    Args:
        store: a pytree of arrays with a leading axis of fits.
        done: ``(slots,)`` bools: the slots whose fit finished.
        index: ``(slots,)`` each slot's fit (a row of ``store``).
        rows: a pytree like ``store`` with a leading axis of slots.

    Returns:
        ``store`` with the finished slots' rows written. Row by row, found by a
        binary search over the running count of finished slots: a loop of
        in-place updates, not a scatter, so the solver loop around it stays one
        XLA kernel (see :func:`for_rows`).
    """
    slots = done.shape[0]
    order = jnp.searchsorted(
        jnp.cumsum(done, dtype=jnp.int32) - 1,
        jnp.arange(slots, dtype=jnp.int32),
        side="left",
        method="scan_unrolled",
    )

    def write(k, store):
        s = order[k]
        return jax.tree.map(
            lambda st, v: lax.dynamic_update_index_in_dim(
                st, lax.dynamic_index_in_dim(v, s), index[s], 0
            ),
            store,
            rows,
        )

    return lax.fori_loop(0, jnp.sum(done, dtype=jnp.int32), write, store)
