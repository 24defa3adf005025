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
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxpro.md._jaxmd import lean
from jaxpro.md._neighbors import Lister
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
    pressure: float | None = None  # NPT's target pressure
    tau_p: float | None = None  # NPT's barostat time constant


@dataclass(frozen=True)
class Engine:
    """Energy, forces, virial and neighbour list of one system (built once per system shape)."""

    energy: Any  # energy(R, neighbor=...) -> total potential energy (no tail)
    virial: Any | None  # virial(R, neighbor=...) -> sum over pairs of -r u'(r)
    lister: Lister | None  # how neighbour lists are built, or None (all pairs)
    shift: Any
    box: float
    n: int
    dim: int
    mass: float
    force: Any = None  # force(R, neighbor=...) -> (n, d); None: minus the energy's gradient
    npt: bool = False  # positions in box fractions, energy(S, neighbor=, box=, perturbation=)

    @property
    def force_or_energy(self):
        """What the integrators take (JAX-MD differentiates an energy itself)."""
        return self.energy if self.force is None else self.force

    def kwargs(self, neighbors) -> dict[str, Any]:
        return {} if neighbors is None else {"neighbor": neighbors}

    def allocate(self, positions, extra_capacity: int = 0, box=None):
        """A new neighbour list for real ``positions`` (with ``extra_capacity`` more room)."""
        return self.lister.allocate(positions, extra_capacity=extra_capacity, box=box)

    def real(self, state):
        """``(positions, box side)`` of an integrator state, in real units."""
        if not self.npt:
            return state.position, self.box
        from jax_md import simulate

        side = simulate.npt_box(state)[0, 0]  # isotropic: the matrix is side * identity
        return state.position * side, side

    def update_state(self, state, neighbors):
        """The list after a step of ``state`` (the box may have changed: NPT; traceable)."""
        if neighbors is None:
            return None
        positions, side = self.real(state)
        return self.lister.update(positions, neighbors, box=side if self.npt else None)

    def update(self, positions, neighbors):
        """The list after a step: rebuilt once a particle moved half the skin (traceable)."""
        return None if neighbors is None else self.lister.update(positions, neighbors)


def _hashable(potential: PairPotential | None):
    if potential is None:
        return None
    return (potential.kind, potential.form, tuple(sorted(potential.params.items())),
            potential.cutoff, potential.onset)  # fmt: skip


_ENGINES: collections.OrderedDict = collections.OrderedDict()
_MAX_ENGINES = 16


def build_engine(system, *, neighbors: bool, skin: float, capacity: float,
                 npt: bool = False) -> Engine:  # fmt: skip
    """The engine for ``system``; the same shape, potential and box give the same object
    (so its compiled programs are reused). ``npt``: the engine of a barostatted run."""
    key = (
        _hashable(system.potential),
        system.energy,
        repr(sorted(system.params.items())),
        round(system.box, 12), system.n, system.dim, system.mass, neighbors, skin, capacity,
        npt, npt and system.long_range_correction,
    )  # fmt: skip
    engine = _ENGINES.get(key)
    if engine is None:
        lean()  # JAX-MD's modules without its package __init__ (4 s of a cold start)
        engine = _build_npt(system, skin, capacity) if npt else _build(system, neighbors, skin,
                                                                       capacity)  # fmt: skip
        _ENGINES[key] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _ENGINES.popitem(last=False)
    _ENGINES.move_to_end(key)
    return engine


def _build(system, neighbors: bool, skin: float, capacity: float) -> Engine:
    from jax_md import smap, space

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
    lister = Lister(box, potential.cutoff, skin, n, dim, capacity)
    pair_fn = potential.pair_fn()
    return Engine(lister.energy_fn(pair_fn, params), lister.virial_fn(pair_fn, params), lister,
                  shift, box, n, dim, mass,
                  force=lister.force_fn(pair_fn, params, potential.force_over_r()))  # fmt: skip


# an NPT box may shrink by this factor in side before its cells are too small (overflow)
NPT_CELL_MARGIN = 1.1


