"""benchmarks/bench_compare.py: the two-version comparison's pure parts (no venvs built).

Oracles: the lock file's own lines, hand-computed medians and ratios, and the
5% time / 10% memory rule stated in the module.
"""

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location(
        "bench_compare", ROOT / "benchmarks" / "bench_compare.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_cells_are_validated(compare):
    assert compare.parse_cell("fit:gauss6:1e6").text == "fit:gauss6:1e6"
    assert compare.parse_cell("many:1e5").text == "many:1e5"
    assert compare.parse_cell("bayes:million").text == "bayes:million"
    assert compare.parse_cell("bayes:radon_centered").text == "bayes:radon_centered"
    for bad in ("fit:cubic:1e6", "fit:exp3", "many:lots", "scale:1e8", "bayes:radon", "bayes"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad).strip("'")):
            compare.parse_cell(bad)


def test_child_commands_run_the_benchmarks_own_child_modes(compare):
    python = Path("/venv/bin/python")
    fit = compare.Cell("fit:exp3:1e7").command(python, 60.0)
    assert fit[:3] == [str(python), str(ROOT / "benchmarks" / "fit_bench.py"), "--child"]
    assert fit[fit.index("--sizes") + 1] == "10000000" and "exp3" in fit
    many = compare.Cell("many:1e5").command(python, 60.0)
    assert many[1].endswith("fit_many_bench.py") and many[many.index("--m") + 1] == "100000"


def test_venv_requirements_are_the_lock_with_only_jax_replaced(compare):
    lock = (ROOT / "requirements" / "lock-py312-linux.txt").read_text().splitlines()
    swapped = compare.locked_with("9.9.9").splitlines()
    assert len(swapped) == len(lock)
    changed = {(a, b) for a, b in zip(lock, swapped, strict=True) if a != b}
    assert {b for _, b in changed} == {"jax==9.9.9", "jaxlib==9.9.9"}


def _records(a_warm, b_warm, a_peak=1e9, b_peak=1e9):
    return {
        "fit:exp3:1e6": {
            "A": [{"status": "ok", "warm_s": w, "cold_s": 1.0, "peak_rss": a_peak} for w in a_warm],
            "B": [{"status": "ok", "warm_s": w, "cold_s": 1.0, "peak_rss": b_peak} for w in b_warm]
            + [{"status": "timeout"}],  # a failed run counts in no median
        }
    }


@pytest.mark.parametrize(
    ("b_warm", "b_peak", "holds"),
    [
        ((0.0104, 0.01049, 0.0300), 1.0e9, True),  # median 10.49 ms: 4.9% slower holds
        ((0.0106, 0.0107), 1.0e9, False),  # 6.5% slower
        ((0.0090, 0.0095), 1.1e9, True),  # faster, memory exactly 10% larger
        ((0.0090, 0.0095), 1.2e9, False),  # memory 20% larger
    ],
)
def test_a_cell_holds_within_5_percent_time_and_10_percent_memory(compare, b_warm, b_peak, holds):
    cells = [compare.Cell("fit:exp3:1e6")]
    (row,) = compare.summarise(cells, _records((0.0099, 0.0101), b_warm, b_peak=b_peak), "A", "B")
    assert row["warm_s[A]"] == pytest.approx(0.0100)
    assert row["warm_s B/A"] == pytest.approx(statistics.median(b_warm) / 0.0100)
    assert row["holds"] is holds
    text = compare.table([row], "A", "B")
    assert ("| yes |" in text) is holds and "fit:exp3:1e6" in text


def test_a_cell_with_no_successful_run_does_not_hold(compare):
    records = {"many:1e5": {"A": [{"status": "error"}], "B": [{"status": "ok", "warm_s": 1.0}]}}
    (row,) = compare.summarise([compare.Cell("many:1e5")], records, "A", "B")
    assert row["warm_s B/A"] is None and row["holds"] is False
    assert "| - |" in compare.table([row], "A", "B")


