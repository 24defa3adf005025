"""Simulated data sets shared by the Bayes tests and benchmarks.

pytest puts this folder on ``sys.path`` (``tests/bayes`` has no ``__init__.py``);
scripts that run in a subprocess, and ``benchmarks/bench_compare.py``, add it.
"""

import numpy as np
import pandas as pd


def million_rows_frame(seed: int = 0) -> pd.DataFrame:
    """1,000,000 rows in 10,000 groups for ``y ~ x + (1 + x | g)``.

    Population values: intercept 1.0, slope 0.5, group sds 0.5 (intercept) and
    0.3 (slope), residual sd 1.0. Columns ``y``, ``x``, ``g``.
    """
    rng = np.random.default_rng(seed)
    n, groups = 1_000_000, 10_000
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    a, b = rng.normal(0, 0.5, groups), rng.normal(0, 0.3, groups)
    y = 1.0 + a[g] + (0.5 + b[g]) * x + rng.normal(0, 1.0, n)
    return pd.DataFrame({"y": y, "x": x, "g": g})
