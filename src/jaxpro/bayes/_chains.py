"""NUTS chains on a device each, run in bounded segments.

NumPyro's ``chain_method="parallel"`` runs every chain's whole warm-up and
sampling as one multi-device program (``pmap``). On jaxlib 0.12.1, CPU programs
running on several devices at once (one ``pmap`` or ``shard_map`` program, or
single-device programs dispatched to two devices together) keep about one
loop-carried buffer per device per ``while`` loop iteration alive until the
program ends (0.12.0.1 does not), so a NUTS run's memory grows with its total
number of leapfrog steps: the million-row hierarchical model (20,006
parameters) passed 24 GB. One program on one device does not grow. Not malloc:
the memory comes back when the program ends. It takes float64 (float32 data
does not grow), a reduction of a fused producer inside the loop (a plain
elementwise loop does not grow), and two devices running at once: the same
single-device program run on one device stays flat, run on two devices
together it grows. No XLA CPU flag of 0.12.1 changes it (copy insertion's
region analysis, the concurrency-optimised scheduler, XNNPACK, Eigen threading,
async dispatch, gloo collectives were tried). Reproduction in plain JAX (2 CPU
devices; peak RSS grows by ~230 kB per iteration on 0.12.1, flat on 0.12.0.1)::

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    mesh = Mesh(np.array(jax.devices()), ("d",))
    step = lambda i, x: jnp.zeros((10, x.size)).at[i % 10].set(x).sum(0) * 0.5
    f = jax.jit(jax.shard_map(lambda x: lax.fori_loop(0, 15_000, step, x),
                              mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    f(jnp.ones(40_000)).block_until_ready()   # 0.12.1: +3.5 GB; 0.12.0.1: +0.15 GB

Here the chains instead advance ``segment`` NUTS iterations per program run,
through NumPyro's public kernel interface (``init``, ``sample``,
``postprocess_fn``), one chain per device with ``shard_map`` on a ``Mesh`` (not
the legacy ``pmap``), each device on NumPyro's unbatched kernel as under
``pmap``. Whatever a run keeps alive is released when it ends, so memory is
bounded by one segment whatever the version (:func:`segment_length` sizes it
from the parameter count and the tree depth), and one compiled program serves
every segment (its length is an argument). Runs are dispatched without waiting
for their results. ``run_nuts`` sends a run here only when one program could
hold more than ``ONE_PROGRAM_BYTES`` (:func:`needs_segments`); smaller models
stay in NumPyro's program, which lowers and compiles a little less.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ONE_PROGRAM_BYTES",
    "SEGMENT_BYTES",
    "SEGMENT_MAX",
    "needs_segments",
    "run_segmented",
    "segment_length",
]

# Below this worst case for a whole run, chains stay in NumPyro's one pmap
# program: for small models it lowers and compiles a little less (eight
# schools: about 0.1 s less per attempt, 15% of a warm run, than segments).
ONE_PROGRAM_BYTES = 2**30

# What one chain's program run may keep alive, in bytes. Measured on 0.12.1:
# about 1.4 parameter vectors per leapfrog step per chain, so segments are
# sized for 2 vectors per step at the deepest tree NUTS may build.
SEGMENT_BYTES = 256 * 2**20
# More iterations per run than this gains nothing (a run's dispatch costs
# ~0.1 ms; one NUTS iteration of the smallest models ~0.05 ms).
SEGMENT_MAX = 100


def _bytes_per_iteration(init_params, max_tree_depth: int) -> int:
    """What one NUTS iteration of one chain may keep alive: 2 vectors per leapfrog step."""
    import jax

    leaves = jax.tree.leaves(init_params)
    vector_bytes = sum(np.size(v) * np.asarray(v).dtype.itemsize for v in leaves)
    return 2 * vector_bytes * (2 ** int(max_tree_depth) - 1)


def needs_segments(init_params, max_tree_depth: int, iterations: int) -> bool:
    """Whether one program for the whole run could hold more than ``ONE_PROGRAM_BYTES`` per chain.

    Args:
        init_params: one chain's unconstrained parameters.
        max_tree_depth: NUTS's limit.
        iterations: warm-up plus draws per chain.
    """
    return iterations * _bytes_per_iteration(init_params, max_tree_depth) > ONE_PROGRAM_BYTES


def segment_length(init_params, max_tree_depth: int) -> int:
    """NUTS iterations per program run so that one run holds at most ``SEGMENT_BYTES``.

    Args:
        init_params: one chain's unconstrained parameters (a pytree).
        max_tree_depth: NUTS's limit; an iteration takes at most
            ``2**max_tree_depth - 1`` leapfrog steps.

    Returns:
        An integer in ``[1, SEGMENT_MAX]``. For 20,006 float64 parameters at
        depth 10 it is 1; for eight schools (10 parameters) ``SEGMENT_MAX``.
    """
    per_iteration = _bytes_per_iteration(init_params, max_tree_depth)
    return int(np.clip(SEGMENT_BYTES // max(per_iteration, 1), 1, SEGMENT_MAX))


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
    segment: int,
    progress=None,
):
    """Run ``num_chains`` chains of ``kernel`` over ``num_chains`` devices.

    Args:
        kernel: an unused NumPyro HMC/NUTS kernel (``init`` is called once).
        args, kwargs: the model's arguments (closed over, as NumPyro's MCMC does).
        init_params: unconstrained starting point, leading axis ``num_chains``.
        rng_key: PRNG key; split into one per chain.
        num_warmup, num_samples: iterations per chain (warm-up discarded).
        segment: NUTS iterations per program run (>= 1; see :func:`segment_length`).
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
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxpro.core._mesh import device_mesh

    if segment < 1:
        raise ValueError(f"segment must be >= 1, got {segment!r}")
    devices = jax.local_devices()[:num_chains]
    if len(devices) < num_chains:
        raise ValueError(
            f"num_chains={num_chains} needs a device per chain, JAX has {len(devices)}"
        )
    mesh = device_mesh(devices, "chain")
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
