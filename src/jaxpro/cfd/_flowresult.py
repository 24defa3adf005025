"""``FlowResult``: what ``jaxpro.cfd.simulate`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxpro._result import Check, Plan, Result, Timings, format_table
from jaxpro.errors import InputError

__all__ = ["FlowResult", "energy_spectrum"]

# to_dict() carries the final fields only up to this many numbers each
MAX_JSON_FIELD = 65_536


def energy_spectrum(velocity: np.ndarray, domain: tuple[float, float]):
    """Shell-summed kinetic energy spectrum of a periodic cell-centred field.

    Args:
        velocity: ``(2, nx, ny)``.
        domain: ``(lx, ly)``.

    Returns:
        ``(k, E)``: integer shells ``k = 1, 2, ...`` (in units of the domain's
        fundamental wavenumber ``2 pi / lx``) and the energy in each, so that
        ``E.sum()`` is the mean kinetic energy ``<|u|^2> / 2`` less the mean flow's.
    """
    _, nx, ny = velocity.shape
    uh = np.fft.fft2(velocity[0]) / (nx * ny)
    vh = np.fft.fft2(velocity[1]) / (nx * ny)
    density = 0.5 * (np.abs(uh) ** 2 + np.abs(vh) ** 2)
    kx = np.fft.fftfreq(nx, d=1.0 / nx)  # integers: multiples of 2 pi / lx
    ky = np.fft.fftfreq(ny, d=1.0 / ny) * (domain[0] / domain[1])
    shell = np.rint(np.hypot(*np.meshgrid(kx, ky, indexing="ij"))).astype(int)
    energy = np.bincount(shell.ravel(), weights=density.ravel())
    k = np.arange(len(energy))
    return k[1:], energy[1:]


@dataclass(frozen=True, repr=False)
class FlowResult(Result):
    """A flow simulation's records and final state.

    Attributes:
        flow: the flow's name ("taylor_green", ..., or "user").
        method: "spectral", "finite_volume" (JAX-CFD) or "projection" (jaxpro's
            own walled solver).
        grid: ``(nx, ny)`` cells; domain: ``(lx, ly)``.
        viscosity, reynolds: the kinematic viscosity and the Reynolds number.
        times: time of each record (the first record is t = 0).
        kinetic_energy: domain mean of ``|u|^2 / 2`` per record.
        enstrophy: domain mean of ``w^2 / 2`` per record.
        divergence: max ``|div u|`` per record (the discrete operator of the
            method; rounding-level for an incompressible solver).
        max_speed: max ``|u|`` per record; courant: the Courant number
            ``dt (max|u|/dx + max|v|/dy)`` per record.
        velocity: the final velocity ``(2, nx, ny)`` at the cell centres
            ``x[i], y[j]``; vorticity: the final ``dv/dx - du/dy`` there.
        x, y: the cell-centre coordinates.
        dt, steps: the final time step and the steps taken.
        steady: for a run to steady state, whether it got there (else None);
            residual: ``max |u(t) - u(t - T)| / T`` over each record interval T
            (cell-centred velocities; NaN at t = 0).
        checks: the validation checks (incompressibility, CFL, and the flow's
            own: the analytic Taylor-Green solution, reaching a steady state).
        native: the final fields in the method's own layout (staggered faces or
            the vorticity's FFT), for centreline profiles and restarts.
        plan, timings: the method and why; compile and run times.
        frames, frame_times: vorticity snapshots ``(k, nx, ny)`` and their times
            (``simulate(..., frames=k)``; None when none were kept), for
            :meth:`animate`.
    """

    flow: str
    method: str
    grid: tuple[int, int]
    domain: tuple[float, float]
    viscosity: float
    reynolds: float
    times: np.ndarray
    kinetic_energy: np.ndarray
    enstrophy: np.ndarray
    divergence: np.ndarray
    max_speed: np.ndarray
    courant: np.ndarray
    velocity: np.ndarray
    vorticity: np.ndarray
    x: np.ndarray
    y: np.ndarray
    dt: float
    steps: int
    steady: bool | None
    residual: np.ndarray
    checks: tuple[Check, ...]
    plan: Plan
    timings: Timings
    native: dict[str, np.ndarray] = field(default_factory=dict)
    lid: float = 0.0
    frames: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    kind: str = "flow"

    @property
    def ok(self) -> bool:
        """True when every validation check passed."""
        return all(check.passed for check in self.checks)

    @property
    def periodic(self) -> bool:
        return self.flow not in ("lid_driven_cavity", "channel")

    def energy_spectrum(self):
        """The final field's shell-summed energy spectrum ``(k, E)`` (periodic flows only).

        See :func:`energy_spectrum`.
        """
        if not self.periodic:
            raise InputError(
                "the energy spectrum needs a periodic flow; this one has walls",
                argument="energy_spectrum", received=self.flow,
            )  # fmt: skip
        return energy_spectrum(self.velocity, self.domain)

    def _faces(self):
        if "u_faces" not in self.native:
            raise InputError(
                "centreline profiles are computed from the staggered faces of a walled flow",
                argument="flow", received=self.flow,
            )  # fmt: skip
        return np.asarray(self.native["u_faces"]), np.asarray(self.native["v_faces"])

    def centerline_u(self, y) -> np.ndarray:
        """u (in units of the lid speed) on the vertical line ``x = lx / 2`` at heights ``y``.

        Linear interpolation between the staggered faces; the walls give the
        boundary values (0 at the bottom, the lid speed at the top).
        """
        u, _ = self._faces()
        nx, ny = self.grid
        lx, ly = self.domain
        hx, hy = lx / nx, ly / ny
        xs = np.arange(nx + 1) * hx  # u faces, the right wall included
        columns = np.concatenate([u, u[:1]], axis=0)  # the wall past the end is face 0
        profile = np.array([np.interp(lx / 2, xs, columns[:, j]) for j in range(ny)])
        heights = np.concatenate([[0.0], (np.arange(ny) + 0.5) * hy, [ly]])
        values = np.concatenate([[0.0], profile, [self.lid]])
        scale = self.lid if self.lid else 1.0
        return np.interp(np.asarray(y, dtype=float), heights, values) / scale

    def centerline_v(self, x) -> np.ndarray:
        """v (in units of the lid speed) on the horizontal line ``y = ly / 2`` at ``x``."""
        _, v = self._faces()
        nx, ny = self.grid
        lx, ly = self.domain
        hx, hy = lx / nx, ly / ny
        ys = np.arange(ny + 1) * hy
        rows = np.concatenate([v, v[:, :1]], axis=1)
        profile = np.array([np.interp(ly / 2, ys, rows[i]) for i in range(nx)])
        xs = np.concatenate([[0.0], (np.arange(nx) + 0.5) * hx, [lx]])
        values = np.concatenate([[0.0], profile, [0.0]])
        scale = self.lid if self.lid else 1.0
        return np.interp(np.asarray(x, dtype=float), xs, values) / scale

    def animate(self, path, fps: int = 10) -> Path:
        """Write the vorticity snapshots as an animation: ``.gif`` (Pillow, always
        available) or ``.mp4`` (needs ffmpeg on the PATH).

        Returns:
            The file's path.
        """
        from matplotlib import animation
        from matplotlib.figure import Figure

        if self.frames is None or len(self.frames) < 2:
            raise InputError(
                "needs vorticity snapshots: run simulate(..., frames=k) with k >= 2",
                argument="frames", received=None if self.frames is None else len(self.frames),
            )  # fmt: skip
        out = Path(path)
        if out.suffix.lower() not in (".gif", ".mp4"):
            raise InputError("must end in .gif or .mp4", argument="path", received=str(path))
        if out.suffix.lower() == ".mp4" and not animation.FFMpegWriter.isAvailable():
            raise InputError("an .mp4 needs ffmpeg on the PATH; write a .gif instead",
                             argument="path", received=str(path))  # fmt: skip
        figure = Figure(figsize=(5, 5 * self.domain[1] / self.domain[0]), layout="constrained")
        axes = figure.subplots()
        limit = float(np.percentile(np.abs(self.frames), 99)) or 1.0
        image = axes.imshow(
            self.frames[0].T, origin="lower", extent=(0, self.domain[0], 0, self.domain[1]),
            cmap="RdBu_r", vmin=-limit, vmax=limit,
        )  # fmt: skip
        title = axes.set_title("")

        def draw(i):
            image.set_data(self.frames[i].T)
            title.set_text(f"vorticity, t = {self.frame_times[i]:.3g}")
            return image, title

        movie = animation.FuncAnimation(figure, draw, frames=len(self.frames), blit=False)
        writer = animation.PillowWriter(fps=fps) if out.suffix.lower() == ".gif" else (
            animation.FFMpegWriter(fps=fps))  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        movie.save(out, writer=writer)
        return out

    def summary(self) -> str:
        nx, ny = self.grid
        rows = [
            ["kinetic energy", self.kinetic_energy[0], self.kinetic_energy[-1]],
            ["enstrophy", self.enstrophy[0], self.enstrophy[-1]],
            ["max |div u|", self.divergence[0], self.divergence[-1]],
            ["max speed", self.max_speed[0], self.max_speed[-1]],
        ]
        lines = [
            f"{self.flow} on {nx} x {ny} ({self.method}), Re = {self.reynolds:.4g}"
            f" (viscosity {self.viscosity:.4g}): t = {self.times[-1]:.4g} in {self.steps}"
            f" steps (dt = {self.dt:.3g}), {len(self.times)} records",
            format_table(["", "start", "end"], rows),
        ]
        if self.steady is not None:
            lines.append(
                f"steady state: {'reached' if self.steady else 'NOT reached'}"
                f" (residual {self.residual[-1]:.2g})"
            )
        lines.append("checks:")
        lines += [f"  [{'pass' if c.passed else 'FAIL'}] {c.message}" for c in self.checks]
        lines += [self.plan.summary(), self.timings.summary()]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "flow": self.flow,
            "method": self.method,
            "grid": list(self.grid),
            "domain": list(self.domain),
            "viscosity": self.viscosity,
            "reynolds": self.reynolds,
            "dt": self.dt,
            "steps": self.steps,
            "ok": self.ok,
            "steady": self.steady,
            "times": self.times,
            "kinetic_energy": self.kinetic_energy,
            "enstrophy": self.enstrophy,
            "divergence": self.divergence,
            "max_speed": self.max_speed,
            "courant": self.courant,
            "residual": self.residual,
            "checks": [c.to_dict() for c in self.checks],
        }
        for name in ("velocity", "vorticity"):
            array = getattr(self, name)
            if array.size <= MAX_JSON_FIELD:
                fields[name] = array
            else:
                fields[f"{name}_omitted"] = f"{array.shape}: more than {MAX_JSON_FIELD} numbers"
        return fields

    def plot(self, **kwargs: Any):
        """The final vorticity, energy and enstrophy against time, and the spectrum
        (periodic flows) or the centreline profiles (walled flows)."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 7), layout="constrained")
        (image, series), (third, fourth) = figure.subplots(2, 2)
        lx, ly = self.domain
        limit = float(np.percentile(np.abs(self.vorticity), 99)) or 1.0
        shown = image.imshow(
            self.vorticity.T, origin="lower", extent=(0, lx, 0, ly), cmap="RdBu_r",
            vmin=-limit, vmax=limit,
        )  # fmt: skip
        figure.colorbar(shown, ax=image, label="vorticity")
        image.set_title(f"vorticity at t = {self.times[-1]:.3g}", fontsize="medium")
        series.plot(self.times, self.kinetic_energy, label="kinetic energy")
        series.plot(self.times, self.enstrophy, label="enstrophy")
        series.set_xlabel("time")
        series.set_yscale("log")
        series.legend(fontsize="small")
        if self.periodic:
            k, energy = self.energy_spectrum()
            keep = energy > 0
            third.loglog(k[keep], energy[keep])
            third.set_xlabel("wavenumber k")
            third.set_ylabel("E(k)")
            third.set_title("energy spectrum", fontsize="medium")
            fourth.plot(self.times, self.divergence)
            fourth.set_xlabel("time")
            fourth.set_ylabel("max |div u|")
        else:
            heights = np.linspace(0, ly, 101)
            third.plot(self.centerline_u(heights), heights)
            third.set_xlabel("u on x = lx/2")
            third.set_ylabel("y")
            across = np.linspace(0, lx, 101)
            fourth.plot(across, self.centerline_v(across))
            fourth.set_xlabel("x")
            fourth.set_ylabel("v on y = ly/2")
        figure.suptitle(
            f"{self.flow}, {self.grid[0]} x {self.grid[1]}, Re = {self.reynolds:.4g}",
            fontsize="medium",
        )
        return figure
