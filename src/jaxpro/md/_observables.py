"""Structural and transport observables from a trajectory's frames: RDF, MSD, diffusion.

Both work on the sampled frames (``Trajectory.positions``), in NumPy:

- the radial distribution function ``g(r)`` histograms minimum-image pair
  distances, normalised by the ideal-gas count ``rho * shell volume`` (valid
  up to half the box);
- the mean-squared displacement needs unwrapped paths: frames are unwrapped by
  minimum-image steps between consecutive frames, which is exact while no
  particle moves half a box between two frames (checked: ``reliable``). MSD is
  averaged over particles and time origins; the diffusion coefficient is the
  Einstein slope ``MSD / (2 d t)`` fitted over the second half of the lags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MSD", "RDF", "mean_squared_displacement", "radial_distribution"]


@dataclass(frozen=True)
class RDF:
    """``g(r)`` at bin centres ``r``, from ``frames`` frames."""

    r: np.ndarray
    g: np.ndarray
    frames: int
    density: float

    def coordination(self, r_max: float) -> float:
        """Mean number of neighbours within ``r_max``: ``integral of rho g(r) 4 pi r^2 dr`` (3-D)."""
        half = 0.5 * (self.r[1] - self.r[0])
        inside = self.r <= r_max
        shells = 4.0 / 3.0 * math.pi * ((self.r + half) ** 3 - (self.r - half) ** 3)  # 3-D
        return float(np.sum(self.density * self.g[inside] * shells[inside]))

    def first_peak(self) -> tuple[float, float]:
        """(position, height) of the highest peak."""
        index = int(np.argmax(self.g))
        return float(self.r[index]), float(self.g[index])

    def to_dict(self) -> dict[str, Any]:
        return {"r": self.r.tolist(), "g": self.g.tolist(), "frames": self.frames}

    def plot(self):
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), layout="constrained")
        axes = figure.subplots()
        axes.plot(self.r, self.g)
        axes.axhline(1.0, color="0.6", lw=0.8)
        axes.set_xlabel("r")
        axes.set_ylabel("g(r)")
        axes.set_title(f"radial distribution ({self.frames} frames)", fontsize="medium")
        return figure


@dataclass(frozen=True)
class MSD:
    """Mean-squared displacement against lag time, and the diffusion coefficient."""

    times: np.ndarray
    msd: np.ndarray
    diffusion: float
    reliable: bool
    largest_step: float

    def to_dict(self) -> dict[str, Any]:
        return {"times": self.times.tolist(), "msd": self.msd.tolist(),
                "diffusion": self.diffusion, "reliable": self.reliable}  # fmt: skip

    def plot(self):
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 4), layout="constrained")
        axes = figure.subplots()
        axes.plot(self.times, self.msd, label="MSD")
        dim_fit = self.msd[-1] / max(self.times[-1], 1e-300)
        axes.plot(self.times, self.times * dim_fit, "--", lw=0.8,
                  label=f"D = {self.diffusion:.4g}")  # fmt: skip
        axes.set_xlabel("lag time")
        axes.set_ylabel("mean-squared displacement")
        axes.legend(fontsize="small")
        return figure


def radial_distribution(frames: np.ndarray, box: float, bins: int = 100,
                        r_max: float | None = None) -> RDF:  # fmt: skip
    """``g(r)`` from ``(frames, n, d)`` positions in a periodic cubic box of side ``box``."""
    frames = np.asarray(frames, dtype=float)
    count, n, dim = frames.shape
    r_max = box / 2 if r_max is None else min(r_max, box / 2)
    edges = np.linspace(0.0, r_max, bins + 1)
    histogram = np.zeros(bins)
    for frame in frames:
        for start in range(0, n, 256):  # blocks of rows: memory stays O(256 n)
            d = frame[start : start + 256, None, :] - frame[None, :, :]
            d -= box * np.round(d / box)
            r = np.sqrt(np.sum(d * d, axis=-1))
            rows = np.arange(start, min(start + 256, n))
            r[np.arange(len(rows)), rows] = np.inf  # no self pairs
            histogram += np.histogram(r[r < r_max], bins=edges)[0]
    density = n / box**dim
    if dim == 3:
        shells = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    else:
        shells = math.pi * (edges[1:] ** 2 - edges[:-1] ** 2)
    g = histogram / (count * n * density * shells)
    return RDF(0.5 * (edges[1:] + edges[:-1]), g, count, density)


def mean_squared_displacement(frames: np.ndarray, times: np.ndarray, box: float) -> MSD:
    """MSD over lags, averaged over particles and time origins, from wrapped frames."""
    frames = np.asarray(frames, dtype=float)
    steps = np.diff(frames, axis=0)
    steps -= box * np.round(steps / box)  # minimum-image step between frames
    largest = float(np.max(np.abs(steps))) if steps.size else 0.0
    paths = np.concatenate([frames[:1], frames[0] + np.cumsum(steps, axis=0)])
    count = len(frames)
    lags = np.arange(1, count)
    msd = np.array([np.mean(np.sum((paths[k:] - paths[:-k]) ** 2, axis=-1)) for k in lags])
    lag_times = np.asarray(times)[lags] - np.asarray(times)[0]
    dim = frames.shape[-1]
    half = slice(len(lags) // 2, None)
    if len(lags) >= 2:
        slope = np.polyfit(lag_times[half], msd[half], 1)[0] if len(lags[half]) >= 2 else \
            msd[-1] / lag_times[-1]  # fmt: skip
    else:
        slope = float("nan")
    return MSD(lag_times, msd, float(slope) / (2 * dim), largest < 0.4 * box, largest)
