"""``Trajectory``: what ``jaxpro.md.simulate`` returns, with its validation checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Check, Plan, Result, Timings, format_table

__all__ = ["Check", "Trajectory"]

# to_dict() carries the sampled positions only up to this many numbers
MAX_JSON_POSITIONS = 200_000


@dataclass(frozen=True, repr=False)
class Trajectory(Result):
    """A simulation's records (whole-system totals, one value per record).

    Attributes:
        times: time of each record (reduced units; the first record is t = 0).
        potential_energy, kinetic_energy, total_energy: per record, tail
            correction included when the system asks for it.
        temperature: ``2 KE / (d (N - 1))`` per record.
        pressure: virial pressure per record (NaN for a user energy).
        positions: sampled frames ``(frames, n, dim)``; ``frame_times`` their times.
        final_positions, final_velocities: the state at the end.
        checks: the validation checks (energy drift, momentum, temperature).
        ensemble, dt, steps, n, dim: what ran; box: the box side at the end.
        plan, timings: the method and why; compile and run times.
        volume: the box volume per record (it changes under NPT; ``extra``
            then also holds it and the ``density`` for ``to_dict``).
        frame_box: the box side of each frame in ``positions``.
    """

    times: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature: np.ndarray
    pressure: np.ndarray
    positions: np.ndarray
    frame_times: np.ndarray
    final_positions: np.ndarray
    final_velocities: np.ndarray
    checks: tuple[Check, ...]
    ensemble: str
    dt: float
    steps: int
    n: int
    dim: int
    box: float
    plan: Plan
    timings: Timings
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "trajectory"
    volume: np.ndarray | None = None
    frame_box: np.ndarray | None = None

    def _frames(self, start: int) -> tuple[np.ndarray, float]:
        """Frames from ``start`` at one box side: under NPT each is scaled to the mean box
        (an affine rescaling of a ~1% fluctuation), so RDF and MSD see one density."""
        frames = self.positions[start:]
        if self.frame_box is None or np.ptp(self.frame_box) == 0:
            return frames, self.box
        sides = self.frame_box[start:]
        side = float(np.mean(sides))
        return frames * (side / sides)[:, None, None], side

    @property
    def ok(self) -> bool:
        """True when every validation check passed."""
        return all(check.passed for check in self.checks)

    @property
    def energy_drift(self) -> float:
        """Largest ``|E(t) - E(0)| / |E(0)|`` over the records."""
        e0 = self.total_energy[0]
        return float(np.max(np.abs(self.total_energy - e0)) / max(abs(e0), 1e-300))

    def rdf(self, bins: int = 100, r_max: float | None = None, skip: float = 0.5):
        """Radial distribution function from the frames after the first ``skip`` fraction.

        Returns:
            An :class:`~jaxpro.md._observables.RDF` (``r``, ``g``, ``coordination()``, ``plot()``).
        """
        from jaxpro.md._observables import radial_distribution

        frames, side = self._frames(int(len(self.positions) * skip))
        return radial_distribution(frames, side, bins=bins, r_max=r_max)

    def msd(self, skip: float = 0.5):
        """Mean-squared displacement and diffusion coefficient from the frames after ``skip``.

        Returns:
            An :class:`~jaxpro.md._observables.MSD` (``times``, ``msd``, ``diffusion``,
            ``reliable``, ``plot()``).
        """
        from jaxpro.md._observables import mean_squared_displacement

        start = int(len(self.positions) * skip)
        frames, side = self._frames(start)
        return mean_squared_displacement(frames, self.frame_times[start:], side)

    def summary(self) -> str:
        half = slice(len(self.times) // 2, None)
        rows = [
            ["potential energy / N", self.potential_energy[half].mean() / self.n,
             self.potential_energy[half].std() / self.n],
            ["kinetic energy / N", self.kinetic_energy[half].mean() / self.n,
             self.kinetic_energy[half].std() / self.n],
            ["total energy / N", self.total_energy[half].mean() / self.n,
             self.total_energy[half].std() / self.n],
            ["temperature", self.temperature[half].mean(), self.temperature[half].std()],
            ["pressure", self.pressure[half].mean(), self.pressure[half].std()],
        ]  # fmt: skip
        if self.volume is not None and np.ptp(self.volume) > 0:
            density = self.n / self.volume[half]
            rows.append(["density", density.mean(), density.std()])
        lines = [
            f"{self.ensemble.upper()} simulation: {self.n} particles, {self.steps} steps of"
            f" dt = {self.dt:g} (t = {self.times[-1]:g}), {len(self.times)} records",
            format_table(["second half", "mean", "std"], rows),
            "checks:",
        ]
        for check in self.checks:
            lines.append(f"  [{'pass' if check.passed else 'FAIL'}] {check.message}")
        lines += [self.plan.summary(), self.timings.summary()]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "ensemble": self.ensemble,
            "dt": self.dt,
            "steps": self.steps,
            "n": self.n,
            "dim": self.dim,
            "box": self.box,
            "ok": self.ok,
            "times": self.times,
            "potential_energy": self.potential_energy,
            "kinetic_energy": self.kinetic_energy,
            "total_energy": self.total_energy,
            "temperature": self.temperature,
            "pressure": self.pressure,
            "energy_drift": self.energy_drift,
            "checks": [c.to_dict() for c in self.checks],
            "frame_times": self.frame_times,
            **self.extra,
        }
        if self.positions.size <= MAX_JSON_POSITIONS:
            fields["positions"] = self.positions
        else:
            fields["positions_omitted"] = f"{self.positions.shape} frames: more than" \
                f" {MAX_JSON_POSITIONS} numbers"  # fmt: skip
        return fields

    def plot(self, **kwargs: Any):
        """Energies, temperature and pressure against time, as a matplotlib Figure."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 6), layout="constrained")
        (energy, total), (temperature, pressure) = figure.subplots(2, 2, sharex=True)
        energy.plot(self.times, self.potential_energy / self.n, label="potential")
        energy.plot(self.times, self.kinetic_energy / self.n, label="kinetic")
        energy.set_ylabel("energy per particle")
        energy.legend(fontsize="small")
        total.plot(self.times, self.total_energy / self.n, color="k")
        total.set_ylabel("total energy per particle")
        temperature.plot(self.times, self.temperature)
        temperature.set_ylabel("temperature")
        pressure.plot(self.times, self.pressure)
        pressure.set_ylabel("pressure")
        for axes in (temperature, pressure):
            axes.set_xlabel("time")
        figure.suptitle(f"{self.ensemble.upper()}, {self.n} particles", fontsize="medium")
        return figure
