"""The record loop of ``jaxpro.cfd.simulate``: dt control, CFL checks, records, the result.

Each record interval is one compiled call of a fixed number of steps (cached
per engine and step count); between calls the loop reads the diagnostics,
checks the Courant number and finiteness, halves dt when it must (dt='auto'),
detects a steady state, and assembles the :class:`FlowResult` with its checks.
"""

from __future__ import annotations

import math
import time

import numpy as np

from jaxpro._progress import progress_bar
from jaxpro._result import Check, Plan, Timings
from jaxpro.cfd._flowresult import FlowResult
from jaxpro.cfd._flows import taylor_green_velocity
from jaxpro.errors import InputError, SimulationError, SimulationWarning, warn

__all__ = ["run"]

CFL_STOP = 1.0  # a record above this Courant number is not trusted
CFL_DRIFT = 0.8  # dt='auto' halves dt when the flow speeds up past this
MAX_HALVINGS = 6
# max |div u| h / max|u| of an exactly projected field is rounding: a few eps
# measured (float64 2e-16 to 5e-16, float32 5e-7); 1000 eps flags a real leak
DIVERGENCE_EPS = 1000
# the cavity at Re = 1000 against Ghia et al.: cell Reynolds 7.8 (128^2) 1.2% of the
# lid speed, 15.6 (64^2) 2.0%, 31 (32^2) 8%; above 16 the 2% benchmark is lost
CELL_REYNOLDS = 16.0


class _Records:
    def __init__(self):
        self.rows: dict[str, list[float]] = {}
        self.frames: list[np.ndarray] = []  # vorticity snapshots for animations
        self.frame_times: list[float] = []

    def add(self, t: float, diag: dict, dt: float, residual: float):
        row = {key: float(value) for key, value in diag.items()}
        row["time"] = t
        row["courant"] = dt * row.pop("courant_rate")
        row["residual"] = residual
        for key, value in row.items():
            self.rows.setdefault(key, []).append(value)

    def snapshot(self, t: float, vorticity) -> None:
        self.frames.append(np.asarray(vorticity))
        self.frame_times.append(t)

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.rows[key])


def _auto_dt(engine, diag0, spec, nu, reasons) -> float:
    rate = float(diag0["courant_rate"])
    h = engine.spacing
    # a flow at rest (cavity, channel) will move at about its velocity scale
    floor = (spec.velocity_scale if spec is not None else 0.0) * 2.0 / h
    rate = max(rate, floor, 1e-12)
    dt = engine.cfl / rate
    reasons.append(f"dt from the CFL condition: {engine.cfl} / (max|u|/dx + max|v|/dy) = {dt:.3g}")
    if engine.viscous_factor is not None:
        limit = engine.viscous_factor * h**2 / nu
        if limit < dt:
            dt = limit
            reasons.append(f"dt from the viscous limit {engine.viscous_factor} h^2 / nu = {dt:.3g}")
    return dt


