"""benchmarks/fit_bench.py --numpy-model: the NumPy-model engines and table (no child processes).

Oracles: SciPy's curve_fit on the same data for the engines' answers, and
hand-computed ratios for the table.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("fit_bench", ROOT / "benchmarks" / "fit_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("engine", ["jaxpro-numpy", "jaxpro-host"])
def test_the_numpy_engines_fit_what_scipy_fits(bench, engine):
    model = bench.MODELS["exp3"]
    x, y = bench.generate_data(model, 3000)
    popt = bench.make_fitter(engine, model)(x, y)
    ref, _ = scipy.optimize.curve_fit(model.np_fn, x, y, p0=model.p0)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(model.in_place_fn(x, *ref), model.np_fn(x, *ref), rtol=1e-14)


def test_the_numpy_table_states_ratios_against_scipy_lm_on_the_same_function(bench):
    def record(engine, warm):
        return {
            "engine": engine,
            "model": "exp3",
            "n": 1000,
            "status": "ok",
            "warm_s": warm,
            "cold_s": 1.0,
            "dev": 1e-9,
            "dev_ref": "scipy-lm",
            "ok": True,
        }

    records = [
        record("scipy-lm", 0.010),
        record("jaxpro-numpy", 0.004),
        record("scipy-lm-inplace", 0.008),
        record("jaxpro-host", 0.020),
    ]
    (row,) = bench.numpy_rows(records, "exp3", [1000])
    # the translated row against SciPy on the NumPy model, the host row
    # against SciPy on the in-place model it runs
    assert row[4] == "2.50×" and row[5] == "8 ms" and row[8] == "0.40×"
    args = bench.parse_args(["--numpy-model"])
    assert args.engines == list(bench.NUMPY_ENGINES)
    assert max(args.sizes) == int(bench.NUMPY_MAX_SIZE)
