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


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row)
                                                         for row in rows) + "\n")  # fmt: skip
    return path


def lotka_volterra_data(tmp_path):
    def lv(t, y, args):
        a, b, c, d = args
        return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])

    times = np.linspace(0.0, 10.0, 41)
    clean = jaxpro.ode.solve(lv, (0.0, 10.0), jnp.array([10.0, 5.0]), t_eval=times,
                             args=(1.5, 1.0, 3.0, 1.0), rtol=1e-10, atol=1e-12).ys  # fmt: skip
    noisy = clean * (1 + 0.02 * np.random.default_rng(1).standard_normal(clean.shape))
    rows = np.column_stack([times, noisy])[::-1]  # out of time order: the command sorts
    return write_csv(tmp_path / "lv.csv", ["time", "prey", "predator"], rows), lv, times, noisy


# slow (8 s cold): the default suite keeps under 15 minutes; the command's fit stays
# there with the decay below, and Lotka-Volterra's in tests/ode/test_ode_fit.py
@pytest.mark.slow
def test_ode_fit_recovers_lotka_volterra_and_matches_the_python_call(tmp_path):
    data, lv, times, noisy = lotka_volterra_data(tmp_path)
    result = CliRunner().invoke(cli, ["ode", "fit", str(data), "--rhs", LV, "--t", "time", "--y",
                                      "y=predator,x=prey", "--p0", "a=1.4,b=0.95,c=3.1,d=1.05",
                                      "--bounds", "a=0:inf", "--json", "--out",
                                      str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    values = {n: p["value"] for n, p in payload["parameters"].items()}
    want = jaxpro.ode.fit(lv, times, noisy, {"a": 1.4, "b": 0.95, "c": 3.1, "d": 1.05},
                          noisy[0], bounds={"a": (0, np.inf)})  # fmt: skip
    np.testing.assert_allclose([values[n] for n in "abcd"], want.values, rtol=1e-8)
    # the truth (1.5, 1, 3, 1) within 4 standard errors (2% multiplicative noise)
    stderr = {n: p["stderr"] for n, p in payload["parameters"].items()}
    for name, truth in zip("abcd", (1.5, 1.0, 3.0, 1.0), strict=True):
        assert abs(values[name] - truth) < 4 * stderr[name], (name, values[name], stderr[name])
    assert payload["plan"]["settings"]["ode_method"] == "tsit5"
    assert payload["timings"]["total_s"] >= payload["timings"]["run_s"] > 0
    assert (tmp_path / "out" / "result.json").stat().st_size > 0
    assert (tmp_path / "out" / "ode_fit.png").read_bytes()[:4] == b"\x89PNG"


def test_ode_fit_of_a_decay_with_sigma_and_fitted_y0_equals_weighted_least_squares(tmp_path):
    """Oracle: SciPy's curve_fit of the closed form x0 exp(-k t) with the same sigma."""
    from scipy.optimize import curve_fit

    times = np.linspace(0.0, 4.0, 25)
    rng = np.random.default_rng(7)
    sigma = 0.02 + 0.03 * rng.random(times.size)
    observed = 3.0 * np.exp(-0.7 * times) + sigma * rng.standard_normal(times.size)
    data = write_csv(tmp_path / "decay.csv", ["t", "x", "sx"],
                     np.column_stack([times, observed, sigma]))  # fmt: skip
    result = CliRunner().invoke(cli, ["ode", "fit", str(data), "--rhs", "dx = -k*x", "--t", "t",
                                      "--y", "x=x", "--sigma", "x=sx", "--p0", "k=1",
                                      "--fit-y0", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload["parameters"]) == ["k", "y0_0"]
    values = [p["value"] for p in payload["parameters"].values()]
    stderr = [p["stderr"] for p in payload["parameters"].values()]
    popt, pcov = curve_fit(lambda t, k, x0: x0 * np.exp(-k * t), times, observed, p0=(1, 3),
                           sigma=sigma)  # fmt: skip
    np.testing.assert_allclose(values, popt, rtol=1e-6)
    np.testing.assert_allclose(stderr, np.sqrt(np.diag(pcov)), rtol=1e-4)


def test_ode_fit_bad_input_is_one_line_and_exit_2(tmp_path):
    data = write_csv(tmp_path / "d.csv", ["t", "a", "b", "s"],
                     [[0, 1, 1, 0.1], [1, 0.5, 0.6, 0.1], [2, 0.25, 0.3, 0.1]])  # fmt: skip
    twice = write_csv(tmp_path / "twice.csv", ["t", "a"], [[0, 1], [0, 0.9], [1, 0.5]])
    rhs = "dx = -k*x; dy = -m*y"
    cases = (
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a"],
         "--y0: needs --y0: y has no column, so the first row cannot give the initial state"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", ","],
         "--y: must give a column for at least one state"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,z=b"], "--y: z is not a state"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,y=b", "--sigma", "x=s"],
         "--sigma: must give a column for each of x, y"),
        ([str(data), "--rhs", rhs, "--t", "a", "--y", "x=a,y=b"], "--t: column 'a' is also"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,y=nope"], "nope"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,y=b", "--y0", "x=1"],
         "--y0: must give exactly the states x, y"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,y=b", "--t0", "-1"],
         "--t0: needs --y0"),
        ([str(data), "--rhs", "dx = -x", "--t", "t", "--y", "x=a"],
         "--rhs: has no parameters to fit"),
        ([str(data), "--rhs", rhs, "--t", "t", "--y", "x=a,y=b", "--p0", "q=1"], "--p0"),
        ([str(twice), "--rhs", "dx = -k*x", "--t", "t", "--y", "x=a"],
         "--t: must hold distinct times"),
    )  # fmt: skip
    for args, message in cases:
        result = CliRunner().invoke(cli, ["ode", "fit", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert result.output.strip().count("\n") == 0, result.output


def test_ode_fit_of_a_partly_observed_system(tmp_path):
    """x -> y with only y measured: x has no column, the fit goes through y.

    Oracle: the Python call with x's column NaN (the same fit, 1e-8), and the closed
    form y = 2 (1 - exp(-k t)) fitted by SciPy's curve_fit (1e-6).
    """
    from scipy.optimize import curve_fit

    times = np.linspace(0.25, 4.0, 20)
    y = 2.0 * (1.0 - np.exp(-0.8 * times)) + 0.02 * np.random.default_rng(2).normal(size=20)
    data = write_csv(tmp_path / "conversion.csv", ["t", "product"], np.column_stack([times, y]))
    result = CliRunner().invoke(cli, ["ode", "fit", str(data), "--rhs", "dx = -k*x; dy = k*x",
                                      "--t", "t", "--y", "y=product", "--y0", "x=2,y=0",
                                      "--t0", "0", "--p0", "k=1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    value = payload["parameters"]["k"]["value"]

    def conversion(t, state, args):
        return jnp.stack([-args[0] * state[0], args[0] * state[0]])

    both = np.column_stack([np.full(times.size, np.nan), y])
    want = jaxpro.ode.fit(conversion, times, both, {"k": 1.0}, [2.0, 0.0], t0=0.0)
    assert value == pytest.approx(want.values[0], rel=1e-8)
    popt, _ = curve_fit(lambda t, k: 2.0 * (1.0 - np.exp(-k * t)), times, y, p0=[1.0])
    assert value == pytest.approx(popt[0], rel=1e-6)
    assert "state(s) 0 never" in payload["plan"]["reasons"][0]
