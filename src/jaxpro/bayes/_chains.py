"""NUTS chains on a device each, run in bounded segments.

NumPyro's ``chain_method="parallel"`` runs every chain's whole warm-up and
sampling as one multi-device program (``pmap``). On jaxlib 0.12.1 a multi-device
CPU program keeps about one loop-carried buffer per device per ``while`` loop
iteration alive until the program ends (0.12.0.1 does not), so a NUTS run's
memory grows with its total number of leapfrog steps: the million-row
hierarchical model (20,006 parameters) passed 24 GB. Single-device programs do
not grow. Reproduction in plain JAX (2 CPU devices; peak RSS grows by ~260 kB
per iteration on 0.12.1, flat on 0.12.0.1)::

    jax.config.update("jax_num_cpu_devices", 2)
    mesh = Mesh(np.array(jax.devices()), ("d",))
    step = lambda i, x: jnp.zeros((10, x.size)).at[i % 10].set(x).sum(0) * 0.5
    f = jax.jit(jax.shard_map(lambda x: lax.fori_loop(0, 15_000, step, x),
                              mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    f(jnp.ones(40_000)).block_until_ready()   # 0.12.1: +3.9 GB; 0.12.0.1: +0.16 GB

Here the chains instead advance ``segment`` NUTS iterations per program run,
through NumPyro's public kernel interface (``init``, ``sample``,
``postprocess_fn``), sharded one chain group per device with ``shard_map`` on a
``Mesh`` (not the legacy ``pmap``). Whatever a run keeps alive is released
when it ends, so memory is bounded by one segment whatever the version, and one
compiled program serves every segment (its length is an argument). Runs are
dispatched without waiting, so a device starts its next segment as soon as its
own chains finish the last one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEGMENT", "run_segmented"]

# NUTS iterations per program run. Memory held by a run is at most about
# SEGMENT * 2**max_tree_depth leapfrog steps' worth of one parameter vector
# per chain; in practice trees are far shallower.
SEGMENT = 25


def run_segmented(
    kernel,
    args: tuple,
    kwargs: dict,
    init_params,
    rng_key,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    segment: int = SEGMENT,
    progress=None,
):
    """Run ``num_chains`` chains of ``kernel`` over ``num_chains`` devices.

    Args:
        kernel: an unused NumPyro HMC/NUTS kernel (``init`` is called once).
        args, kwargs: the model's arguments (closed over, as NumPyro's MCMC does).
        init_params: unconstrained starting point, leading axis ``num_chains``.
        rng_key: PRNG key; split into one per chain.
        num_warmup, num_samples: iterations per chain (warm-up discarded).
        segment: NUTS iterations per program run (>= 1).
        progress: optional callable ``progress(done, total)`` after each segment
            (it waits for the segment to finish; None never waits).

    Returns:
        ``(draws, extra)``: ``draws`` maps each site, deterministic sites
        included, to ``(chains, num_samples, *shape)``; ``extra`` maps
        ``diverging``, ``num_steps``, ``energy`` to ``(chains, num_samples)``.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if segment < 1:
        raise ValueError(f"segment must be >= 1, got {segment!r}")
    devices = jax.local_devices()[:num_chains]
    if len(devices) < num_chains:
        raise ValueError(
            f"num_chains={num_chains} needs a device per chain, JAX has {len(devices)}"
        )
    mesh = Mesh(np.array(devices), ("chain",))
    by_chain = NamedSharding(mesh, P("chain"))
    keys = jax.random.split(rng_key, num_chains)

    # One chain per device, and each device runs NumPyro's unbatched kernel (as
    # under ``pmap``): a kernel initialised with a batch of keys vmaps NUTS, whose
    # batched tree-building loops took twice as long to compile and run here.
    def local(fn):
        """``fn`` on this device's one chain: drop the chain axis, then restore it."""

        def wrapped(*xs):
            out = fn(*jax.tree.map(lambda v: v[0], xs))
            return jax.tree.map(lambda v: v[None], out)

        # The per-chain state differs by device, which shard_map's replication
        # check cannot see through NumPyro's kernel; nothing here is replicated.
        return jax.jit(
            jax.shard_map(
                wrapped, mesh=mesh, in_specs=P("chain"), out_specs=P("chain"), check_vma=False
            )
        )

    state = local(lambda k, z: kernel.init(k, num_warmup, z, args, kwargs))(keys, init_params)

    def record(s):
        return {"z": s.z, "diverging": s.diverging, "num_steps": s.num_steps, "energy": s.energy}

    def advance(state, n):
        # one chain's ``state``; ``n`` <= segment iterations, recorded in a fixed buffer
        out = jax.tree.map(lambda v: jnp.zeros((segment, *jnp.shape(v)), v.dtype), record(state))

        def body(i, carry):
            s, out = carry
            s = kernel.sample(s, args, kwargs)
            out = jax.tree.map(lambda o, v: o.at[i].set(v), out, record(s))
            return s, out

        return lax.fori_loop(0, n, body, (state, out))

    step = local(advance)

    total = num_warmup + num_samples
    pieces = []  # (first iteration, iterations, device arrays) per segment
    done = 0
    while done < total:
        n = min(segment, total - done)
        counts = jax.device_put(np.full(num_chains, n, np.int32), by_chain)
        state, out = step(state, counts)
        if done + n > num_warmup:
            pieces.append((done, n, out))
        done += n
        if progress is not None:
            jax.block_until_ready(out)
            progress(done, total)

    kept = {}
    for name in ("z", "diverging", "num_steps", "energy"):
        parts = []
        for first, n, out in pieces:
            skip = max(num_warmup - first, 0)
            parts.append(jax.tree.map(lambda v, a=skip, b=n: np.asarray(v)[:, a:b], out[name]))
        kept[name] = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *parts)

    post = kernel.postprocess_fn(args, kwargs)
    draws = jax.jit(jax.vmap(jax.vmap(post)))(kept.pop("z"))
    return {k: np.asarray(v) for k, v in draws.items()}, kept
