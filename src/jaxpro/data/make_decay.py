"""Regenerate ``decay.csv``, the synthetic data set behind ``jaxpro demo``.

A radioactive source measured for 300 s in 200 bins of 1.5 s: the expected
count in a bin is ``1200 * exp(-t / 47) + 80`` (a decay with mean lifetime
47 s on a flat background of 80), the recorded count is a Poisson draw from
it, and ``sigma = sqrt(counts)`` is the usual counting uncertainty.

The file was generated once with the fixed seed below; run this script
(``python -m jaxpro.data.make_decay``) only to reproduce it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 20240611
AMPLITUDE, LIFETIME, BACKGROUND = 1200.0, 47.0, 80.0
N_ROWS, STEP = 200, 1.5


def make(seed: int = SEED) -> str:
    """The CSV text: columns ``t`` (s), ``counts`` and ``sigma``."""
    rng = np.random.default_rng(seed)
    t = STEP * np.arange(N_ROWS)
    expected = AMPLITUDE * np.exp(-t / LIFETIME) + BACKGROUND
    counts = rng.poisson(expected)
    sigma = np.sqrt(counts)
    rows = [f"{ti:g},{int(ci)},{si:.4f}" for ti, ci, si in zip(t, counts, sigma, strict=True)]
    return "\n".join(["t,counts,sigma", *rows]) + "\n"


if __name__ == "__main__":
    path = Path(__file__).with_name("decay.csv")
    path.write_text(make())
    print(f"wrote {path}")
