"""``jaxpro ode solve``: equations as text, the same answer as the Python call; errors in one line.

Oracle: ``jaxpro.ode.solve`` on the hand-written right-hand side (the CLI must
parse the equations into the same function), and the analytic decay
``x(t) = x0 exp(-k t)``.
"""

import json
import math
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

import jaxpro.ode
from jaxpro.cli import cli

LV = "dx = a*x - b*x*y; dy = -c*y + d*x*y"


def test_lotka_volterra_json_matches_the_python_call(tmp_path):
    result = CliRunner().invoke(cli, ["ode", "solve", "--rhs", LV, "--params",
                                      "a=1.5,b=1,c=3,d=1", "--y0", "y=5,x=10", "--t", "0:15",
                                      "--points", "31", "--json", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stderr says where the files went
    assert payload["states"] == ["x", "y"] and payload["success"] is True

    def lv(t, y, args):
        a, b, c, d = args
        return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])

    want = jaxpro.ode.solve(lv, (0.0, 15.0), jnp.array([10.0, 5.0]),
                            t_eval=np.linspace(0, 15, 31), args=(1.5, 1.0, 3.0, 1.0))  # fmt: skip
    np.testing.assert_allclose(np.asarray(payload["ys"]), want.ys, rtol=1e-10)
    for name in ("result.json", "ode_solution.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_decay_summary_and_time_in_the_equation():
    result = CliRunner().invoke(cli, ["ode", "solve", "--rhs", "dx = -k*x + 0*t", "--params",
                                      "k=0.5", "--y0", "x=2", "--t", "0:4", "--rtol",
                                      "1e-10", "--atol", "1e-12"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "states: x" in result.output and "ODE solution: t = 0 -> 4" in result.output
    final = float(result.output.split("y(t_end) = [")[1].split("]")[0])
    assert final == pytest.approx(2 * math.exp(-2.0), rel=5e-6)  # printed to 6 digits


def test_bad_input_is_one_line_and_exit_2():
    base = ["--rhs", "dx = -k*x", "--params", "k=1", "--y0", "x=1", "--t", "0:1"]
    cases = (
        ({"--params": ""}, "--params: needs a value for k"),
        ({"--params": "k=1,q=2"}, "--params: q appear in no equation"),
        ({"--y0": "z=1"}, "--y0: must give exactly the states x"),
        ({"--t": "0-1"}, "--t: must be t0:t1"),
        ({"--rhs": "x = -k*x"}, "--rhs: 'x = -k*x' is not 'd<state> = <expression>'"),
        ({"--rhs": "dx = __import__('os')"}, "--rhs"),
        ({"--params": "k=abc"}, "--params: k: 'abc' is not a number"),
    )
    for number, (changes, message) in enumerate(cases):
        args = list(base)
        for key, value in changes.items():
            args[args.index(key) + 1] = value
        if number == 0:  # one in a real process: one line on stderr, exit code 2
            done = subprocess.run([sys.executable, "-m", "jaxpro", "ode", "solve", *args],
                                  capture_output=True, text=True)  # fmt: skip
            assert done.returncode == 2, (changes, done.stdout, done.stderr)
            assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
            continue
        result = CliRunner().invoke(cli, ["ode", "solve", *args])
        assert result.exit_code == 2 and message in result.output, (changes, result.output)
