"""``jaxpro md lj``: the summary, JSON and saved files; errors as one line with exit code 2."""

import json
import subprocess
import sys

from click.testing import CliRunner

from jaxpro.cli import cli


def test_lj_prints_the_summary_and_saves_figures(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["md", "lj", "--n", "108", "--steps", "400", "--dt", "0.005", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "NVE simulation: 108 particles, 400 steps of dt = 0.005" in result.output
    assert "g(r): first peak at r = " in result.output
    for name in ("result.json", "trajectory.png", "rdf.png", "rdf.json"):
        assert (out / name).stat().st_size > 0


def test_lj_json_carries_the_series_and_the_rdf():
    result = CliRunner().invoke(
        cli, ["md", "lj", "--n", "108", "--steps", "200", "--dt", "0.005", "--ensemble", "nvt",
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["ensemble"] == "nvt" and len(payload["temperature"]) == 201  # t = 0 + 200
    assert "positions" not in payload and len(payload["rdf"]["g"]) == 100


def test_bad_values_are_one_line_and_exit_2():
    for args, message in (
        (["--density", "-1"], "density: must be positive"),
        (["--dt", "fast"], "--dt: must be a number or auto"),
        (["--n", "20"], "smaller than twice the cutoff"),
        (["--ensemble", "npt"], "pressure: is needed for ensemble='npt'"),
    ):
        done = subprocess.run([sys.executable, "-m", "jaxpro", "md", "lj", *args],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2, done.stdout
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_checkpoint_folder_is_written_and_reused(tmp_path):
    args = ["md", "lj", "--n", "108", "--steps", "400", "--dt", "0.005", "--ensemble", "nvt",
            "--checkpoint", str(tmp_path / "ck")]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["400"]
    again = CliRunner().invoke(cli, args)
    assert "resumed from step 400" in again.output
