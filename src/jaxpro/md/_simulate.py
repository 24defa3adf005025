"""``jaxpro.md.simulate``: a validated MD run in compiled chunks.

Method choices, each recorded in the plan:

- **neighbour lists** above ``NEIGHBOR_MIN`` particles (all pairs below: cheaper
  than building lists); a list that overflows is re-allocated from the chunk's
  end positions and the chunk is run again from its start, so a run never
  continues with missing neighbours (from the positions before the chunk, a
  lattice start can keep under-sizing it);
- **time step** ``dt='auto'``: a hundredth of the period of a pair oscillating
  at the potential's minimum (its curvature; for a user energy the stiffest
  mode of the Hessian), then verified by a short NVE trial (500 steps): its
  linear energy drift extrapolated to the whole run plus three standard
  deviations of its fluctuation must stay under half the drift limit (dt is
  halved up to 3 times if not). Truncated-and-shifted LJ at rho = 0.8442,
  T = 0.72 fluctuates by 3.7e-5 of E at dt = 0.005 (max |dE/E| 1.5e-4 over
  10,000 steps) and 3.4e-6 at dt = 0.0025 (1.4e-5): it gets 0.0025;
- **precision**: float64 by default (``precision='float32'`` for speed).

Overlapping particles (a largest initial force above 1e4) are first relaxed by
FIRE energy minimisation (JAX-MD) until no force exceeds 100; the plan says so.

NPT runs JAX-MD's Martyna-Tuckerman-Klein integrator on box fractions with
jaxpro's neighbour list (rebuilt also when the box shrank enough to bring a
listed-out pair inside the cutoff); a box squeezed under twice the cutoff stops
the run.

Validation (``_records``): NVE energy drift ``max |E(t) - E(0)| / |E(0)|``
against 1e-4, total momentum conservation, for NVT and NPT the mean temperature
of the second half within 5% of the target, for NPT the mean pressure within 3
standard errors. A failed check warns (:class:`SimulationWarning`) with advice;
NaN energies stop the run (:class:`SimulationError` with the step).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np

from jaxpro._progress import progress_bar
from jaxpro._result import Plan, Timings
from jaxpro.errors import InputError, SimulationError, SimulationWarning, warn
from jaxpro.md import _engine as eng
from jaxpro.md._records import DRIFT_LIMIT, assemble
from jaxpro.md._runner import Runner
from jaxpro.md._systems import System
from jaxpro.md._trajectory import Trajectory

__all__ = ["simulate"]

ENSEMBLES = ("nve", "nvt", "npt")
METHODS = {"nve": "velocity Verlet", "nvt": "Nose-Hoover chain",
           "npt": "Nose-Hoover chains, isotropic barostat"}  # fmt: skip
NEIGHBOR_MIN = 300
TRIAL_LIMIT = DRIFT_LIMIT / 2  # what a dt trial may predict for the whole run
FORCE_LIMIT = 1e4  # a larger initial force means overlapping particles: minimise first
RELAXED_FORCE = 100.0  # FIRE stops below this largest force
FIRE_STEPS = 5000
CHUNK_STEPS = 2000  # steps per compiled chunk (the host checks between chunks)


def _check_inputs(system, ensemble, steps, dt, kT, record_every, precision, pressure):
    if not isinstance(system, System):
        raise InputError("must be a jaxpro.md System (e.g. jaxpro.md.lennard_jones_fluid(...))",
                         argument="system", received=system)  # fmt: skip
    if ensemble not in ENSEMBLES:
        raise InputError(f"must be one of {ENSEMBLES}", argument="ensemble", received=ensemble)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("must be a positive integer", argument="steps", received=steps)
    if dt != "auto" and (
        isinstance(dt, bool) or not isinstance(dt, int | float) or not 0 < dt < math.inf
    ):
        raise InputError("must be 'auto' or a positive number", argument="dt", received=dt)
    if kT is not None and (isinstance(kT, bool) or not isinstance(kT, int | float) or kT <= 0):
        raise InputError("must be a positive temperature", argument="kT", received=kT)
    if record_every is not None and (
        isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1
    ):
        raise InputError("must be a positive integer", argument="record_every",
                         received=record_every)  # fmt: skip
    if record_every is not None and steps % record_every:
        raise InputError(f"must divide steps ({steps})", argument="record_every",
                         received=record_every)  # fmt: skip
    if ensemble == "npt":
        if pressure is None:
            raise InputError("is needed for ensemble='npt' (the barostat's target)",
                             argument="pressure", received=pressure)  # fmt: skip
        if (isinstance(pressure, bool) or not isinstance(pressure, int | float)
                or not math.isfinite(pressure)):  # fmt: skip
            raise InputError("must be a finite number", argument="pressure", received=pressure)
        if system.potential is None:
            raise InputError("needs a pair potential for ensemble='npt' (a user energy has no"
                             " box to scale)", argument="system")  # fmt: skip
    elif pressure is not None:
        raise InputError(f"is only for ensemble='npt' (got ensemble={ensemble!r})",
                         argument="pressure", received=pressure)  # fmt: skip
    if precision not in ("float64", "float32"):
        raise InputError("must be 'float64' or 'float32'", argument="precision",
                         received=precision)  # fmt: skip


def _precision(precision: str):
    import jax

    return jax.enable_x64(precision == "float64")


def _largest_divisor(n: int, at_most: int) -> int:
    for d in range(min(n, max(at_most, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


def _stiffness(system: System, engine, positions, neighbors) -> tuple[float, str]:
    """Angular frequency of the stiffest motion, and how it was found."""
    potential = system.potential
    if potential is not None:
        r = potential.minimum() or 0.9 * system.density ** (-1 / system.dim)
        k = potential.curvature(r)
        return math.sqrt(2 * max(k, 1e-12) / system.mass), (
            f"pair curvature u''={k:.4g} at r={r:.4g}"
        )
    import jax
    import jax.numpy as jnp

    grad = jax.grad(lambda x: engine.energy(x))
    v = jnp.ones_like(positions) / math.sqrt(positions.size)
    value = 0.0
    for _ in range(30):  # power iteration on Hessian-vector products
        hv = jax.jvp(grad, (positions,), (v,))[1]
        value = float(jnp.linalg.norm(hv))
        v = hv / max(value, 1e-300)
    return math.sqrt(max(value, 1e-12) / system.mass), f"largest Hessian eigenvalue {value:.4g}"


def _relax_overlaps(engine, positions, neighbors, force: float, particle: int):
    """FIRE energy minimisation until no force exceeds ``RELAXED_FORCE`` (overlapping starts).

    Raises:
        InputError: the forces stay huge after ``FIRE_STEPS`` steps (or are not finite).
    """
    import jax
    from jax import lax
    from jax_md import minimize

    if not math.isfinite(force):
        raise InputError(
            f"particle {particle} feels a non-finite force: two particles sit on top of each"
            " other; move them apart before simulating",
            argument="system",
        )
    init_fn, apply_fn = minimize.fire_descent(engine.force_or_energy, engine.shift, dt_start=1e-4,
                                              dt_max=4e-3)  # fmt: skip

    @jax.jit
    def block(state, nbrs):
        def step(_, carry):
            state, nbrs = carry
            state = apply_fn(state, **engine.kwargs(nbrs))
            return state, engine.update(state.position, nbrs)

        return lax.fori_loop(0, 100, step, (state, nbrs))

    state = init_fn(positions, **engine.kwargs(neighbors))
    for done in range(0, FIRE_STEPS, 100):
        state, neighbors = block(state, neighbors)
        if neighbors is not None and bool(neighbors.overflow):
            neighbors = engine.allocate(state.position)
        largest = float(np.max(np.linalg.norm(np.asarray(state.force), axis=1)))
        if largest < RELAXED_FORCE:
            note = (f"overlapping start (force {force:.3g} on particle {particle}): FIRE"
                    f" minimisation for {done + 100} steps brought the largest force to"
                    f" {largest:.3g}")  # fmt: skip
            return state.position, neighbors, note
    raise InputError(
        f"particle {particle} feels a force of {force:.3g}; {FIRE_STEPS} FIRE steps left"
        f" {largest:.3g} (> {RELAXED_FORCE:g}): spread the particles out before simulating",
        argument="system",
    )


def _translation_invariant(system, engine, positions, neighbors) -> bool:
    """Whether shifting every particle by the same vector leaves the energy unchanged."""
    if system.potential is not None:
        return True
    import jax.numpy as jnp

    shift = jnp.full(positions.shape[1], 0.1234 * system.box / 7)
    moved = jnp.mod(positions + shift, system.box)
    kwargs = engine.kwargs(neighbors)
    before, after = float(engine.energy(positions, **kwargs)), float(engine.energy(moved, **kwargs))
    return abs(after - before) <= 1e-9 * max(abs(before), 1.0)


def _one_digit(x: float) -> float:
    exponent = math.floor(math.log10(x))
    return math.floor(x / 10**exponent) * 10**exponent


def _auto_dt(system, engine, neighbors, key, reasons, steps) -> float:
    import jax.numpy as jnp

    omega, how = _stiffness(system, engine, jnp.asarray(system.positions), neighbors)
    period = 2 * math.pi / omega
    dt = _one_digit(period / 100)
    reasons.append(f"dt='auto': {how}, oscillation period {period:.4g}; dt = period/100 -> {dt:g}")
    if system.potential is not None and system.potential.form == "truncated":
        reasons.append(
            "dt not verified by an NVE trial: a truncated potential's energy jumps when pairs"
            " cross the cutoff, so NVE energy is not conserved at any dt"
        )
        return dt
    trial_steps = min(steps, 500)
    record = _largest_divisor(trial_steps, max(1, trial_steps // 50))
    for attempt in range(4):
        settings = eng.Settings("nve", dt, system.temperature, None, record, trial_steps // record)
        runner = Runner(system, engine, settings, neighbors, key, 10**9)
        records, _ = runner.run(1)
        predicted = _predicted_drift(records["potential"] + records["kinetic"], record, steps)
        if predicted <= TRIAL_LIMIT or attempt == 3:
            reasons.append(
                f"verified: {trial_steps} NVE steps at dt={dt:g} predict max|dE/E| ="
                f" {predicted:.2g} over {steps} steps"
                + (f" (<= {TRIAL_LIMIT:g})" if predicted <= TRIAL_LIMIT else " (still above)")
            )
            return dt
        reasons.append(
            f"trial at dt={dt:g}: predicted max|dE/E| = {predicted:.2g} > {TRIAL_LIMIT:g}; halved"
        )
        dt /= 2
    return dt


def _predicted_drift(total: np.ndarray, record: int, steps: int) -> float:
    """Largest ``|dE/E|`` expected over ``steps``: the trial's linear drift extrapolated,
    plus three standard deviations of its fluctuation about that line."""
    relative = (total - total[0]) / max(abs(total[0]), 1e-300)
    t = np.arange(len(relative)) * record
    slope, intercept = np.polyfit(t, relative, 1)
    spread = float(np.std(relative - (slope * t + intercept)))
    return abs(float(slope)) * steps + 3 * spread


def _checkpointing(directory, every, per_chunk, record_every, system, settings, precision,
                   uses_lists, skin, steps, reasons):  # fmt: skip
    """(resume, checkpoint config) for a run with a checkpoint folder; (None, None) without."""
    if directory is None:
        return None, None
    from pathlib import Path

    from jaxpro.md import _restart

    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InputError("must be a folder", argument="checkpoint_dir", received=str(directory))
    print_ = _restart.fingerprint(system, settings, precision, uses_lists, skin)
    resume = _restart.load(folder, print_, steps)
    reasons.append(
        f"checkpoints every {every} steps in {folder} (Orbax, atomic, the last"
        f" {_restart.KEEP} kept)"
        + (f"; resumed from step {resume.step}" if resume is not None else "")
    )
    return resume, (folder, every // (per_chunk * record_every), print_)


def simulate(
    system: System,
    ensemble: str = "nve",
    steps: int = 1000,
    dt: float | str = "auto",
    kT: float | None = None,
    record_every: int | None = None,
    *,
    pressure: float | None = None,
    barostat_tau: float | None = None,
    precision: str = "float64",
    neighbor_list: bool | None = None,
    skin: float | str = "auto",
    capacity_multiplier: float = 1.25,
    tau: float | None = None,
    frames: int = 100,
    seed: int | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    _calibrate: int | None = None,
) -> Trajectory:
    """Run molecular dynamics on ``system`` and check the result.

    Args:
        system: from :func:`lennard_jones_fluid`, :func:`morse_fluid`,
            :func:`soft_sphere_system` or :func:`custom_system`.
        ensemble: "nve" (velocity Verlet), "nvt" (Nose-Hoover chain) or "npt"
            (Nose-Hoover chains on the particles and on an isotropic box, JAX-MD's
            Martyna-Tuckerman-Klein integrator).
        steps: integration steps.
        dt: time step (reduced units) or "auto" (see the module notes).
        kT: thermostat temperature (NVT; default the system's temperature).
        record_every: steps between records (default: about 200 records).
        pressure: the barostat's target pressure (NPT only; reduced units).
        barostat_tau: the barostat's time constant (default 1000 dt).
        precision: "float64" or "float32".
        neighbor_list: force neighbour lists on or off (default: above 300 particles).
        skin: neighbour-list skin (a list is rebuilt when a particle moved skin/2);
            "auto": a quarter of the cutoff (0.625 at 2.5 sigma: at 4,000 LJ
            particles, rho 0.8442, skins 0.3, 0.6 and 0.9 cost 6.2, 4.9 and 6.2 ms
            per step in float32: rebuilds every 12, 26 and 42 steps against
            longer force sums).
        capacity_multiplier: spare room in the neighbour list.
        tau: thermostat time constant (default 100 dt).
        frames: how many position frames to keep.
        seed: PRNG seed (default the system's).
        progress: show a progress bar (default: when stderr is a terminal).
        checkpoint_dir: save the full state here every ``checkpoint_every``
            steps (Orbax, atomic, the last two kept) and, when it already holds
            checkpoints of this same run, resume from the latest one: a run
            killed and started again ends in the same state as an uninterrupted one.
        checkpoint_every: steps between checkpoints (default about 2,000; a
            multiple of ``record_every`` that divides ``steps``).

    Returns:
        A :class:`Trajectory`; ``trajectory.ok`` is False when a check failed
        (each failure also warns, :class:`SimulationWarning`).

    Raises:
        InputError: bad arguments, coincident particles, or overlaps that FIRE
            minimisation cannot resolve.
        SimulationError: NaN energies (with the step) or a neighbour list that
            keeps overflowing.
    """
    started = time.perf_counter()
    _check_inputs(system, ensemble, steps, dt, kT, record_every, precision, pressure)
    from jaxpro._cache import enable_persistent_cache

    enable_persistent_cache()  # a second process with the same system shape skips compiling
    kT = float(kT if kT is not None else system.temperature)
    record_every = record_every or max(1, steps // _largest_divisor(steps, 200))
    record_every = steps // _largest_divisor(steps, steps // record_every)
    total_records = steps // record_every
    per_chunk = _largest_divisor(total_records, max(1, CHUNK_STEPS // record_every))
    if checkpoint_dir is not None:
        if checkpoint_every is None:
            checkpoint_every = per_chunk * record_every
        if (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                or checkpoint_every < 1 or checkpoint_every % record_every
                or steps % checkpoint_every):  # fmt: skip
            raise InputError(
                f"must be a multiple of record_every ({record_every}) that divides steps ({steps})",
                argument="checkpoint_every",
                received=checkpoint_every,
            )
        per_checkpoint = checkpoint_every // record_every
        per_chunk = _largest_divisor(per_checkpoint, max(1, CHUNK_STEPS // record_every))
    uses_lists = system.potential is not None and (
        system.n > NEIGHBOR_MIN if neighbor_list is None else bool(neighbor_list)
    )
    reasons = [system.describe()]
    if skin == "auto":
        skin = system.potential.cutoff / 4 if system.potential is not None else 0.3
    if isinstance(skin, bool) or not isinstance(skin, int | float) or not 0 < skin < math.inf:
        raise InputError("must be 'auto' or a positive distance", argument="skin", received=skin)
    skin = float(skin)
    if not uses_lists and ensemble != "npt":  # NPT always lists (its reason comes below)
        reasons.append("all pairs (no neighbour list): "
                       f"{system.n} particles" + ("" if system.potential else ", user energy"))  # fmt: skip
    import jax

    with _precision(precision), warnings.catch_warnings():
        # JAX-MD asks for float64 sums; in float32 runs JAX says it truncates them
        warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
        engine = eng.build_engine(system, neighbors=uses_lists, skin=skin,
                                  capacity=capacity_multiplier)  # fmt: skip
        if uses_lists:
            why = (f"{system.n} particles > {NEIGHBOR_MIN}" if neighbor_list is None
                   else "asked for")  # fmt: skip
            reasons.append(f"neighbour list ({why}): {engine.lister.describe()}, capacity"
                           f" x{capacity_multiplier:g}; forces summed over full rows (no"
                           " scatter)")  # fmt: skip
        if len(np.unique(np.round(system.positions, 12), axis=0)) < system.n:
            raise InputError("has particles at the same position; move them apart",
                             argument="system")  # fmt: skip
        positions = jax.numpy.asarray(system.positions)
        neighbors = engine.allocate(positions) if uses_lists else None
        force, particle = eng.max_force(engine, positions, neighbors)
        if not math.isfinite(force) or force > FORCE_LIMIT:
            positions, neighbors, note = _relax_overlaps(engine, positions, neighbors, force,
                                                         particle)  # fmt: skip
            reasons.append(note)
            system = dataclasses.replace(system, positions=np.asarray(positions))
        invariant = _translation_invariant(system, engine, positions, neighbors)
        if not invariant:
            reasons.append(
                "the energy is not translation invariant (an external field or fixed sites):"
                " total momentum is not conserved, so it is not checked"
            )
        key = jax.random.PRNGKey(system.seed if seed is None else seed)
        if dt == "auto":
            dt = _auto_dt(system, engine, neighbors, key, reasons, steps)
        else:
            reasons.append(f"dt = {dt:g} as given")
        dt = float(dt)
        if ensemble == "nvt":
            reasons.append(
                f"NVT: Nose-Hoover chain (JAX-MD), kT = {kT:g}, tau = {tau or 100 * dt:g}"
            )
        barostat_tau = float(barostat_tau or 1000 * dt)
        run_engine, run_neighbors = engine, neighbors
        if ensemble == "npt":
            run_engine = eng.build_engine(system, neighbors=True, skin=skin,
                                          capacity=capacity_multiplier, npt=True)  # fmt: skip
            run_neighbors = run_engine.allocate(positions, box=system.box)
            reasons.append(
                f"NPT: Nose-Hoover chains on the particles (tau = {tau or 100 * dt:g}) and on"
                f" an isotropic box (tau = {barostat_tau:g}), JAX-MD's Martyna-Tuckerman-Klein"
                f" integrator, P = {pressure:g}, kT = {kT:g}; positions in box fractions,"
                f" forces by differentiating the energy; {run_engine.lister.describe()} (cells"
                f" {eng.NPT_CELL_MARGIN:g}x wide, so the box may shrink that much)"
                + ("; the barostat feels the long-range tail pressure"
                   if system.long_range_correction else "")
            )  # fmt: skip
        reasons.append(
            f"{precision}; {total_records} records every {record_every} steps, in compiled"
            f" chunks of {per_chunk * record_every} steps"
        )
        # JAX-MD's thermostat counts N d degrees of freedom; with the total momentum
        # fixed at zero there are d (N - 1), so it is aimed at kT (N - 1) / N to make
        # the temperature 2 KE / (d (N - 1)) come out at kT (at N = 500, T = 0.85 it
        # would otherwise run 0.2% hot: U/N 0.004 above NIST's table)
        target = kT * (system.n - 1) / system.n if invariant else kT
        if ensemble in ("nvt", "npt") and invariant:
            reasons.append(
                f"thermostat aimed at kT (N-1)/N = {target:.6g}: JAX-MD counts N d degrees of"
                " freedom, the momentum-conserving system has d (N - 1)"
            )
        settings = eng.Settings(ensemble, dt, kT if ensemble == "nve" else target, tau,
                                record_every, per_chunk, pressure,
                                barostat_tau if ensemble == "npt" else None)  # fmt: skip
        frames_every = max(1, total_records // max(frames, 1))
        runner = Runner(system, run_engine, settings, run_neighbors, key, frames_every)
        if _calibrate is not None:
            # jaxpro.plan: the run's own decisions, and the time of its first chunks
            chunks = min(_calibrate, total_records // per_chunk)
            tic = time.perf_counter()
            runner.run(chunks)
            elapsed = time.perf_counter() - tic - runner.compile_seconds
            return {
                "method": f"{ensemble} ({METHODS[ensemble]})", "reasons": tuple(reasons),
                "dt": dt, "record_every": record_every, "chunk_steps": per_chunk * record_every,
                "chunks": total_records // per_chunk, "timed_chunks": chunks,
                "compile_s": runner.compile_seconds, "chunk_s": elapsed / chunks,
                "setup_s": tic - started, "neighbor_list": uses_lists,
                "skin": skin if uses_lists else None,
            }  # fmt: skip
        resume, checkpoint = _checkpointing(checkpoint_dir, checkpoint_every, per_chunk,
                                            record_every, system, settings, precision,
                                            uses_lists, skin, steps, reasons)  # fmt: skip
        with progress_bar(progress, steps) as advance:
            run_start = time.perf_counter()
            try:
                records, final = runner.run(total_records // per_chunk, advance, resume, checkpoint)
            except SimulationError as error:
                if isinstance(error.partial, list):
                    error.partial = None  # records up to the failure: see error.step
                raise
            run_seconds = time.perf_counter() - run_start - runner.compile_seconds
        uses_lists = uses_lists or ensemble == "npt"
        builds = int(runner.final_neighbors.builds) if uses_lists else 0
        if uses_lists:
            reasons.append(f"neighbour list built {builds} times ({steps / builds:.1f} steps per"
                           " build)")  # fmt: skip
        if runner.reallocations:
            reasons.append(
                f"neighbour list re-allocated {runner.reallocations} time(s) (overflow; the"
                " chunk was run again)"
            )
        trajectory = assemble(system, records, final, settings, steps, kT, frames_every,
                              precision, reasons, invariant, run_engine)  # fmt: skip
    plan = Plan(
        method=f"{ensemble} ({METHODS[ensemble]})",
        reasons=tuple(reasons),
        settings={
            "dt": dt, "steps": steps, "record_every": record_every,
            "chunk_steps": per_chunk * record_every, "neighbor_list": uses_lists,
            "skin": skin if uses_lists else None,
            "capacity_multiplier": capacity_multiplier if uses_lists else None,
            "reallocations": runner.reallocations, "neighbor_builds": builds,
            "precision": precision, "kT": kT,
            "tau": (tau or 100 * dt) if ensemble != "nve" else None,
            "pressure": pressure, "barostat_tau": barostat_tau if ensemble == "npt" else None,
        },
    )  # fmt: skip
    timings = Timings(runner.compile_seconds, run_seconds, time.perf_counter() - started)
    out = trajectory(plan, timings)
    for check in out.checks:
        if not check.passed:
            warn(check.message, SimulationWarning)
    return out