def _build_npt(system, skin: float, capacity: float) -> Engine:
    """Fractional positions in a box that JAX-MD's barostat changes; always neighbour lists
    (all pairs inside the list's build for small boxes)."""
    from jax_md import space

    from jaxpro.md._potentials import tail_pressure

    box, n, dim, mass, potential = system.box, system.n, system.dim, system.mass, system.potential
    _, shift = space.periodic_general(box, fractional_coordinates=True)
    lister = Lister(box, potential.cutoff, skin, n, dim, capacity, margin=NPT_CELL_MARGIN)
    tail = tail_pressure(potential, 1.0, dim) if system.long_range_correction else 0.0
    energy = lister.npt_energy_fn(potential.pair_fn(), parameters(potential), tail)
    return Engine(energy, None, lister, shift, box, n, dim, mass, npt=True)


def simulator(engine: Engine, settings: Settings):
    """JAX-MD's ``(init_fn, apply_fn)`` for the ensemble."""
    from jax_md import simulate

    if settings.ensemble == "npt":
        return simulate.npt_nose_hoover(
            engine.energy, engine.shift, settings.dt, settings.pressure, settings.kT,
            barostat_kwargs={"tau": settings.tau_p},
            thermostat_kwargs=None if settings.tau is None else {"tau": settings.tau},
        )  # fmt: skip
    if settings.ensemble == "nve":
        return simulate.nve(engine.force_or_energy, engine.shift, settings.dt)
    return simulate.nvt_nose_hoover(
        engine.force_or_energy, engine.shift, settings.dt, settings.kT, tau=settings.tau
    )


def observe(engine: Engine, state, neighbors) -> dict[str, Any]:
    """The observables of one record (whole-system totals)."""
    import jax.numpy as jnp

    kwargs = engine.kwargs(neighbors)
    momentum = state.momentum
    kinetic = 0.5 * jnp.sum(momentum * momentum) / engine.mass
    if engine.npt:
        return _observe_npt(engine, state, neighbors, kinetic)
    out = {
        "potential": engine.energy(state.position, **kwargs),
        "kinetic": kinetic,
        "momentum": jnp.sum(momentum, axis=0),
        "positions": state.position,
    }
    if engine.virial is not None:
        out["virial"] = engine.virial(state.position, **kwargs)
    return out


def _observe_npt(engine: Engine, state, neighbors, kinetic) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax_md import simulate

    box = simulate.npt_box(state)
    fractions = state.position

    def pair_energy(scale):  # the records leave the barostat's tail term out
        return engine.energy(fractions, neighbor=neighbors, box=box, perturbation=scale,
                             barostat=False)  # fmt: skip

    one = jnp.ones((), fractions.dtype)
    potential, slope = jax.value_and_grad(pair_energy)(one)
    return {
        "potential": potential,
        "kinetic": kinetic,
        "momentum": jnp.sum(state.momentum, axis=0),
        "positions": fractions * box[0, 0],
        "virial": -slope,  # dU/d(scale) = sum r u'(r) = -W
        "box": box[0, 0],
    }


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
            return (state, engine.update_state(state, neighbors)), None

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

    positions = jnp.asarray(system.positions)
    momenta = jnp.asarray(system.velocities) * system.mass
    return _init_program(engine, settings)(key, positions, momenta, neighbors)


@functools.lru_cache(maxsize=16)
def _init_program(engine: Engine, settings: Settings):
    """JAX-MD's ``init_fn`` for the run, jitted (one program, not dozens of eager ops)."""
    import jax

    init_fn, _ = simulator(engine, settings)

    def init(key, positions, momenta, neighbors):
        kwargs = engine.kwargs(neighbors)
        if settings.ensemble == "npt":
            return init_fn(key, positions / engine.box, engine.box, mass=engine.mass,
                           momenta=momenta, **kwargs)  # fmt: skip
        if settings.ensemble == "nve":
            return init_fn(key, positions, settings.kT, mass=engine.mass, momenta=momenta,
                           **kwargs)  # fmt: skip
        return init_fn(key, positions, mass=engine.mass, momenta=momenta, **kwargs)

    return jax.jit(init)


@functools.lru_cache(maxsize=16)
def _force_program(engine: Engine):
    import jax

    def forces(positions, neighbors):
        kwargs = engine.kwargs(neighbors)
        if engine.force is not None:
            return engine.force(positions, **kwargs)
        return -jax.grad(lambda r: engine.energy(r, **kwargs))(positions)

    return jax.jit(forces)


def max_force(engine: Engine, positions, neighbors) -> tuple[float, int]:
    """The largest force on any particle, and which particle."""
    forces = _force_program(engine)(positions, neighbors)
    magnitude = np.linalg.norm(np.asarray(forces), axis=1)
    index = int(np.argmax(magnitude))
    return float(magnitude[index]), index
