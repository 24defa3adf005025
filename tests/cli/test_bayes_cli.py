"""`jaxpro bayes DATA --formula ...`: the coefficient table, JSON, files, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from jaxpro.cli import cli


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    rng = np.random.default_rng(0)
    site = np.repeat(np.arange(6), 40)
    x = rng.normal(size=site.size)
    exposure = rng.uniform(1, 3, site.size)
    rate = np.exp(0.3 + 0.5 * x + rng.normal(0, 0.4, 6)[site])
    frame = pd.DataFrame(
        {
            "y": rng.poisson(exposure * rate),
            "x": x,
            "exposure": exposure,
            "site": [f"site{i}" for i in site],
        }
    )
    folder = tmp_path_factory.mktemp("counts")
    frame.to_csv(folder / "counts.csv", index=False)
    frame.to_parquet(folder / "counts.parquet")
    return folder


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


FORMULA = "y ~ x + offset(log(exposure)) + (1 | site)"


def test_prints_the_coefficient_table_and_writes_files(counts, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "bayes",
        str(counts / "counts.csv"),
        "--formula",
        FORMULA,
        "--family",
        "poisson",
        "--draws",
        "500",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    for text in ("Intercept", "sd(Intercept|site)", "site[site0]", "checks: passed", "poisson"):
        assert text in result.output
    for name in ("result.json", "posterior.nc", "trace.png"):
        assert (out / name).is_file()


def test_json_output(counts):
    result = invoke(
        "bayes",
        str(counts / "counts.parquet"),
        "--formula",
        FORMULA,
        "--family",
        "poisson",
        "--draws",
        "500",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["family"] == "poisson" and payload["ok"] is True
    slope = payload["parameters"]["x"]
    assert slope["lower"] < 0.5 < slope["upper"]  # the simulated slope inside its 90% interval


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formula", "y ~ nope"], "column 'nope' not found"),
        (["--formula", "y ~ os.system(x)"], "not allowed"),
        (["--formula", "site ~ x"], "categorical"),
        (["--formula", "y ~ x", "--level", "2"], "--level"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(counts, args, message):
    result = CliRunner().invoke(cli, ["bayes", str(counts / "counts.csv"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_file(tmp_path):
    result = CliRunner().invoke(cli, ["bayes", str(tmp_path / "none.csv"), "--formula", "y ~ x"])
    assert result.exit_code == 2 and "not found" in result.output