def test_arguments_are_checked(compare):
    with pytest.raises(SystemExit):
        compare.parse_args(["--a", "0.12.1", "--b", "0.12.1"])
    with pytest.raises(SystemExit):
        compare.parse_args(["--a", "1", "--b", "2", "--rounds", "0"])
    args = compare.parse_args(["--a", "1", "--b", "2", "--memory"])
    assert [c.text for c in args.cells][-2:] == ["fit:exp3:1e8", "bayes:million"]
    args = compare.parse_args(["--a", "1", "--b", "2", "--bayes"])
    assert [c.text for c in args.cells][-2:] == [
        "bayes:eight_schools_centered",
        "bayes:eight_schools_noncentered",
    ]


def test_bayes_cells_run_bayes_bench_or_the_million_child(compare):
    python = Path("/venv/bin/python")
    eight = compare.Cell("bayes:eight_schools_centered").command(python, 60.0)
    assert eight[1].endswith("bayes_bench.py")
    assert eight[2:5] == ["--child", "eight_schools_centered", "jaxpro"]
    million = compare.Cell("bayes:million").command(python, 60.0)
    assert million[1:] == [str(ROOT / "benchmarks" / "bench_compare.py"), "--million-child"]


def test_a_bayes_child_becomes_cold_warm_and_ess_per_second(compare):
    runs = [
        {"seconds": 6.0, "min_ess_bulk": 900.0, "gate": True},  # cold
        {"seconds": 1.0, "min_ess_bulk": 1000.0, "gate": True},
        {"seconds": 2.0, "min_ess_bulk": 1200.0, "gate": True},
    ]
    stdout = "noise\n" + json.dumps({"runs": runs, "peak_rss": 7e8}) + "\n"
    record = compare.Cell("bayes:eight_schools_centered").record(stdout)
    assert record["cold_s"] == 6.0 and record["warm_s"] == 1.5 and record["peak_rss"] == 7e8
    assert record["ess_per_s"] == pytest.approx((1000.0 + 600.0) / 2) and record["gate"]
    assert compare.Cell("bayes:eight_schools_centered").record("no json here") is None
    million = 'BAYES_MILLION_RESULT {"warm_s": 180.0, "cold_s": 180.0, "peak_rss": 1.6e9}'
    assert compare.Cell("bayes:million").record(million)["peak_rss"] == 1.6e9
    fit = 'FIT_BENCH_RESULT {"warm_s": 0.01}'
    assert compare.Cell("fit:exp3:1e6").record(fit) == {"warm_s": 0.01}


@pytest.mark.parametrize(("b_warm", "holds"), [(1.09, True), (1.11, False)])
def test_bayes_cells_may_be_10_percent_slower(compare, b_warm, holds):
    cell = compare.Cell("bayes:eight_schools_centered")
    ok = {"status": "ok", "cold_s": 5.0, "peak_rss": 1e9, "ess_per_s": 2000.0}
    records = {cell.text: {"A": [{**ok, "warm_s": 1.0}], "B": [{**ok, "warm_s": b_warm}]}}
    (row,) = compare.summarise([cell], records, "A", "B")
    assert row["holds"] is holds
    assert "median ESS/s 2000 (A), 2000 (B)" in compare.table([row], "A", "B")


def test_fit_children_run_uncached_and_bayes_children_get_their_own_cache(compare, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert compare.child_env()["JAXPRO_CACHE_DIR"] == "off"
    assert compare.child_env("/tmp/fresh")["JAXPRO_CACHE_DIR"] == "/tmp/fresh"
    assert "XLA_FLAGS" not in compare.child_env()


def test_the_million_row_cell_gets_time_enough(compare):
    assert compare.Cell("bayes:million").time_limit(300.0) == compare.MILLION_SECONDS == 900.0
    assert compare.Cell("bayes:million").time_limit(1200.0) == 1200.0
    assert compare.Cell("fit:exp3:1e6").time_limit(300.0) == 300.0
