"""Systems to simulate: particles in a periodic box with a pair potential (or your energy).

A :class:`System` holds everything ``simulate`` needs: positions, velocities,
the box, the mass and the interaction. The constructors start from a lattice
(face-centred cubic when the count allows, else simple cubic), draw
Maxwell-Boltzmann velocities with zero total momentum and rescale them to the
exact requested temperature. Units are reduced (k_B = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro.errors import InputError
from jaxpro.md._potentials import FORMS, PairPotential

__all__ = [
    "System",
    "custom_system",
    "lennard_jones_fluid",
    "morse_fluid",
    "soft_sphere_system",
]


@dataclass(frozen=True)
class System:
    """Particles in a periodic cubic box.

    Attributes:
        name: what it is ("lennard_jones_fluid", ...).
        positions: ``(n, dim)`` inside ``[0, box)``.
        velocities: ``(n, dim)``, zero total momentum.
        box: side length of the periodic box.
        temperature: the temperature the velocities were drawn at (k_B T).
        mass: particle mass.
        potential: the pair potential, or None for a user energy.
        energy: a user energy ``energy(positions, **params)`` (None for pair potentials).
        params: the user energy's parameters.
        long_range_correction: add the analytic tail beyond the cutoff to the
            energy and pressure (3-D Lennard-Jones).
        seed: the seed of the velocities (and of thermostats downstream).
    """

    name: str
    positions: np.ndarray
    velocities: np.ndarray
    box: float
    temperature: float
    mass: float = 1.0
    potential: PairPotential | None = None
    energy: Callable | None = None
    params: dict[str, Any] = field(default_factory=dict)
    long_range_correction: bool = False
    seed: int = 0

    @property
    def n(self) -> int:
        return int(self.positions.shape[0])

    @property
    def dim(self) -> int:
        return int(self.positions.shape[1])

    @property
    def density(self) -> float:
        return self.n / self.box**self.dim

    def describe(self) -> str:
        what = self.potential.describe() if self.potential else "user energy"
        return (
            f"{self.n} particles in a periodic {self.dim}-D box of side {self.box:.6g}"
            f" (density {self.density:.6g}), {what}"
        )


def _positive(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError("must be a positive number", argument=argument, received=value)
    if value <= 0:
        raise InputError("must be positive", argument=argument, received=value)
    return float(value)


def _count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise InputError("must be an integer of at least 2", argument="n", received=n)
    return int(n)


def lattice(n: int, box: float, dim: int) -> np.ndarray:
    """``n`` lattice sites filling a periodic box: FCC when ``n = 4 m^3`` (3-D), else simple cubic."""
    if dim == 3 and round((n / 4) ** (1 / 3)) ** 3 * 4 == n:
        m = round((n / 4) ** (1 / 3))
        cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
        sites = (grid + cell[None]).reshape(-1, 3) + 0.25
        return sites * (box / m)
    m = math.ceil(n ** (1 / dim) - 1e-9)
    grid = np.stack(np.meshgrid(*[np.arange(m)] * dim, indexing="ij"), -1).reshape(-1, dim)
    return (grid[:n] + 0.5) * (box / m)


def maxwell_boltzmann(n: int, dim: int, temperature: float, mass: float, seed: int) -> np.ndarray:
    """Velocities at exactly ``temperature`` (d(n-1) degrees of freedom), zero total momentum."""
    rng = np.random.default_rng(seed)
    v = rng.normal(scale=math.sqrt(temperature / mass), size=(n, dim))
    v -= v.mean(axis=0)
    current = mass * np.sum(v * v) / (dim * (n - 1))
    return v * math.sqrt(temperature / current)


def _pair_system(
    name: str,
    potential: PairPotential,
    n: Any,
    density: Any,
    temperature: Any,
    dim: Any,
    seed: int,
    mass: float,
    long_range_correction: bool,
) -> System:
    n = _count(n)
    density = _positive(density, "density")
    temperature = _positive(temperature, "temperature")
    mass = _positive(mass, "mass")
    if dim not in (2, 3):
        raise InputError("must be 2 or 3", argument="dim", received=dim)
    box = (n / density) ** (1 / dim)
    if box < 2 * potential.cutoff:
        raise InputError(
            f"gives a box of side {box:.4g}, smaller than twice the cutoff ({potential.cutoff:g}):"
            " a particle would meet its own image; use more particles or a lower density",
            argument="n",
            received=n,
        )
    positions = lattice(n, box, dim)
    velocities = maxwell_boltzmann(n, dim, temperature, mass, seed)
    return System(
        name=name,
        positions=positions,
        velocities=velocities,
        box=box,
        temperature=temperature,
        mass=mass,
        potential=potential,
        long_range_correction=bool(long_range_correction),
        seed=int(seed),
    )


def _form(shift: bool, form: str | None) -> str:
    chosen = form if form is not None else ("truncated_shifted" if shift else "truncated")
    if chosen not in FORMS:
        raise InputError(f"must be one of {FORMS}", argument="form", received=form)
    return chosen


def lennard_jones_fluid(
    n: int,
    density: float,
    temperature: float,
    cutoff: float = 2.5,
    shift: bool = True,
    long_range_correction: bool = False,
    dim: int = 3,
    seed: int = 0,
    *,
    form: str | None = None,
    sigma: float = 1.0,
    epsilon: float = 1.0,
    mass: float = 1.0,
    onset: float | None = None,
) -> System:
    """A Lennard-Jones fluid on a lattice with Maxwell-Boltzmann velocities.

    Args:
        n: particle count (``4 m^3`` gives an FCC start in 3-D).
        density: particles per unit volume (reduced, ``rho sigma^3``).
        temperature: ``k_B T / epsilon``.
        cutoff: interaction range ``r_c`` (the unit of length is sigma).
        shift: shift the potential to zero at the cutoff ("truncated_shifted")
            or not ("truncated"); ``form`` overrides it.
        long_range_correction: add the analytic tail energy and pressure.
        dim: 2 or 3.
        seed: seed of the velocities.
        form: "truncated", "truncated_shifted" or "switched" (JAX-MD's smooth switch).
        sigma, epsilon, mass: the parameters (1 in reduced units).
        onset: where the switch starts (form "switched"; default ``0.8 r_c``).

    Raises:
        InputError: a non-positive density, temperature or cutoff; a box smaller
            than twice the cutoff; an unknown form.
    """
    cutoff = _positive(cutoff, "cutoff")
    chosen = _form(shift, form)
    if chosen == "switched":
        onset = 0.8 * cutoff if onset is None else _positive(onset, "onset")
        if onset >= cutoff:
            raise InputError("must be below the cutoff", argument="onset", received=onset)
    potential = PairPotential(
        "lennard_jones",
        chosen,
        {"sigma": _positive(sigma, "sigma"), "epsilon": _positive(epsilon, "epsilon")},
        cutoff,
        onset if chosen == "switched" else None,
    )
    return _pair_system("lennard_jones_fluid", potential, n, density, temperature, dim, seed,
                        mass, long_range_correction)  # fmt: skip


def morse_fluid(
    n: int,
    density: float,
    temperature: float,
    *,
    alpha: float = 5.0,
    r0: float = 1.0,
    epsilon: float = 1.0,
    cutoff: float = 2.5,
    shift: bool = True,
    dim: int = 3,
    seed: int = 0,
    mass: float = 1.0,
) -> System:
    """Particles interacting by a Morse potential ``epsilon ((1 - exp(-alpha (r - r0)))^2 - 1)``."""
    cutoff = _positive(cutoff, "cutoff")
    params = {"alpha": _positive(alpha, "alpha"), "r0": _positive(r0, "r0"),
              "epsilon": _positive(epsilon, "epsilon")}  # fmt: skip
    potential = PairPotential("morse", _form(shift, None), params, cutoff)
    return _pair_system("morse_fluid", potential, n, density, temperature, dim, seed, mass, False)


def soft_sphere_system(
    n: int,
    density: float,
    temperature: float,
    *,
    sigma: float = 1.0,
    epsilon: float = 1.0,
    alpha: float = 2.0,
    dim: int = 3,
    seed: int = 0,
    mass: float = 1.0,
) -> System:
    """Soft spheres, ``epsilon / alpha (1 - r / sigma)^alpha`` for ``r < sigma`` (zero beyond)."""
    sigma = _positive(sigma, "sigma")
    params = {"sigma": sigma, "epsilon": _positive(epsilon, "epsilon"),
              "alpha": _positive(alpha, "alpha")}  # fmt: skip
    potential = PairPotential("soft_sphere", "finite_range", params, sigma)
    return _pair_system("soft_sphere_system", potential, n, density, temperature, dim, seed,
                        mass, False)  # fmt: skip


def custom_system(
    energy: Callable,
    positions: Any,
    box: float,
    temperature: float,
    *,
    params: dict[str, Any] | None = None,
    mass: float = 1.0,
    seed: int = 0,
    velocities: Any = None,
) -> System:
    """Your energy function ``energy(positions, **params) -> scalar`` in a periodic box.

    The energy must handle the periodic boundary itself (e.g. with
    ``jax_md.space.periodic(box)``); ``simulate`` evaluates it on the whole
    system every step (no neighbour list).
    """
    if not callable(energy):
        raise InputError("must be a callable energy(positions, **params)", argument="energy",
                         received=energy)  # fmt: skip
    box = _positive(box, "box")
    temperature = _positive(temperature, "temperature")
    mass = _positive(mass, "mass")
    r = np.asarray(positions, dtype=float)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] not in (2, 3):
        raise InputError("must have shape (n, 2) or (n, 3) with n >= 2", argument="positions",
                         received=positions)  # fmt: skip
    v = (
        maxwell_boltzmann(r.shape[0], r.shape[1], temperature, mass, seed)
        if velocities is None
        else np.asarray(velocities, dtype=float)
    )
    if v.shape != r.shape:
        raise InputError(f"must have the shape of positions {r.shape}", argument="velocities",
                         received=velocities)  # fmt: skip
    return System(
        name="custom_system",
        positions=np.mod(r, box),
        velocities=v,
        box=box,
        temperature=temperature,
        mass=mass,
        energy=energy,
        params=dict(params or {}),
        seed=int(seed),
    )
