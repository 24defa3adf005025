"""jaxpro._result: Plan, Timings, format_table, jsonable and the Result base class."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro._result import Plan, Result, Timings, format_table, jsonable

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, which are not JSON."""

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------- Plan and Timings


def test_plan_to_dict():
    plan = Plan("trf", ("bounds given", "robust loss"), {"tol": np.float64(1e-8), "chunk": 64})
    assert plan.to_dict() == {
        "method": "trf",
        "reasons": ["bounds given", "robust loss"],
        "settings": {"tol": 1e-8, "chunk": 64},
    }


def test_plan_summary_lists_reasons_and_settings():
    text = Plan("lm", ("no bounds",), {"ftol": 1e-12, "path": "direct"}).summary()
    assert text.splitlines() == [
        "method: lm",
        "  - no bounds",
        "  settings: ftol=1e-12, path=direct",
    ]


def test_plan_summary_without_settings():
    assert Plan("lm").summary() == "method: lm"


def test_timings_to_dict_and_summary():
    timings = Timings(compile=0.5, run=0.01, total=0.6)
    assert timings.to_dict() == {"compile_s": 0.5, "run_s": 0.01, "total_s": 0.6}
    assert timings.summary() == "time: 0.6 s (compile 0.5 s, run 0.01 s)"


def test_timings_without_a_separate_compile_time():
    timings = Timings(compile=None, run=2.0, total=2.5)
    assert timings.to_dict() == {"compile_s": None, "run_s": 2.0, "total_s": 2.5}
    assert timings.summary() == "time: 2.5 s (run 2 s, compilation included)"


# --------------------------------------------------------------------------- format_table


def test_format_table_alignment():
    text = format_table(("name", "value"), [("a", 1.5), ("long_name", 22.25)])
    assert text.splitlines() == [
        "name       value",
        "---------  -----",
        "a            1.5",
        "long_name  22.25",
    ]


def test_format_table_float_format():
    text = format_table(("p", "v"), [("x", np.float32(1 / 3))], floatfmt=".3f")
    assert text.splitlines()[-1] == "x  0.333"


def test_format_table_non_float_cells_are_str():
    text = format_table(("k", "n", "flag"), [("a", 7, True)])
    assert text.splitlines()[-1] == "a  7  True"


# --------------------------------------------------------------------------- jsonable


def test_jsonable_non_finite_floats_become_strings():
    assert jsonable([math.inf, -math.inf, math.nan, 1.0]) == ["inf", "-inf", "nan", 1.0]


def test_jsonable_numpy_scalars():
    value = {"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "u": np.uint8(7)}
    out = jsonable(value)
    assert out == {"f": 0.5, "i": 3, "b": True, "u": 7}
    assert type(out["f"]) is float
    assert type(out["i"]) is int
    assert type(out["b"]) is bool


def test_jsonable_numpy_non_finite_scalars():
    assert jsonable([np.float64("nan"), np.float32("-inf")]) == ["nan", "-inf"]


def test_jsonable_arrays_become_nested_lists():
    assert jsonable(np.array([[1.0, np.inf], [np.nan, 4.0]])) == [[1.0, "inf"], ["nan", 4.0]]
    assert jsonable(np.array(2.5)) == 2.5


def test_jsonable_jax_arrays_in_float64():
    with jax.enable_x64(True):
        value = jnp.array([1.0, jnp.inf])
        assert value.dtype == jnp.float64
        assert jsonable({"x": value}) == {"x": [1.0, "inf"]}


def test_jsonable_tuples_keys_and_objects():
    class WithToDict:
        def to_dict(self):
            return {"z": np.int32(1)}

    value = {1: (1, 2), "nested": WithToDict(), "path": object}
    out = jsonable(value)
    assert out["1"] == [1, 2]
    assert out["nested"] == {"z": 1}
    assert out["path"] == str(object)


def test_jsonable_output_is_strict_json():
    value = {"a": np.array([np.nan, 1.0]), "b": (np.inf, None, "s", False)}
    assert strict_loads(json.dumps(jsonable(value))) == {
        "a": ["nan", 1.0],
        "b": ["inf", None, "s", False],
    }


# --------------------------------------------------------------------------- Result


@dataclass(frozen=True, repr=False)
class LineResult(Result):
    """A tiny result: a fitted slope with an array of residuals."""

    slope: float
    residuals: np.ndarray
    plan: Plan
    timings: Timings
    kind = "line"

    def summary(self) -> str:
        return f"slope = {self.slope:.3g}"

    def _fields(self) -> dict[str, Any]:
        return {"slope": self.slope, "residuals": self.residuals, "bad": math.nan}

    def plot(self, **kwargs: Any):
        from matplotlib.figure import Figure

        figure = Figure(figsize=(3, 2))
        axes = figure.subplots()
        axes.plot(np.arange(self.residuals.size), self.residuals, ".")
        return figure


@pytest.fixture
def result() -> LineResult:
    return LineResult(
        slope=np.float64(2.0),
        residuals=np.array([0.1, -0.2, np.inf]),
        plan=Plan("lstsq", ("linear model",), {"rank": 2}),
        timings=Timings(0.0, 0.001, 0.002),
    )


def test_result_to_dict_has_kind_fields_plan_and_timings(result):
    payload = result.to_dict()
    assert list(payload) == ["kind", "slope", "residuals", "bad", "plan", "timings"]
    assert payload["kind"] == "line"
    assert payload["slope"] == 2.0
    assert payload["residuals"] == [0.1, -0.2, "inf"]
    assert payload["bad"] == "nan"
    assert payload["plan"] == {
        "method": "lstsq",
        "reasons": ["linear model"],
        "settings": {"rank": 2},
    }
    assert payload["timings"] == {"compile_s": 0.0, "run_s": 0.001, "total_s": 0.002}


def test_result_to_json_is_strict_json(result):
    assert strict_loads(result.to_json()) == result.to_dict()
    assert "\n" not in result.to_json(indent=None)


def test_result_save_writes_json_and_png(result, tmp_path):
    out = result.save(tmp_path / "deep" / "run")
    assert out == tmp_path / "deep" / "run"
    assert strict_loads((out / "result.json").read_text()) == result.to_dict()
    assert (out / "line.png").read_bytes()[:8] == PNG_MAGIC


def test_result_save_without_figures(result, tmp_path):
    result.save(tmp_path, figures=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_result_save_leaves_pyplot_alone(result, tmp_path):
    import sys

    had_pyplot = "matplotlib.pyplot" in sys.modules
    result.save(tmp_path)
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules


def test_result_repr_is_the_summary(result):
    assert repr(result) == "slope = 2"
