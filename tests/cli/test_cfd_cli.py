"""``jaxpro cfd turbulence`` / ``cavity``: summary, JSON, saved files; errors as one line, exit 2."""

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from jaxpro.cli import cli


def test_cavity_prints_the_summary_and_the_centreline_and_saves(tmp_path):
    out = tmp_path / "cavity"
    result = CliRunner().invoke(cli, ["cfd", "cavity", "--re", "100", "--grid", "32",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "lid_driven_cavity on 32 x 32 (projection), Re = 100" in result.output
    assert "steady state: reached" in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("u on x = 0.5"))
    # Ghia et al. at y = 0.5: -0.2058 (interpolated from their table)
    middle = float(line.split(":")[1].split(",")[2])
    assert abs(middle - (-0.2058)) < 0.02
    for name in ("result.json", "flow.png"):
        assert (out / name).stat().st_size > 0


def test_turbulence_json_carries_the_records(tmp_path):
    movie = tmp_path / "w.gif"
    result = CliRunner().invoke(cli, ["cfd", "turbulence", "--grid", "32", "--t-end", "0.5",
                                      "--json", "--animate", str(movie)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert movie.read_bytes()[:6] == b"GIF89a"
    payload = json.loads(result.stdout)
    assert payload["flow"] == "decaying_turbulence" and payload["method"] == "spectral"
    assert len(payload["kinetic_energy"]) == len(payload["times"]) == 101
    assert np.all(np.diff(payload["kinetic_energy"]) < 0)  # unforced: energy only decays


def test_bad_values_are_one_line_and_exit_2():
    for args, message in (
        (["turbulence", "--grid", "8"], "grid: 8 x 8 cells is too coarse"),
        (["turbulence", "--dt", "fast"], "--dt: must be a number or auto"),
        (["cavity", "--re", "-5"], "reynolds: must be a positive"),
    ):
        done = subprocess.run([sys.executable, "-m", "jaxpro", "cfd", *args],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2, done.stdout
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
