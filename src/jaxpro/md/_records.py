"""From a run's records to a checked :class:`Trajectory`: tails, pressure, validation.

Checks (each a :class:`Check`, warned about by ``simulate`` when it fails):

- NVE: energy drift ``max |E(t) - E(0)| / |E(0)|`` against ``DRIFT_LIMIT``;
- total momentum conserved (for translation-invariant energies);
- NVT and NPT: the mean temperature of the second half within
  ``TEMPERATURE_TOLERANCE`` of the target;
- NPT: the mean pressure of the second half within 3 standard errors
  (block averages, correlations absorbed) of the target.
"""

from __future__ import annotations

import math

import numpy as np

from jaxpro.md._potentials import tail_energy_per_particle, tail_pressure
from jaxpro.md._reference import block_mean
from jaxpro.md._trajectory import Check, Trajectory

__all__ = ["DRIFT_LIMIT", "TEMPERATURE_TOLERANCE", "assemble"]

DRIFT_LIMIT = 1e-4
TEMPERATURE_TOLERANCE = 0.05
PRESSURE_SIGMAS = 3.0


def assemble(system, records, final, settings, steps, kT, frames_every, precision, reasons,
             invariant, engine):  # fmt: skip
    """``finish(plan, timings) -> Trajectory`` from the concatenated records."""
    n, dim = system.n, system.dim
    potential = records["potential"].astype(float)
    kinetic = records["kinetic"].astype(float)
    side = records["box"].astype(float) if "box" in records else np.full_like(kinetic, system.box)
    volume = side**dim
    density = n / volume
    tails = system.long_range_correction and system.potential is not None
    if tails:
        per_particle = tail_energy_per_particle(system.potential, 1.0, dim) * density
        potential = potential + n * per_particle
        reasons.append(f"long-range correction: U_tail/N = {float(np.mean(per_particle)):.5g}"
                       + (" (at each record's density)" if "box" in records else ""))  # fmt: skip
    temperature = 2 * kinetic / (dim * (n - 1))
    if "virial" in records:
        pressure = (2 * kinetic + records["virial"]) / (dim * volume)
        if tails:
            pressure = pressure + tail_pressure(system.potential, 1.0, dim) * density**2
    else:
        pressure = np.full_like(kinetic, np.nan)
    total = potential + kinetic
    times = np.arange(len(total)) * settings.record_every * settings.dt
    frame_index = np.arange(0, len(total), frames_every)
    checks = _checks(settings, total, records["momentum"] if invariant else None, temperature,
                     pressure, kT, n, system.mass, precision, system.potential)  # fmt: skip
    velocities = np.asarray(final.momentum) / system.mass
    final_positions, final_side = engine.real(final)
    frames = records["positions"][frame_index]
    extra = {}
    if "box" in records:
        extra = {"volume": volume, "density": density}

    def finish(plan, timings):
        return Trajectory(
            times=times, potential_energy=potential, kinetic_energy=kinetic, total_energy=total,
            temperature=temperature, pressure=pressure, positions=frames,
            frame_times=times[frame_index], final_positions=np.asarray(final_positions),
            final_velocities=velocities, checks=tuple(checks), ensemble=settings.ensemble,
            dt=settings.dt, steps=steps, n=n, dim=dim, box=float(final_side), plan=plan,
            timings=timings, volume=volume, frame_box=side[frame_index], extra=extra,
        )  # fmt: skip

    return finish


def _checks(settings, total, momentum, temperature, pressure, kT, n, mass, precision, potential):
    ensemble, dt = settings.ensemble, settings.dt
    checks = []
    if ensemble == "nve":
        drift = float(np.max(np.abs(total - total[0])) / max(abs(total[0]), 1e-300))
        advice = ""
        if drift > DRIFT_LIMIT:
            advice = f"; try a smaller dt (now {dt:g})"
            if precision == "float32":
                advice += " or precision='float64'"
            if potential is not None and potential.form == "truncated":
                advice += (", or a truncated_shifted or switched potential (a truncated one"
                           " jumps at the cutoff)")  # fmt: skip
        checks.append(Check("energy_drift", drift, DRIFT_LIMIT, drift <= DRIFT_LIMIT,
                            f"NVE energy drift max|dE/E| = {drift:.2g} (limit {DRIFT_LIMIT:g})"
                            + advice))  # fmt: skip
    if momentum is not None:
        scale = n * math.sqrt(mass * kT)
        worst = float(np.max(np.linalg.norm(momentum, axis=1)) / scale)
        limit = 1e-10 if precision == "float64" else 1e-4
        checks.append(Check("momentum", worst, limit, worst <= limit,
                            f"total momentum conserved: max|P|/(N sqrt(m kT)) = {worst:.2g}"
                            f" (limit {limit:g})"))  # fmt: skip
    second = slice(len(temperature) // 2, None)
    if ensemble in ("nvt", "npt"):
        mean = float(temperature[second].mean())
        gap = abs(mean - kT) / kT
        checks.append(Check("temperature", gap, TEMPERATURE_TOLERANCE,
                            gap <= TEMPERATURE_TOLERANCE,
                            f"mean temperature (second half) {mean:.4g} vs target {kT:g}:"
                            f" {100 * gap:.2g}% off (limit {100 * TEMPERATURE_TOLERANCE:g}%)"
                            + ("" if gap <= TEMPERATURE_TOLERANCE else
                               "; run longer, or a shorter thermostat tau")))  # fmt: skip
    if ensemble == "npt":
        target = settings.pressure
        half = pressure[second]
        mean, error = block_mean(half, blocks=min(20, max(2, len(half) // 5)))
        sigmas = abs(mean - target) / max(error, 1e-300)
        passed = sigmas <= PRESSURE_SIGMAS
        checks.append(Check("pressure", sigmas, PRESSURE_SIGMAS, passed,
                            f"mean pressure (second half) {mean:.4g} ± {error:.2g} vs target"
                            f" {target:g}: {sigmas:.2g} standard errors (limit"
                            f" {PRESSURE_SIGMAS:g})"
                            + ("" if passed else
                               "; run longer (the box has not settled), or a shorter"
                               " barostat_tau")))  # fmt: skip
    return checks
