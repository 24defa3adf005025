"""The compact Levenberg-Marquardt of :mod:`jaxpro.fit._compact` as one fit's program.

``jaxpro.fit`` and ``curve_fit`` run it first for single fits (see
``_orchestrate._compact_first``); ``fit_many`` runs the queued form,
:func:`jaxpro.fit._compact.run_fn`. The iteration, its tests and its raw row
are :mod:`jaxpro.fit._compact`'s; here are the stages around it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxpro.fit._compact import _LAMBDA0, _LAMBDA_WARM, _advance, _Slot
from jaxpro.fit._pass import _symmetric, chunk_sums, ranged_chunk_sums

__all__ = ["single_fn"]


def _fresh(theta0, lam0) -> _Slot:
    """A slot at the start of one fit (or of its second stage): ``theta0``, damping ``lam0``."""
    p, dtype = theta0.shape[0], theta0.dtype
    zero = jnp.zeros((), dtype)
    return _Slot(
        curve=jnp.zeros((), jnp.int32),
        alive=jnp.asarray(True),
        fresh=jnp.asarray(True),
        final=jnp.asarray(False),
        theta=theta0,
        A=jnp.eye(p, dtype=dtype),
        g=jnp.zeros((p,), dtype),
        c=zero,
        lam=zero + lam0,
        nu=zero + 2.0,
        status=jnp.zeros((), jnp.int32),
        nfev=jnp.zeros((), jnp.int32),
        nit=jnp.zeros((), jnp.int32),
    )


def single_fn(program):
    """``run(datas, vectors, reference, knobs) -> raw row`` for one fit (``jaxpro.fit``'s signature).

    The same iteration as :func:`run_fn` on one curve, with no queue around it:
    per stage one ``while`` loop over the evaluations (a direct block, or
    chunks accumulated in a scan). With two stages the first is the warm
    start on a subsample: the second starts from its answer where it
    converged, else from ``x0``, as the full engine's stages hand on.
    ``vectors`` is ``(x0, lb, ub, x_scale)``, ``knobs`` one row per stage as
    :func:`jaxpro.fit._engine.prepare` makes them; ``reference`` is unused
    (the pass's Gram matrix is of ``[J | r]`` itself).

    Returns:
        The raw row of :func:`columns` (status 0: give it to the full
        program), then the first stage's evaluations and status (0, 0 for
        one stage).
    """
    stages = program.stages
    if len(stages) == 2 and stages[1].layout.lead:
        return _shared_stages_fn(program)

    def run(datas, vectors, reference, knobs):
        p = vectors.shape[1]
        dtype = vectors.dtype

        def solve_stage(spec, data, knob, theta0, lam0):
            if spec.layout.kind == "direct":
                regions = (jax.tree.map(lambda a: a[None], data["block"]),)
            else:
                regions = tuple(data["regions"])

            def gram(theta, needed):
                def evaluate(theta):
                    G = _symmetric(chunk_sums(program.residual, theta, regions, None), p + 1)
                    return G[:p, :p], G[:p, p], G[p, p]

                def unused(theta):  # the fit has converged: no pass over the data
                    return jnp.zeros((p, p), dtype), jnp.zeros((p,), dtype), jnp.zeros((), dtype)

                return lax.cond(needed, evaluate, unused, theta)

            start = _fresh(theta0, lam0)
            own = vectors.at[0].set(theta0)  # the trial at the start is theta0

            def body(slot):
                slot, done = _advance(slot, own, knob, gram, blind=True)
                return slot._replace(alive=slot.alive & ~done)

            return lax.while_loop(lambda s: s.alive, body, start)

        x0 = vectors[0]
        theta, lam0 = x0, jnp.asarray(_LAMBDA0, dtype)
        first = (jnp.zeros((), dtype), jnp.zeros((), dtype))
        for k, (spec, data) in enumerate(zip(stages, datas, strict=True)):
            slot = solve_stage(spec, data, knobs[k], theta, lam0)
            if k < len(stages) - 1:
                first = (slot.nfev.astype(dtype), slot.status.astype(dtype))
                warm = slot.status > 0
                theta = jnp.where(warm, slot.theta, x0)
                lam0 = jnp.where(warm, _LAMBDA_WARM, _LAMBDA0).astype(dtype)
        scalars = jnp.stack([slot.c, slot.status, slot.nfev, slot.nit]).astype(dtype)
        return jnp.concatenate(
            [slot.theta, slot.A.reshape(p * p), slot.g, scalars, jnp.stack(first)]
        )

    return run


def _shared_stages_fn(program):
    """:func:`single_fn` for a warm start on a subsample followed by the chunked data.

    Both stages run in one ``while`` loop over one copy of the pass. The data
    come laid out with the subsample as the padded region's first chunk
    (``Layout.lead``): the warm stage sums that chunk alone, the second stage
    every other chunk. Two loops, each with its own pass over its own data,
    had cost 0.15-0.2 s more to compile (the first call of a million-point
    fit, two Gaussians: 0.94 -> 0.79 s of tracing and compiling).
    """
    if not program.stages[1].layout.lead:
        raise ValueError("the shared-stage program needs the warm start's lead chunk")

    def run(datas, vectors, reference, knobs):
        p = vectors.shape[1]
        dtype = vectors.dtype
        *regions, padded = datas[1]["regions"]
        body = regions[0] if regions else None
        padded_count = padded["y"].shape[0]

        def evaluate(theta, stage):
            main = stage > 0
            ranged = [(padded, jnp.where(main, 1, 0), jnp.where(main, padded_count, 1))]
            total = ranged_chunk_sums(program.residual, theta, ranged)
            if body is not None:
                total = total + lax.cond(
                    main,
                    lambda t: chunk_sums(program.residual, t, (body,), None),
                    lambda t: jnp.zeros_like(total),
                    theta,
                )
            G = _symmetric(total, p + 1)
            return G[:p, :p], G[:p, p], G[p, p]

        def unused(theta, stage):
            return jnp.zeros((p, p), dtype), jnp.zeros((p,), dtype), jnp.zeros((), dtype)

        x0 = vectors[0]

        def body_fn(carry):
            slot, stage, own, first = carry

            def gram(theta, needed):
                return lax.cond(needed, evaluate, unused, theta, stage)

            slot, done = _advance(slot, own, knobs[stage], gram, blind=True)

            def hand_over(slot, own, first):
                # the warm start hands on: from its answer where it converged,
                # else from x0, as the full engine's stages do
                warm = slot.status > 0
                theta = jnp.where(warm, slot.theta, x0)
                lam0 = jnp.where(warm, _LAMBDA_WARM, _LAMBDA0).astype(dtype)
                first = jnp.stack([slot.nfev, slot.status]).astype(dtype)
                return _fresh(theta, lam0), vectors.at[0].set(theta), first, jnp.ones((), jnp.int32)

            def carry_on(slot, own, first):
                return slot._replace(alive=slot.alive & ~done), own, first, stage

            slot, own, first, stage = lax.cond(
                done & (stage == 0), hand_over, carry_on, slot, own, first
            )
            return slot, stage, own, first

        start = (
            _fresh(x0, jnp.asarray(_LAMBDA0, dtype)),
            jnp.zeros((), jnp.int32),
            vectors,
            jnp.zeros((2,), dtype),
        )
        slot, _, _, first = lax.while_loop(lambda c: c[0].alive, body_fn, start)
        scalars = jnp.stack([slot.c, slot.status, slot.nfev, slot.nit]).astype(dtype)
        return jnp.concatenate([slot.theta, slot.A.reshape(p * p), slot.g, scalars, first])

    return run
