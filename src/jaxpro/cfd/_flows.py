"""The named flows: their domains, start fields, forcing and scales.

Every flow is non-dimensional. Periodic flows live on ``[0, 2 pi]^2`` (length
unit 1, so wavenumber k means ``sin(k x)``); the cavity on the unit square
with the lid (speed 1) at ``y = 1``; the channel on ``[0, 2] x [0, 1]``, walls
at ``y = 0`` and ``y = 1``, driven by the constant pressure gradient whose
laminar (Poiseuille) centreline speed is 1. The Reynolds number of each flow is
``velocity_scale * length_scale / viscosity`` with the scales below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["FLOWS", "Flow", "taylor_green_velocity"]

TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class Flow:
    """A named flow.

    Attributes:
        name: the name ``simulate`` takes.
        domain: ``(lx, ly)``.
        walls: None (periodic), "cavity" or "channel".
        start: ``start(x, y, key)`` -> cell-centred ``(u, v)`` (periodic flows),
            or None (walled flows start at rest).
        forcing: "kolmogorov" or None; drag: linear drag coefficient.
        velocity_scale, length_scale: the scales of the Reynolds number.
        default_reynolds: used when neither viscosity nor reynolds is given.
        default_t_end: flow time when t_end is not given (None: until steady).
        min_cells: the coarsest grid (cells per side) that resolves the flow.
        description: one line for the plan.
    """

    name: str
    domain: tuple[float, float]
    walls: str | None
    start: Callable | None
    forcing: str | None
    drag: float
    velocity_scale: float
    length_scale: float
    default_reynolds: float
    default_t_end: float | None
    min_cells: int
    description: str


def taylor_green_velocity(x, y, t: float = 0.0, viscosity: float = 0.0):
    """The 2-D Taylor-Green vortex ``(sin x cos y, -cos x sin y) exp(-2 nu t)``, exact."""
    decay = np.exp(-2.0 * viscosity * t)
    return np.sin(x) * np.cos(y) * decay, -np.cos(x) * np.sin(y) * decay


def _taylor_green(x, y, key):
    del key
    return taylor_green_velocity(x, y)


def _filtered_random(peak_wavenumber: float, maximum_velocity: float):
    """JAX-CFD's filtered random field (log-normal spectrum), at the cell centres."""

    def start(x, y, key):
        import jax
        import jax_cfd.base as cfd

        n = x.shape
        grid = cfd.grids.Grid(n, domain=((0.0, TWO_PI), (0.0, TWO_PI)))
        velocity = cfd.initial_conditions.filtered_velocity_field(
            jax.random.PRNGKey(key), grid, maximum_velocity, peak_wavenumber
        )
        # the field is on JAX-CFD's staggered faces; move it to the centres
        # spectrally so both engines start from the same numbers
        from jaxpro.cfd._periodic import _shift_half

        u = _shift_half(velocity[0].data, 0, TWO_PI, sign=-1.0)
        v = _shift_half(velocity[1].data, 1, TWO_PI, sign=-1.0)
        # its mean is rounding noise of the projection (1e-9 of the peak): removed,
        # so the field is exactly what a periodic solver can carry
        # (in float64: under precision='float32' the field comes back in float32,
        # whose own mean subtraction leaves 1e-9 of the peak)
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        return u - u.mean(), v - v.mean()

    return start


FLOWS: dict[str, Flow] = {
    "taylor_green": Flow(
        name="taylor_green",
        domain=(TWO_PI, TWO_PI),
        walls=None,
        start=_taylor_green,
        forcing=None,
        drag=0.0,
        velocity_scale=1.0,
        length_scale=1.0,
        default_reynolds=100.0,
        default_t_end=5.0,
        min_cells=8,
        description="Taylor-Green vortex (sin x cos y, -cos x sin y): decays as exp(-2 nu t),"
        " exactly",
    ),
    "decaying_turbulence": Flow(
        name="decaying_turbulence",
        domain=(TWO_PI, TWO_PI),
        walls=None,
        start=_filtered_random(peak_wavenumber=4.0, maximum_velocity=1.0),
        forcing=None,
        drag=0.0,
        velocity_scale=1.0,
        length_scale=1.0,
        default_reynolds=1000.0,
        default_t_end=10.0,
        min_cells=32,
        description="decaying 2-D turbulence from a filtered random field (spectrum peaked at"
        " k = 4, top speed 1)",
    ),
    "kolmogorov": Flow(
        name="kolmogorov",
        domain=(TWO_PI, TWO_PI),
        walls=None,
        start=_filtered_random(peak_wavenumber=4.0, maximum_velocity=1.0),
        forcing="kolmogorov",
        drag=0.1,
        velocity_scale=1.0,
        length_scale=1.0,
        default_reynolds=1000.0,
        default_t_end=10.0,
        min_cells=32,
        description="Kolmogorov flow: forcing sin(4 y) in x with linear drag 0.1 (Kochkov et al."
        " 2021, after Boffetta and Ecke 2012), from a filtered random field",
    ),
    "lid_driven_cavity": Flow(
        name="lid_driven_cavity",
        domain=(1.0, 1.0),
        walls="cavity",
        start=None,
        forcing=None,
        drag=0.0,
        velocity_scale=1.0,
        length_scale=1.0,
        default_reynolds=100.0,
        default_t_end=None,
        min_cells=16,
        description="lid-driven cavity: unit square, the top wall slides at speed 1, from rest",
    ),
    "channel": Flow(
        name="channel",
        domain=(2.0, 1.0),
        walls="channel",
        start=None,
        forcing=None,
        drag=0.0,
        velocity_scale=1.0,
        length_scale=1.0,
        default_reynolds=100.0,
        default_t_end=None,
        min_cells=8,
        description="plane channel: periodic in x, walls at y = 0 and 1, a constant pressure"
        " gradient 8 nu (laminar centreline speed 1), from rest",
    ),
}
