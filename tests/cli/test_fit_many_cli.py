"""`jaxpro fit-many` over a wide table (one curve per row)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jaxpro.cli import cli


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 5, 40)
    a, b, c = rng.uniform(1, 3, 12), rng.uniform(0.5, 2, 12), rng.uniform(-0.5, 0.5, 12)
    Y = a[:, None] * np.exp(-b[:, None] * x) + c[:, None] + rng.normal(0, 0.05, (12, 40))
    Y[3, 30:] = np.nan  # a shorter curve: empty cells
    frame = pd.DataFrame(Y, columns=[f"{v:.10g}" for v in x])
    frame.insert(0, "sample", [f"s{i}" for i in range(12)])
    folder = tmp_path_factory.mktemp("wide")
    frame.to_csv(folder / "wide.csv", index=False)
    frame.to_parquet(folder / "wide.parquet")
    return folder, x, Y


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", ["wide.csv", "wide.parquet"])
def test_fits_every_row_and_writes_a_table(wide, tmp_path, name):
    import jaxpro

    folder, x, Y = wide
    out = tmp_path / "out"
    result = invoke(
        "fit-many",
        str(folder / name),
        "--model",
        "a*exp(-b*x)+c",
        "--id",
        "sample",
        "--p0",
        "a=1.5,b=1,c=0",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "12 curves: 12 converged" in result.output
    table = pd.read_csv(out / "curves.csv")
    assert list(table["sample"]) == [f"s{i}" for i in range(12)]
    assert table.loc[3, "n"] == 30, "empty cells are missing points"
    direct = jaxpro.fit_many("a*exp(-b*x)+c", x, Y, p0={"a": 1.5, "b": 1.0, "c": 0.0})
    np.testing.assert_allclose(
        table[["a", "b", "c"]].to_numpy(), direct.values, rtol=1e-9, atol=1e-10
    )
    assert (out / "result.json").exists() and (out / "fit_many.png").stat().st_size > 0


def test_json_output(wide):
    folder, _, _ = wide
    result = invoke(
        "fit-many", str(folder / "wide.csv"), "--model", "a*exp(-b*x)+c", "--id", "sample", "--json"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["curves"] == 12


def test_x_values_must_match_the_columns(wide):
    folder, _, _ = wide
    result = CliRunner().invoke(
        cli,
        [
            "fit-many",
            str(folder / "wide.csv"),
            "--model",
            "a*exp(-b*x)+c",
            "--id",
            "sample",
            "--x-values",
            "1,2",
        ],
    )
    assert result.exit_code == 2
    assert "--x-values" in result.stderr and "40 data columns" in result.stderr


def test_non_numeric_headers_need_x_values(tmp_path):
    frame = pd.DataFrame({"t0": [1.0, 2.0], "t1": [0.5, 1.0], "t2": [0.2, 0.4], "t3": [0.1, 0.2]})
    frame.to_csv(tmp_path / "w.csv", index=False)
    result = CliRunner().invoke(
        cli, ["fit-many", str(tmp_path / "w.csv"), "--model", "a*exp(-b*x)"]
    )
    assert result.exit_code == 2 and "--x-values" in result.stderr
    ok = invoke(
        "fit-many", str(tmp_path / "w.csv"), "--model", "a*exp(-b*x)", "--x-values", "0,1,2,3"
    )
    assert ok.exit_code == 0, ok.output


def test_unknown_id_column(wide):
    folder, _, _ = wide
    result = CliRunner().invoke(
        cli, ["fit-many", str(folder / "wide.csv"), "--model", "a*x", "--id", "nope"]
    )
    assert result.exit_code == 2 and "--id" in result.stderr
