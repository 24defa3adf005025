"""``jaxpro.cfd.simulate``: a named (or user) flow, a grid and a Reynolds number in;
a stable, checked simulation out.

Decisions (each recorded in the plan):
- **method**: periodic flows run on JAX-CFD, pseudo-spectral by default (exact
  derivatives, implicit diffusion: the accurate choice for smooth periodic
  flows); ``finite_volume`` on request, or when a user's field has a mean flow
  (the vorticity form cannot carry one). Walled flows (cavity, channel) run on
  jaxpro's own projection solver (``_walls``): JAX-CFD's walled solvers do not
  run on JAX 0.12.
- **dt='auto'**: the advective limit ``dt = C / (max|u|/dx + max|v|/dy)``
  (C = 0.5) and, where diffusion is explicit, the viscous limit ``0.25 h^2 / nu``;
  it is re-checked at every record. A Courant number drifting above 0.8 halves dt
  for the rest of the run; a record that exceeds 1 (or is not finite) is redone
  from the record before with dt halved. A fixed ``dt`` that breaks CFL stops the
  run with a :class:`~jaxpro.errors.SimulationError` that names the record and
  carries the result up to it, never NaN fields.
- **records**: ``record_every`` (flow time) is rounded so that records land on
  ``t_end`` exactly; each record interval is one compiled call of a fixed number
  of steps, so a run compiles once per grid (and again only when dt halves).
- **steady state**: walled flows without ``t_end`` run until the velocity
  changes by less than ``steady_tol`` per unit time over a record interval (or
  until ``max_time``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from jaxpro.cfd._flowresult import FlowResult
from jaxpro.cfd._flows import FLOWS, Flow
from jaxpro.cfd._runner import run
from jaxpro.errors import InputError, SimulationWarning, warn

__all__ = ["simulate"]

METHODS = ("auto", "spectral", "finite_volume")


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputError("must be a positive number", argument=name, received=value)
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise InputError("must be a positive, finite number", argument=name, received=value)
    return number


def _check_grid(grid, flow: Flow | None, field_shape) -> tuple[int, int]:
    if grid is None:
        return field_shape if field_shape is not None else (64, 64)
    if isinstance(grid, int | np.integer) and not isinstance(grid, bool):
        grid = (int(grid), int(grid))
    if (
        not isinstance(grid, tuple | list)
        or len(grid) != 2
        or not all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in grid)
    ):
        raise InputError(
            "must be an int or a pair of ints (nx, ny)", argument="grid", received=grid
        )
    nx, ny = int(grid[0]), int(grid[1])
    least = flow.min_cells if flow is not None else 8
    if min(nx, ny) < least:
        what = f"the {flow.name} flow" if flow is not None else "a flow"
        raise InputError(
            f"{nx} x {ny} cells is too coarse for {what}: it needs at least {least} cells a side",
            argument="grid", received=grid,
        )  # fmt: skip
    if field_shape is not None and (nx, ny) != field_shape:
        raise InputError(
            f"does not match the initial field's {field_shape[0]} x {field_shape[1]} cells",
            argument="grid", received=grid,
        )  # fmt: skip
    return nx, ny


def _user_field(flow) -> np.ndarray:
    try:
        field = np.asarray(flow, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            f"must be one of {sorted(FLOWS)} or a velocity array (2, nx, ny)",
            argument="flow", received=flow,
        ) from None  # fmt: skip
    if field.ndim != 3 or field.shape[0] != 2:
        raise InputError(
            "a user velocity field must have shape (2, nx, ny): u and v at the cell centres",
            argument="flow", received=flow,
        )  # fmt: skip
    if not np.all(np.isfinite(field)):
        bad = int(np.sum(~np.isfinite(field)))
        raise InputError(f"the initial velocity field has {bad} NaN or infinite values",
                         argument="flow", received=flow)  # fmt: skip
    return field


def _viscosity(viscosity, reynolds, flow: Flow | None) -> tuple[float, float]:
    scale = 1.0 if flow is None else flow.velocity_scale * flow.length_scale
    if viscosity is not None:
        nu = _positive(viscosity, "viscosity")
        if reynolds is not None:
            re = _positive(reynolds, "reynolds")
            if not math.isclose(scale / nu, re, rel_tol=1e-9):
                raise InputError(
                    f"viscosity {nu:g} gives Re = {scale / nu:g} for this flow; give one of"
                    " viscosity and reynolds",
                    argument="reynolds", received=reynolds,
                )  # fmt: skip
        return nu, scale / nu
    if reynolds is not None:
        re = _positive(reynolds, "reynolds")
        return scale / re, re
    re = 100.0 if flow is None else flow.default_reynolds
    return scale / re, re


def _engine(method: str, flow: Flow | None, field, grid, domain):
    import dataclasses

    import jax.numpy as jnp

    engine = _make_engine(method, flow, field, grid, domain)
    # everything the compiled step program depends on besides its arguments
    # (the state, dt and nu are arguments; the grid and forcing are constants)
    key = (engine.name, flow.name if flow is not None else "user", tuple(grid),
           tuple(float(d) for d in domain), str(jnp.asarray(0.0).dtype))  # fmt: skip
    return dataclasses.replace(engine, key=key)


def _make_engine(method: str, flow: Flow | None, field, grid, domain):
    from jaxpro.cfd import _periodic, _walls

    if flow is not None and flow.walls is not None:
        walls = _walls.WallGrid(
            grid[0], grid[1], domain[0], domain[1], periodic_x=flow.walls == "channel",
            lid=1.0 if flow.walls == "cavity" else 0.0,
        )  # fmt: skip
        # the channel's pressure gradient 8 nu gives the laminar centreline speed 1
        return _walls.walls_engine(
            walls, force_per_viscosity=8.0 if flow.walls == "channel" else 0.0
        )
    u0, v0 = field
    kwargs = {}
    if flow is not None:
        kwargs = {"forcing": flow.forcing, "drag": flow.drag}
    make = _periodic.spectral_engine if method == "spectral" else _periodic.finite_volume_engine
    return make(u0, v0, domain, **kwargs)


def _choose_method(method, flow: Flow | None, field, reasons: list[str]) -> str:
    if method not in METHODS:
        raise InputError(f"must be one of {METHODS}", argument="method", received=method)
    if flow is not None and flow.walls is not None:
        if method == "spectral":
            raise InputError(
                f"the {flow.name} flow has walls; the spectral method needs a periodic domain"
                " (use method='finite_volume' or 'auto')",
                argument="method", received=method,
            )  # fmt: skip
        reasons.append(
            "walls: jaxpro's own projection solver (JAX-CFD's walled solvers do not run on"
            " JAX 0.12)"
        )
        return "projection"
    mean = float(np.max(np.abs(field.mean(axis=(1, 2)))))
    peak = float(np.max(np.abs(field))) or 1.0
    if method == "auto":
        if mean > 1e-10 * peak:
            reasons.append(
                f"the start field has a mean flow ({mean:.3g}): finite volumes (the spectral"
                " vorticity form cannot carry a mean flow)"
            )
            return "finite_volume"
        reasons.append(
            "periodic and smooth: pseudo-spectral (exact derivatives, implicit diffusion)"
        )
        return "spectral"
    if method == "spectral" and mean > 1e-10 * peak:
        raise InputError(
            f"the start field has a mean flow ({mean:.3g}), which the spectral vorticity form"
            " drops; use method='finite_volume'",
            argument="method", received=method,
        )  # fmt: skip
    reasons.append(f"method={method!r} as requested")
    return method


def _divergence_free(field, domain, reasons: list[str]) -> np.ndarray:
    """A user field with divergence is projected (and the plan says by how much)."""
    from jaxpro.cfd._periodic import _wavenumbers

    shape = field.shape[1:]
    kx, ky = _wavenumbers(shape, domain)
    uh, vh = np.fft.rfft2(field[0]), np.fft.rfft2(field[1])
    div = np.fft.irfft2(1j * kx * uh + 1j * ky * vh, s=shape)
    h = min(domain[0] / shape[0], domain[1] / shape[1])
    relative = float(np.max(np.abs(div)) * h / (np.max(np.abs(field)) or 1.0))
    if relative <= 1e-10:
        return field
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    phi = (1j * kx * uh + 1j * ky * vh) / k2  # grad phi is the divergent part
    projected = np.stack([
        np.fft.irfft2(uh - 1j * kx * phi, s=shape), np.fft.irfft2(vh - 1j * ky * phi, s=shape)
    ])  # fmt: skip
    removed = float(np.sqrt(np.mean((field - projected) ** 2) / np.mean(field**2)))
    message = (
        f"the initial field had divergence (max |div u| h / max|u| = {relative:.2g}); it was"
        f" projected onto divergence-free fields, changing it by {removed:.2g} (rms, relative)"
    )
    reasons.append(message)
    warn(message, SimulationWarning)
    return projected


def simulate(
    flow="taylor_green",
    grid=None,
    viscosity: float | None = None,
    t_end: float | None = None,
    dt: float | str = "auto",
    reynolds: float | None = None,
    method: str = "auto",
    record_every: float | None = None,
    checkpoint_dir=None,
    *,
    checkpoint_every: int | None = None,
    frames: int = 0,
    _max_records: int | None = None,
    domain: tuple[float, float] | None = None,
    seed: int = 0,
    precision: str = "float64",
    steady_tol: float = 1e-6,
    max_time: float = 500.0,
    progress: bool | None = None,
) -> FlowResult:
    """Simulate 2-D incompressible Navier-Stokes flow and check it.

    Args:
        flow: "taylor_green", "decaying_turbulence", "kolmogorov",
            "lid_driven_cavity", "channel" (see :mod:`jaxpro.cfd._flows` for their
            domains and scales), or an initial velocity array ``(2, nx, ny)`` at the
            cell centres of a periodic domain (``domain``, default ``(2 pi, 2 pi)``);
            a field with divergence is projected, with a warning.
        grid: cells ``(nx, ny)`` or one int for a square grid (default 64 x 64 for
            a named flow, the field's own for a user field).
        viscosity: kinematic viscosity; or give ``reynolds`` (``U L / nu`` with the
            flow's scales, all 1 for the named flows).
        t_end: flow time to simulate; walled flows default to running until steady.
        dt: time step, or "auto" (CFL and viscous limits, re-checked every record).
        method: "auto", "spectral" or "finite_volume" (periodic flows; walled flows
            always use jaxpro's projection solver).
        record_every: flow time between records (default: 100 records, or 1 time
            unit for a run to steady state).
        checkpoint_dir: a folder for checkpoints (Orbax): the run saves its state,
            records and clock there, and the same call again resumes from the last
            one (a folder of another run is refused).
        checkpoint_every: records between checkpoints (default 10; the last
            record is always saved).
        frames: keep about this many vorticity snapshots (evenly spaced records)
            for :meth:`FlowResult.animate` (default none).
        domain: ``(lx, ly)`` for a user field.
        seed: the random start of the turbulent flows.
        precision: "float64" (default) or "float32".
        steady_tol: the steady-state threshold on ``max |du/dt|``.
        max_time: the longest run to steady state.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        A :class:`FlowResult`.

    Raises:
        InputError: bad arguments (each names the argument and quotes it).
        SimulationError: a fixed ``dt`` broke the CFL limit or the flow blew up
            (``partial`` holds the result up to the last good record).
    """
    import jax

    start_clock = time.perf_counter()
    reasons: list[str] = []
    spec, user, cells, domain, x, y = setup(flow, grid, domain, precision)
    nu, re = _viscosity(viscosity, reynolds, spec)
    if t_end is not None:
        t_end = _positive(t_end, "t_end")
    elif spec is not None and spec.default_t_end is not None:
        t_end = spec.default_t_end
    elif spec is None:
        t_end = 1.0
    if dt != "auto":
        dt = _positive(dt, "dt")
    if record_every is not None:
        record_every = _positive(record_every, "record_every")
    steady_tol = _positive(steady_tol, "steady_tol")
    max_time = _positive(max_time, "max_time")
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
        or checkpoint_every < 1
    ):  # fmt: skip
        raise InputError("must be a positive number of records", argument="checkpoint_every",
                         received=checkpoint_every)  # fmt: skip
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise InputError("must be a whole number of snapshots >= 0", argument="frames",
                         received=frames)  # fmt: skip
    if checkpoint_dir is not None and (
        not isinstance(checkpoint_dir, str | Path) or not str(checkpoint_dir)
    ):
        raise InputError(
            "must be a folder path", argument="checkpoint_dir", received=checkpoint_dir
        )

    with jax.enable_x64(precision == "float64"):
        engine, field = build(spec, user, cells, domain, x, y, seed, method, reasons)
        reasons.append(f"precision {precision}")
        checkpoint = None
        if checkpoint_dir is not None:
            settings = {"flow": spec.name if spec else "user", "grid": cells, "domain": domain,
                        "method": engine.name, "viscosity": nu, "t_end": t_end, "dt": dt,
                        "record_every": record_every, "precision": precision, "seed": seed,
                        "steady_tol": steady_tol, "max_time": max_time}  # fmt: skip
            every = checkpoint_every or 10
            checkpoint = (Path(checkpoint_dir).absolute(), every, settings, field)
        return run(engine, spec, cells, domain, nu, re, t_end, dt, record_every,
                   steady_tol, max_time, progress, reasons, x, y, start_clock,
                   checkpoint, frames, _max_records)  # fmt: skip


def setup(flow, grid, domain, precision):
    """Check the flow, grid, domain and precision arguments.

    Returns:
        ``(spec, user, cells, domain, x, y)``: the named flow (or None) and the
        user's field (or None), the cells, the domain and the cell centres.
    """
    user = None
    if isinstance(flow, str):
        if flow not in FLOWS:
            raise InputError(f"must be one of {sorted(FLOWS)} or a velocity array (2, nx, ny)",
                             argument="flow", received=flow)  # fmt: skip
        spec: Flow | None = FLOWS[flow]
        field_shape = None
    else:
        spec = None
        user = _user_field(flow)
        field_shape = tuple(user.shape[1:])
    cells = _check_grid(grid, spec, field_shape)
    if precision not in ("float64", "float32"):
        raise InputError("must be 'float64' or 'float32'", argument="precision", received=precision)
    if spec is not None and domain is not None:
        raise InputError("is set by the named flow; give it only with a user field",
                         argument="domain", received=domain)  # fmt: skip
    if spec is None:
        domain = (2 * np.pi, 2 * np.pi) if domain is None else domain
        if not isinstance(domain, tuple | list) or len(domain) != 2:
            raise InputError("must be a pair (lx, ly)", argument="domain", received=domain)
        domain = (_positive(domain[0], "domain"), _positive(domain[1], "domain"))
    else:
        domain = spec.domain
    x = (np.arange(cells[0]) + 0.5) * domain[0] / cells[0]
    y = (np.arange(cells[1]) + 0.5) * domain[1] / cells[1]
    return spec, user, cells, domain, x, y


def build(spec, user, cells, domain, x, y, seed, method, reasons):
    """The start field (projected if needed) and the engine; call under the precision context.

    Returns:
        ``(engine, field)``: field is the cell-centred start ``(2, nx, ny)``, or
        None for a walled flow (it starts at rest).
    """
    if spec is not None:
        reasons.append(spec.description)
    if spec is None:
        field = _divergence_free(user, domain, reasons)
    elif spec.start is not None:
        mesh = np.meshgrid(x, y, indexing="ij")
        field = np.stack([np.asarray(c, dtype=float) for c in spec.start(*mesh, seed)])
    else:
        field = None
    method = _choose_method(method, spec, field, reasons)
    return _engine(method, spec, field, cells, domain), field