def run(engine, spec, cells, domain, nu, re, t_end, dt, record_every, steady_tol,
        max_time, progress, reasons, x, y, start_clock, checkpoint=None,
        frames: int = 0, max_records: int | None = None) -> FlowResult:  # fmt: skip
    """Run ``engine`` to ``t_end`` (or to steady state when it is None) and build the result.

    ``checkpoint``: None, or ``(directory, every, settings, field)``: save every
    ``every`` records into ``directory`` and resume from its last checkpoint.
    ``frames``: about how many vorticity snapshots to keep (evenly spaced records).
    ``max_records``: stop after this many records (``jaxpro.plan`` times one).
    """
    import jax

    diag0 = jax.device_get(engine.diagnostics(engine.state0))
    auto = dt == "auto"
    if auto:
        dt = _auto_dt(engine, diag0, spec, nu, reasons)
    else:
        courant = dt * float(diag0["courant_rate"])
        if courant > CFL_STOP:
            raise InputError(
                f"breaks the CFL condition at the start (Courant number {courant:.3g} > {CFL_STOP});"
                f" use dt <= {CFL_STOP / float(diag0['courant_rate']):.3g} or dt='auto'",
                argument="dt", received=dt,
            )  # fmt: skip
        if engine.viscous_factor is not None:
            limit = engine.viscous_factor * engine.spacing**2 / nu
            if dt > limit:
                raise InputError(
                    f"breaks this method's explicit viscous limit {engine.viscous_factor} h^2 / nu"
                    f" = {limit:.3g}; use a smaller dt or dt='auto'",
                    argument="dt", received=dt,
                )  # fmt: skip
        reasons.append(f"dt = {dt:g} as given")
    until_steady = t_end is None
    if until_steady:
        interval = record_every or 1.0
        total = max_time
        reasons.append(
            f"run until steady (max |du/dt| < {steady_tol:g}), checked every {interval:g}"
            f" time units, at most to t = {max_time:g}"
        )
    else:
        wanted = record_every or t_end / 100
        records = max(1, round(t_end / wanted))
        interval = t_end / records
        total = t_end
    expected = max(1, round(total / interval))
    keep_every = max(1, math.ceil(expected / frames)) if frames else 0
    steps = max(1, math.ceil(interval / dt * (1 - 1e-12)))
    dt = interval / steps

    compile_s = 0.0
    programs: dict[int, object] = {}
    run_tic = None

    def program(n):
        nonlocal compile_s, run_tic
        if n not in programs:
            from jaxpro import _cache

            programs[n], seconds = _cache.compiled(
                ("cfd", *engine.key, n),
                lambda: engine.advance.lower(engine.state0, dt, nu, n).compile(),
            )
            compile_s += seconds
            if run_tic is not None:  # a compile inside the loop (dt halved) is not run time
                run_tic += seconds
        return programs[n]

    records = _Records()
    records.add(0.0, diag0, dt, math.nan)
    if keep_every:
        records.snapshot(0.0, engine.vorticity(engine.state0))
    state, t, taken, halvings, record = engine.state0, 0.0, 0, 0, 0
    steady = None
    saver = None
    if checkpoint is not None:
        from jaxpro.cfd import _restart

        directory, every, settings, field = checkpoint
        print_ = _restart.fingerprint({**settings, "dt_start": dt}, field)
        resume = _restart.load(directory, print_, engine.state0)
        if resume is not None:
            state, t, taken, dt, steps = (
                resume.state,
                resume.t,
                resume.taken,
                resume.dt,
                resume.steps,
            )
            halvings, record, records.rows = resume.halvings, resume.record, resume.rows
            records.frames, records.frame_times = resume.frames, resume.frame_times
            steady = resume.steady
        reasons.append(
            f"checkpoints every {every} records in {directory} (Orbax, atomic, the last"
            f" {_restart.KEEP} kept)" + (f"; resumed from t = {t:.4g}" if resume else "")
        )

        def saver(final=False):
            if record % every == 0 or final:
                clock = {"t": t, "taken": taken, "dt": dt, "steps": steps,
                         "halvings": halvings, "steady": steady}  # fmt: skip
                _restart.save(directory, record, state, records, clock, print_)

    program(steps)  # compiled before the clock starts: timings.run is execution only
    try:
        memory = programs[steps].memory_analysis()
    except Exception:  # not every backend reports it
        memory = None
    program_bytes = None if memory is None else int(
        memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
    )  # fmt: skip
    reasons.append(
        f"{steps} steps per record, one compiled program"
        + (f" of {program_bytes / 2**20:.3g} MiB" if program_bytes else "")
    )
    run_tic = time.perf_counter()
    with progress_bar(progress, total, by="completed") as bar:
        while t < total * (1 - 1e-12) and not steady:
            new = program(steps)(state, dt, nu)
            diag = jax.device_get(engine.diagnostics(new))
            courant = dt * float(diag["courant_rate"])
            finite = all(np.isfinite(float(v)) for v in diag.values())
            if not finite or courant > CFL_STOP:
                what = (f"the flow blew up (non-finite values) by t = {t + interval:.4g}" if not
                        finite else f"the Courant number reached {courant:.3g} > {CFL_STOP} at"
                        f" t = {t + interval:.4g}")  # fmt: skip
                if auto and halvings < MAX_HALVINGS:
                    halvings += 1
                    steps, dt = 2 * steps, dt / 2
                    reasons.append(f"{what}: record redone with dt halved to {dt:.3g}")
                    continue
                partial = _result(engine, spec, state, records, cells, domain, nu, re, dt,
                                  taken, steady, reasons, x, y, compile_s, run_tic,
                                  start_clock, t_end, program_bytes)  # fmt: skip
                advice = ("use a smaller dt or dt='auto'" if not auto else
                          "refine the grid or raise the viscosity")  # fmt: skip
                raise SimulationError(f"{what}; stopped at the last good record (t = {t:.4g}):"
                                      f" {advice}", step=taken, partial=partial)  # fmt: skip
            residual = _change(engine.velocity(state), engine.velocity(new)) / interval
            state, t, taken, record = new, t + interval, taken + steps, record + 1
            records.add(t, diag, dt, residual)
            if keep_every and record % keep_every == 0:
                records.snapshot(t, engine.vorticity(state))
            if bar is not None:
                bar(t)
            if until_steady and residual < steady_tol:
                steady = True
            elif auto and courant > CFL_DRIFT and halvings < MAX_HALVINGS:
                halvings += 1
                steps, dt = 2 * steps, dt / 2
                reasons.append(f"the Courant number rose to {courant:.3g} at t = {t:.4g}: dt"
                               f" halved to {dt:.3g} for the rest of the run")  # fmt: skip
            # saved after the dt decision, so a resumed run steps exactly as this one
            if saver is not None:
                saver(final=bool(steady) or t >= total * (1 - 1e-12))
            if max_records is not None and record >= max_records:
                break
        if until_steady and steady is None:
            steady = False
    return _result(engine, spec, state, records, cells, domain, nu, re, dt, taken, steady,
                   reasons, x, y, compile_s, run_tic, start_clock, t_end,
                   program_bytes)  # fmt: skip


