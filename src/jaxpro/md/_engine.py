"""The compiled pieces of a simulation: energy, virial, neighbour list and the chunk program.

A run is a sequence of *chunks*, each one compiled program: a ``lax.scan`` over
records, each record a ``lax.scan`` over ``record_every`` JAX-MD integrator
steps followed by the observables (potential and kinetic energy, virial, total
momentum, positions). Between chunks the host checks the neighbour list for
overflow and the energies for NaN. Programs are kept per system shape and
settings, so a second run of the same shape compiles nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro.md._potentials import PairPotential, parameters

__all__ = ["Engine", "Settings", "build_engine", "chunk_program"]


@dataclass(frozen=True)
class Settings:
    """What fixes a compiled chunk program (hashable: the program cache's key)."""

    ensemble: str
    dt: float
    kT: float
    tau: float | None
    record_every: int
    records: int


@dataclass(frozen=True)
class Engine:
    """Energy, virial and neighbour list of one system (built once per system shape)."""

    energy: Any  # energy(R, neighbor=...) -> total potential energy (no tail)
    virial: Any | None  # virial(R, neighbor=...) -> sum over pairs of -r u'(r)
    neighbor_fn: Any | None  # jax_md NeighborListFns, or None (all pairs)
    shift: Any
    box: float
    n: int
    dim: int
    mass: float
    # the first list's cell-list functions, given to every later list (see ``allocate``)
    _cell_list_fn: list = field(default_factory=list, compare=False, hash=False, repr=False)

    def kwargs(self, neighbors) -> dict[str, Any]:
        return {} if neighbors is None else {"neighbor": neighbors}

    def allocate(self, positions, extra_capacity: int = 0):
        """A new neighbour list whose pytree matches every earlier list of this engine.

        JAX-MD makes fresh cell-list closures at each allocation; they are part of
        the list's pytree metadata, so a compiled chunk program would refuse (or
        recompile for) every new list. They depend only on the box, cell size and
        capacity multiplier, all fixed per engine, so the first ones are reused.
        """
        neighbors = self.neighbor_fn.allocate(positions, extra_capacity=extra_capacity)
        if neighbors.cell_list_fn is None:
            return neighbors
        if not self._cell_list_fn:
            self._cell_list_fn.append(neighbors.cell_list_fn)
        return dataclasses.replace(neighbors, cell_list_fn=self._cell_list_fn[0])


def _hashable(potential: PairPotential | None):
    if potential is None:
        return None
    return (potential.kind, potential.form, tuple(sorted(potential.params.items())),
            potential.cutoff, potential.onset)  # fmt: skip


_ENGINES: collections.OrderedDict = collections.OrderedDict()
_MAX_ENGINES = 16


def build_engine(system, *, neighbors: bool, skin: float, capacity: float) -> Engine:
    """The engine for ``system``; the same shape, potential and box give the same object
    (so its compiled programs are reused)."""
    key = (
        _hashable(system.potential),
        system.energy,
        repr(sorted(system.params.items())),
        round(system.box, 12), system.n, system.dim, system.mass, neighbors, skin, capacity,
    )  # fmt: skip
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _build(system, neighbors, skin, capacity)
        _ENGINES[key] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _ENGINES.popitem(last=False)
    _ENGINES.move_to_end(key)
    return engine


def _build(system, neighbors: bool, skin: float, capacity: float) -> Engine:
    from jax_md import partition, smap, space

    box, n, dim, mass = system.box, system.n, system.dim, system.mass
    potential = system.potential
    displacement, shift = space.periodic(box)
    metric = space.metric(displacement)  # the pair functions take distances, not vectors
    if potential is None:
        user_energy, user_params = system.energy, dict(system.params)

        def energy(positions, **_):
            return user_energy(positions, **user_params)

        return Engine(energy, None, None, shift, box, n, dim, mass)
    params = parameters(potential)
    if not neighbors:
        energy = smap.pair(potential.pair_fn(), metric, **params)
        virial = smap.pair(potential.virial_fn(), metric, **params)
        return Engine(energy, virial, None, shift, box, n, dim, mass)
    reach = potential.cutoff + skin
    neighbor_fn = partition.neighbor_list(
        displacement,
        box,
        potential.cutoff,
        dr_threshold=skin,
        capacity_multiplier=capacity,
        disable_cell_list=box < 3 * reach,  # cell lists need 3 cells per side
        format=partition.NeighborListFormat.Dense,
    )
    energy = smap.pair_neighbor_list(potential.pair_fn(), metric, **params)
    virial = smap.pair_neighbor_list(potential.virial_fn(), metric, **params)
    return Engine(energy, virial, neighbor_fn, shift, box, n, dim, mass)


def simulator(engine: Engine, settings: Settings):
    """JAX-MD's ``(init_fn, apply_fn)`` for the ensemble."""
    from jax_md import simulate

    if settings.ensemble == "nve":
        return simulate.nve(engine.energy, engine.shift, settings.dt)
    return simulate.nvt_nose_hoover(
        engine.energy, engine.shift, settings.dt, settings.kT, tau=settings.tau
    )


def observe(engine: Engine, state, neighbors) -> dict[str, Any]:
    """The observables of one record (whole-system totals)."""
    import jax.numpy as jnp

    kwargs = engine.kwargs(neighbors)
    momentum = state.momentum
    kinetic = 0.5 * jnp.sum(momentum * momentum) / engine.mass
    out = {
        "potential": engine.energy(state.position, **kwargs),
        "kinetic": kinetic,
        "momentum": jnp.sum(momentum, axis=0),
        "positions": state.position,
    }
    if engine.virial is not None:
        out["virial"] = engine.virial(state.position, **kwargs)
    return out


@functools.lru_cache(maxsize=16)
def chunk_program(engine: Engine, settings: Settings):
    """``chunk(state, neighbors) -> (state, neighbors, records)``, jitted (one program per shape)."""
    import jax
    from jax import lax

    _, apply_fn = simulator(engine, settings)

    def one_record(carry, _):
        def step(carry, _):
            state, neighbors = carry
            state = apply_fn(state, **engine.kwargs(neighbors))
            if neighbors is not None:
                neighbors = neighbors.update(state.position)
            return (state, neighbors), None

        (state, neighbors), _ = lax.scan(step, carry, None, length=settings.record_every)
        return (state, neighbors), observe(engine, state, neighbors)

    def chunk(state, neighbors):
        (state, neighbors), records = lax.scan(
            one_record, (state, neighbors), None, length=settings.records
        )
        return state, neighbors, records

    return jax.jit(chunk)


def initial_state(engine: Engine, settings: Settings, system, neighbors, key):
    """The integrator's state at the system's positions and velocities."""
    import jax.numpy as jnp

    init_fn, _ = simulator(engine, settings)
    positions = jnp.asarray(system.positions)
    momenta = jnp.asarray(system.velocities) * system.mass
    kwargs = engine.kwargs(neighbors)
    if settings.ensemble == "nve":
        return init_fn(key, positions, settings.kT, mass=system.mass, momenta=momenta, **kwargs)
    return init_fn(key, positions, mass=system.mass, momenta=momenta, **kwargs)


def max_force(engine: Engine, positions, neighbors) -> tuple[float, int]:
    """The largest force on any particle, and which particle."""
    import jax

    forces = -jax.grad(lambda r: engine.energy(r, **engine.kwargs(neighbors)))(positions)
    magnitude = np.linalg.norm(np.asarray(forces), axis=1)
    index = int(np.argmax(magnitude))
    return float(magnitude[index]), index
