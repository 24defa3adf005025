"""Comparison of a simulated state point with a reference (NIST SRSW Lennard-Jones tables).

The NIST values are NVT Monte Carlo for N = 500 particles, the potential truncated
(not shifted) at 3 sigma with analytic long-range corrections; ``simulate`` of a
``lennard_jones_fluid(500, rho, T, cutoff=3.0, shift=False,
long_range_correction=True)`` reports the same quantities (its virial counts the
forces inside the cutoff, as the tables' does, plus the analytic tail).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["block_mean"]


def block_mean(series: np.ndarray, blocks: int = 20) -> tuple[float, float]:
    """Mean and its standard error from ``blocks`` block averages (correlations absorbed)."""
    x = np.asarray(series, dtype=float)
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(x.mean()), float(means.std(ddof=1) / math.sqrt(blocks))
