"""Periodic flows on JAX-CFD, behind jaxpro's own small engine interface.

JAX-CFD (Google, Apache-2.0) is no longer maintained since February 2026, so
everything jaxpro uses from it passes through this module and the validation
tests (Taylor-Green decay against the analytic solution) guard it; replacing it
means replacing this file.

Two engines share one interface (see :class:`Engine`):
- ``spectral``: JAX-CFD's pseudo-spectral vorticity solver
  (``spectral.equations.NavierStokes2D``, 2/3-rule dealiasing) with its
  Crank-Nicolson / low-storage RK4 IMEX stepper: diffusion implicit, so only
  the advective CFL limit applies. The state is the vorticity's real FFT.
- ``finite_volume``: JAX-CFD's staggered finite-volume solver
  (``base.equations.semi_implicit_navier_stokes``) with second-order central
  convection (``convect_linear``), classic RK4 and an exact pressure projection
  (fast diagonalisation); the state is the face velocities ``(u, v)``.

Fields handed back to the user are at the cell centres ``((i + 1/2) dx,
(j + 1/2) dy)`` for both engines.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Engine", "finite_volume_engine", "spectral_engine", "spectral_velocity_to_vorticity"]


@dataclass(frozen=True)
class Engine:
    """What :func:`jaxpro.cfd.simulate` needs from a solver.

    Attributes:
        name: "spectral", "finite_volume" or "projection".
        state0: the initial state (a pytree of arrays).
        advance: ``advance(state, dt, nu, steps)``: ``steps`` steps (a static
            int) of size ``dt``, pure JAX.
        diagnostics: ``diagnostics(state)`` -> dict of scalars: kinetic_energy,
            enstrophy (domain means of u^2/2 and w^2/2), divergence (max |div u|),
            max_speed, courant_rate (``max|u|/dx + max|v|/dy``: the Courant
            number is ``dt`` times it).
        velocity: ``velocity(state)`` -> array (2, nx, ny) at cell centres.
        vorticity: ``vorticity(state)`` -> array (nx, ny) at cell centres.
        spacing: the smallest grid spacing (the CFL length).
        cfl: the advective Courant number jaxpro aims at with dt='auto'.
        viscous_factor: the explicit diffusion limit ``dt <= f h^2 / nu``
            (None: diffusion is implicit).
        scheme: one line for the plan.
        native: ``native(state)`` -> dict of arrays in the engine's own layout.
        init: ``init(velocity)`` -> state from cell-centred ``(2, nx, ny)``
            velocities, pure JAX (differentiable); None where the engine starts
            only from rest.
        step: ``step(state, dt, nu)``: one step, pure JAX (not compiled on its own).
        key: what makes this engine's programs differ from another's (set by the
            caller; with the step count it keys jaxpro's compiled-program cache).
    """

    name: str
    state0: Any
    advance: Any
    diagnostics: Any
    velocity: Any
    vorticity: Any
    spacing: float
    cfl: float
    viscous_factor: float | None
    scheme: str
    native: Any
    init: Any = None
    step: Any = None
    key: tuple = ()


def _grid(shape, domain):
    import jax_cfd.base as cfd

    return cfd.grids.Grid(shape, domain=((0.0, domain[0]), (0.0, domain[1])))


def _wavenumbers(shape, domain):
    """Angular wavenumbers (rfft layout) of a periodic grid."""
    kx = 2 * np.pi * np.fft.fftfreq(shape[0], d=domain[0] / shape[0])
    ky = 2 * np.pi * np.fft.rfftfreq(shape[1], d=domain[1] / shape[1])
    return np.meshgrid(kx, ky, indexing="ij")


def spectral_velocity_to_vorticity(u, v, domain):
    """The vorticity ``dv/dx - du/dy`` of a periodic cell-centred field, spectrally."""
    import jax.numpy as jnp

    kx, ky = _wavenumbers(u.shape, domain)
    what = 1j * kx * jnp.fft.rfft2(v) - 1j * ky * jnp.fft.rfft2(u)
    return jnp.fft.irfft2(what, s=u.shape)


def _spectral_velocity(what, shape, domain):
    import jax.numpy as jnp

    kx, ky = _wavenumbers(shape, domain)
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    psi = what / k2  # -lap psi = w
    u = jnp.fft.irfft2(1j * ky * psi, s=shape)
    v = jnp.fft.irfft2(-1j * kx * psi, s=shape)
    return u, v


def spectral_engine(u0, v0, domain, *, forcing: str | None = None, drag: float = 0.0,
                    forcing_wavenumber: int = 4) -> Engine:  # fmt: skip
    """The pseudo-spectral engine started from cell-centred velocities ``(u0, v0)``.

    The vorticity form keeps only the solenoidal part of the start field (its
    gradient part and its mean are dropped; the caller checks both).
    """
    import jax
    import jax.numpy as jnp
    import jax_cfd.base as cfd
    import jax_cfd.spectral as spectral

    shape = tuple(u0.shape)
    grid = _grid(shape, domain)
    hx, hy = domain[0] / shape[0], domain[1] / shape[1]

    def init(velocity):
        return jnp.fft.rfft2(spectral_velocity_to_vorticity(velocity[0], velocity[1], domain))

    state0 = init(jnp.stack([jnp.asarray(u0), jnp.asarray(v0)]))
    forcing_fn = None
    if forcing == "kolmogorov":
        forcing_fn = functools.partial(
            cfd.forcings.kolmogorov_forcing, k=forcing_wavenumber, offsets=((0, 0), (0, 0))
        )

    def one_step(state, dt, nu):
        equation = spectral.equations.NavierStokes2D(
            nu, grid, drag=drag, smooth=True, forcing_fn=forcing_fn
        )
        return spectral.time_stepping.crank_nicolson_rk4(equation, dt)(state)

    @functools.partial(jax.jit, static_argnums=3)
    def advance(state, dt, nu, steps):
        return jax.lax.fori_loop(0, steps, lambda _, s: one_step(s, dt, nu), state)

    def velocity(state):
        return jnp.stack(_spectral_velocity(state, shape, domain))

    def vorticity(state):
        return jnp.fft.irfft2(state, s=shape)

    @jax.jit
    def diagnostics(state):
        u, v = _spectral_velocity(state, shape, domain)
        w = jnp.fft.irfft2(state, s=shape)
        kx, ky = _wavenumbers(shape, domain)
        div = jnp.fft.irfft2(1j * kx * jnp.fft.rfft2(u) + 1j * ky * jnp.fft.rfft2(v), s=shape)
        return {
            "kinetic_energy": 0.5 * jnp.mean(u**2 + v**2),
            "enstrophy": 0.5 * jnp.mean(w**2),
            "divergence": jnp.max(jnp.abs(div)),
            "max_speed": jnp.sqrt(jnp.max(u**2 + v**2)),
            "courant_rate": jnp.max(jnp.abs(u)) / hx + jnp.max(jnp.abs(v)) / hy,
        }

    return Engine(
        name="spectral",
        state0=state0,
        advance=advance,
        diagnostics=diagnostics,
        velocity=velocity,
        vorticity=vorticity,
        spacing=min(domain[0] / shape[0], domain[1] / shape[1]),
        # the JAX-CFD examples' Courant number for this stepper
        cfl=0.5,
        viscous_factor=None,
        scheme="JAX-CFD pseudo-spectral vorticity form (2/3-rule dealiasing), Crank-Nicolson"
        " / low-storage RK4 IMEX steps (diffusion implicit)",
        native=lambda state: {"vorticity_hat": state},
        init=init,
        step=one_step,
    )


def _shift_half(field, axis, domain_length, sign=1.0):
    """Move a periodic field by half a cell along ``axis`` (exact for resolved modes)."""
    import jax.numpy as jnp

    n = field.shape[axis]
    k = 2 * np.pi * np.fft.fftfreq(n, d=domain_length / n)
    h = domain_length / n
    phase = np.exp(1j * k * sign * h / 2)
    if n % 2 == 0:
        phase[n // 2] = np.cos(k[n // 2] * h / 2)  # Nyquist: keep the field real
    shape = [1, 1]
    shape[axis] = n
    return jnp.real(jnp.fft.ifft(jnp.fft.fft(field, axis=axis) * phase.reshape(shape), axis=axis))


def _sum_forcings(forcings):
    # JAX-CFD's own sum_forcings calls jax.tree_map, which JAX 0.12 no longer has
    def force(v):
        terms = [f(v) for f in forcings]
        return tuple(sum(parts[1:], parts[0]) for parts in zip(*terms, strict=True))

    return force


def finite_volume_engine(u0, v0, domain, *, forcing: str | None = None, drag: float = 0.0,
                         forcing_wavenumber: int = 4) -> Engine:  # fmt: skip
    """JAX-CFD's staggered finite-volume engine started from cell-centred ``(u0, v0)``.

    The start field is moved to the faces spectrally and projected (exactly
    divergence-free on the grid).
    """
    import jax
    import jax.numpy as jnp
    import jax_cfd.base as cfd

    shape = tuple(u0.shape)
    grid = _grid(shape, domain)
    hx, hy = domain[0] / shape[0], domain[1] / shape[1]
    bc = cfd.boundaries.periodic_boundary_conditions(2)
    offsets = ((1.0, 0.5), (0.5, 1.0))

    def wrap(state):
        return tuple(
            cfd.grids.GridVariable(cfd.grids.GridArray(a, o, grid), bc)
            for a, o in zip(state, offsets, strict=True)
        )

    def init(velocity):
        # cell centre -> face: +h/2 along the component's own axis
        uf = _shift_half(velocity[0], 0, domain[0], sign=1.0)
        vf = _shift_half(velocity[1], 1, domain[1], sign=1.0)
        return tuple(c.data for c in cfd.pressure.projection(wrap((uf, vf))))

    state0 = init(jnp.stack([jnp.asarray(u0), jnp.asarray(v0)]))

    forcings = []
    if forcing == "kolmogorov":
        forcings.append(cfd.forcings.kolmogorov_forcing(grid, k=forcing_wavenumber))
    if drag:
        forcings.append(cfd.forcings.linear_forcing(grid, -drag))
    force = _sum_forcings(forcings) if forcings else None

    def one_step(state, dt, nu):
        step = cfd.equations.semi_implicit_navier_stokes(
            density=1.0, viscosity=nu, dt=dt, grid=grid,
            convect=cfd.advection.convect_linear, forcing=force,
            time_stepper=cfd.time_stepping.classic_rk4,
        )  # fmt: skip
        return tuple(c.data for c in step(wrap(state)))

    @functools.partial(jax.jit, static_argnums=3)
    def advance(state, dt, nu, steps):
        return jax.lax.fori_loop(0, steps, lambda _, s: one_step(s, dt, nu), state)

    def centres(state):
        u, v = state
        return 0.5 * (u + jnp.roll(u, 1, 0)), 0.5 * (v + jnp.roll(v, 1, 1))

    def vorticity(state):
        u, v = state
        corner = (jnp.roll(v, -1, 0) - v) / hx - (jnp.roll(u, -1, 1) - u) / hy  # at (i+1, j+1)
        # mean of the four corners of cell (i, j)
        c = corner + jnp.roll(corner, 1, 0)
        return 0.25 * (c + jnp.roll(c, 1, 1))

    @jax.jit
    def diagnostics(state):
        u, v = state
        uc, vc = centres(state)
        w = vorticity(state)
        div = (u - jnp.roll(u, 1, 0)) / hx + (v - jnp.roll(v, 1, 1)) / hy
        return {
            "kinetic_energy": 0.5 * jnp.mean(uc**2 + vc**2),
            "enstrophy": 0.5 * jnp.mean(w**2),
            "divergence": jnp.max(jnp.abs(div)),
            "max_speed": jnp.sqrt(jnp.max(uc**2 + vc**2)),
            "courant_rate": jnp.max(jnp.abs(u)) / hx + jnp.max(jnp.abs(v)) / hy,
        }

    return Engine(
        name="finite_volume",
        state0=state0,
        advance=advance,
        diagnostics=diagnostics,
        velocity=lambda state: jnp.stack(centres(state)),
        vorticity=vorticity,
        spacing=min(hx, hy),
        cfl=0.5,
        # classic RK4 reaches -2.78 on the real axis; the 2-D five-point
        # Laplacian's largest eigenvalue is 8 nu / h^2 on a square grid
        viscous_factor=0.25,
        scheme="JAX-CFD staggered finite volumes: second-order central convection, classic RK4,"
        " pressure projection by fast diagonalisation",
        native=lambda state: {"u_faces": state[0], "v_faces": state[1]},
        init=init,
        step=one_step,
    )