def _change(old, new) -> float:
    """max |new - old| of two velocity fields."""
    import jax.numpy as jnp

    return float(jnp.max(jnp.abs(new - old)))


def _checks(spec, records, state, engine, nu, steady, x, y, t) -> tuple[Check, ...]:
    import jax

    checks = []
    speed = max(float(records.array("max_speed").max()), 1e-300)
    relative = float(records.array("divergence").max()) * engine.spacing / speed
    leaf = np.asarray(jax.tree_util.tree_leaves(state)[0])
    limit = DIVERGENCE_EPS * float(np.finfo(leaf.real.dtype).eps)
    checks.append(Check(
        "divergence", relative, limit, relative <= limit,
        f"incompressible: max |div u| h / max|u| = {relative:.2g} (limit {limit:.2g})",
    ))  # fmt: skip
    courant = float(records.array("courant").max())
    checks.append(Check(
        "cfl", courant, CFL_STOP, courant <= CFL_STOP,
        f"CFL: largest Courant number {courant:.3g} (limit {CFL_STOP:g})",
    ))  # fmt: skip
    if spec is not None and spec.name == "taylor_green":
        exact = np.stack(taylor_green_velocity(*np.meshgrid(x, y, indexing="ij"), t, nu))
        error = float(np.max(np.abs(np.asarray(engine.velocity(state)) - exact)))
        error /= max(float(np.max(np.abs(exact))), 1e-300)
        limit = 1e-2
        checks.append(Check(
            "analytic", error, limit, error <= limit,
            f"Taylor-Green: max error against the exact solution {error:.2g} of its peak"
            + ("" if error <= limit else ": refine the grid or the time step"),
        ))  # fmt: skip
    if spec is not None and spec.walls is not None:
        # central fluxes on a wall-bounded flow: the cell Reynolds number says
        # whether the grid resolves the boundary layers
        cell = spec.velocity_scale * engine.spacing / nu
        ok = cell <= CELL_REYNOLDS
        checks.append(Check(
            "resolution", cell, CELL_REYNOLDS, ok,
            f"resolution: cell Reynolds number U h / nu = {cell:.3g} (limit {CELL_REYNOLDS:g})"
            + ("" if ok else f": the grid under-resolves the wall layers; use at least"
               f" {math.ceil(spec.velocity_scale * max(spec.domain) / (CELL_REYNOLDS * nu))}"
               " cells a side"),
        ))  # fmt: skip
    if steady is not None:
        residual = float(records.array("residual")[-1])
        checks.append(Check(
            "steady", residual, float("nan"), bool(steady),
            f"steady state {'reached' if steady else 'NOT reached'}: max |du/dt| = {residual:.2g}"
            + ("" if steady else " (raise max_time, or give t_end for a transient)"),
        ))  # fmt: skip
    return tuple(checks)


def _result(engine, spec, state, records, cells, domain, nu, re, dt, taken, steady, reasons,
            x, y, compile_s, run_tic, start_clock, t_end, program_bytes=None) -> FlowResult:  # fmt: skip
    import jax

    run_s = time.perf_counter() - run_tic
    t = float(records.array("time")[-1])
    checks = _checks(spec, records, state, engine, nu, steady, x, y, t)
    for check in checks:
        if not check.passed:
            warn(check.message, SimulationWarning)
    plan = Plan(
        method=engine.name,
        reasons=(*reasons, engine.scheme),
        settings={
            "grid": list(cells), "domain": list(domain), "viscosity": nu, "reynolds": re,
            "dt": dt, "t_end": t_end, "devices": len(jax.devices()),
            "program_bytes": program_bytes,
        },
    )  # fmt: skip
    native = {k: np.asarray(v) for k, v in engine.native(state).items()}
    return FlowResult(
        flow=spec.name if spec is not None else "user",
        method=engine.name,
        grid=cells,
        domain=tuple(float(d) for d in domain),
        viscosity=nu,
        reynolds=re,
        times=records.array("time"),
        kinetic_energy=records.array("kinetic_energy"),
        enstrophy=records.array("enstrophy"),
        divergence=records.array("divergence"),
        max_speed=records.array("max_speed"),
        courant=records.array("courant"),
        velocity=np.asarray(engine.velocity(state)),
        vorticity=np.asarray(engine.vorticity(state)),
        x=x,
        y=y,
        dt=dt,
        steps=taken,
        steady=steady,
        residual=records.array("residual"),
        checks=checks,
        plan=plan,
        timings=Timings(compile=compile_s, run=run_s, total=time.perf_counter() - start_clock),
        native=native,
        lid=1.0 if spec is not None and spec.walls == "cavity" else 0.0,
        frames=np.stack(records.frames) if records.frames else None,
        frame_times=np.asarray(records.frame_times),
    )
