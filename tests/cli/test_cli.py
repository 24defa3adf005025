"""The ``jaxpro`` command line: help, version, doctor, fit, demo and the error policy.

In-process checks use click's CliRunner; checks of what a real process prints
and returns (one stderr line, exit code 2, tracebacks only with --debug) run
``python -m jaxpro`` in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import jaxpro
from jaxpro.cli import cli
from jaxpro.cli import doctor as doctor_module
from jaxpro.cli.fit import parse_bounds, parse_p0, split_names
from jaxpro.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRUTH = {"a": 2.0, "b": 0.5, "c": 0.3}


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart by itself


def invoke(*args: str, **kwargs):
    return runner().invoke(cli, list(args), **kwargs)


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m jaxpro ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "jaxpro", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("jaxpro: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def decay_csv(tmp_path_factory) -> Path:
    """y = 2 exp(-0.5 x) + 0.3 with 1% noise, a sigma column and a second variable T."""
    rng = np.random.default_rng(7)
    x = np.linspace(0.0, 8.0, 60)
    clean = TRUTH["a"] * np.exp(-TRUTH["b"] * x) + TRUTH["c"]
    sigma = 0.01 * np.ones_like(x)
    y = clean + sigma * rng.standard_normal(x.size)
    temperature = np.linspace(280.0, 320.0, x.size)
    path = tmp_path_factory.mktemp("data") / "decay.csv"
    rows = ["x,y,s,T"]
    rows += [
        ",".join(repr(float(v)) for v in row) for row in zip(x, y, sigma, temperature, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def fit_args(csv: Path, *extra: str) -> list[str]:
    return ["fit", str(csv), "--model", "a*exp(-b*x)+c", "--x", "x", "--y", "y", *extra]


# --------------------------------------------------------------------------- help and version


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.stderr
    for command in ("doctor", "demo", "fit"):
        assert command in result.stdout


def test_version_prints_name_and_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"jaxpro {jaxpro.__version__}\n"


def test_bare_command_prints_help_and_succeeds():
    result = invoke()
    assert result.exit_code == 0
    assert "Commands:" in result.stdout


def test_fit_help_lists_its_options():
    result = invoke("fit", "--help")
    assert result.exit_code == 0
    for option in ("--model", "--x", "--y", "--sigma", "--p0", "--bounds", "--loss", "--f-scale"):
        assert option in result.stdout
    for option in ("--method", "--out", "--json", "--no-plot"):
        assert option in result.stdout


def test_python_dash_m_runs_the_cli():
    done = run_process("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"jaxpro {jaxpro.__version__}"


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("jaxpro")
    assert script.exists(), f"no console script next to {sys.executable}"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"jaxpro {jaxpro.__version__}"


# --------------------------------------------------------------------------- doctor


def test_doctor_text_report():
    import jax

    result = invoke("doctor")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert f"jaxpro             {jaxpro.__version__}" in text or jaxpro.__version__ in text
    assert metadata.version("jax") in text
    assert metadata.version("jaxlib") in text
    for label in ("backend", "device count", "devices", "float64", "host memory", "cpus"):
        assert label in text
    assert "compilation cache" in text
    # other test modules switch float64 on globally; doctor reports whatever is set
    assert f"global jax_enable_x64 = {bool(jax.config.jax_enable_x64)}" in text
    assert "jax.enable_x64" in text


def test_doctor_text_lists_every_engine():
    text = invoke("doctor").stdout
    for engine in doctor_module.ENGINES:
        version = metadata.version(engine)
        assert any(line.split() == [engine, version] for line in text.splitlines()), engine


def test_doctor_json_fields():
    import jax

    result = invoke("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    expected = {"jaxpro", "python", "platform", "jax", "jaxlib", "backend", "devices"}
    expected |= {"device_count", "float64", "memory", "cpus", "cache", "engines"}
    assert expected <= set(report)
    assert report["jaxpro"] == jaxpro.__version__
    assert report["jax"] == metadata.version("jax")
    assert report["backend"] == jax.default_backend()
    assert report["device_count"] == len(jax.devices()) == len(report["devices"])
    assert report["float64"]["jax_enable_x64"] is bool(jax.config.jax_enable_x64)
    assert report["memory"]["total_bytes"] > 0
    assert report["memory"]["available_bytes"] > 0
    assert set(report["engines"]) == set(doctor_module.ENGINES)
    assert report["engines"]["numpy"] == np.__version__


def test_doctor_in_a_fresh_process_shows_float64_off_globally():
    done = run_process("doctor", "--json")
    assert done.returncode == 0, done.stderr
    float64 = json.loads(done.stdout)["float64"]
    assert float64["jax_enable_x64"] is False
    assert "jax.enable_x64" in float64["policy"]


def test_doctor_json_cache_follows_the_environment(tmp_path):
    done = run_process("doctor", "--json", env={"JAXPRO_CACHE_DIR": str(tmp_path / "xla")})
    assert done.returncode == 0, done.stderr
    cache = json.loads(done.stdout)["cache"]
    assert cache["directory"] == str(tmp_path / "xla")
    assert cache["enabled"] is True
    assert cache["source"] == "jaxpro"


def test_doctor_shows_a_disabled_cache():
    done = run_process("doctor", env={"JAXPRO_CACHE_DIR": "off"})
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("compilation cache"))
    assert "disabled" in line


def test_doctor_reports_an_engine_that_is_not_installed(monkeypatch):
    monkeypatch.setattr(doctor_module, "ENGINES", ("numpy", "no-such-distribution-jaxpro"))
    report = json.loads(invoke("doctor", "--json").stdout)
    assert report["engines"]["no-such-distribution-jaxpro"] is None
    text = invoke("doctor").stdout
    assert any(
        line.split() == ["no-such-distribution-jaxpro", "not", "installed"]
        for line in text.splitlines()
    )


def test_doctor_does_not_import_the_engines():
    script = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from jaxpro.cli import cli
        result = CliRunner().invoke(cli, ["doctor"])
        assert result.exit_code == 0, result.output
        engines = ("numpyro", "jax_md", "jax_cfd", "diffrax", "arviz", "formulae", "optax", "orbax")
        print(sorted(m for m in engines if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- error policy


def test_bad_option_is_one_line_with_exit_code_2():
    done = run_process("--no-such-option")
    assert done.returncode == 2
    line = assert_one_error_line(done.stderr)
    assert "--no-such-option" in line
    assert "(see jaxpro --help)" in line
    assert done.stdout == ""


def test_unknown_command_is_one_line():
    done = run_process("no-such-command")
    assert done.returncode == 2
    line = assert_one_error_line(done.stderr)
    assert "no-such-command" in line


def test_missing_required_option_hints_at_the_command_help(decay_csv):
    result = invoke("fit", str(decay_csv), "--x", "x", "--y", "y")
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--model" in line
    assert "(see jaxpro fit --help)" in line


def test_missing_data_file_is_one_line(tmp_path):
    missing = tmp_path / "nope.csv"
    done = run_process(*fit_args(missing))
    assert done.returncode == 2
    line = assert_one_error_line(done.stderr)
    assert "file not found" in line
    assert str(missing) in line


def test_debug_prints_the_traceback(tmp_path):
    done = run_process("--debug", *fit_args(tmp_path / "nope.csv"))
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert "InputError" in done.stderr


def test_debug_is_accepted_after_the_command(tmp_path):
    done = run_process(*fit_args(tmp_path / "nope.csv"), "--debug")
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr


def test_unexpected_exception_is_one_line(monkeypatch):
    def boom():
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(doctor_module, "collect", boom)
    result = invoke("doctor")
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "RuntimeError: boom; second line" in line
    assert "--debug" in line


def test_unexpected_exception_with_debug_shows_the_traceback(monkeypatch):
    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor_module, "collect", boom)
    result = invoke("--debug", "doctor")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom" in result.stderr


def test_file_not_found_error_is_one_line(monkeypatch):
    def missing():
        raise FileNotFoundError(2, "No such file or directory", "gone.csv")

    monkeypatch.setattr(doctor_module, "collect", missing)
    result = invoke("doctor")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == "jaxpro: error: file not found: gone.csv"


def test_warnings_are_shown_as_one_line(monkeypatch):
    import warnings

    real = doctor_module.collect

    def noisy():
        warnings.warn("careful\nwith this", UserWarning, stacklevel=1)
        return real()

    monkeypatch.setattr(doctor_module, "collect", noisy)
    result = invoke("doctor")
    assert result.exit_code == 0
    assert "jaxpro: warning: careful; with this" in result.stderr.splitlines()


# --------------------------------------------------------------------------- fit


def test_fit_prints_the_summary(decay_csv):
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0"))
    assert result.exit_code == 0, result.stderr
    assert "jaxpro fit: a*exp(-b*x)+c" in result.stdout
    table = result.stdout.splitlines()
    for name in TRUTH:
        assert any(line.split()[:1] == [name] for line in table), name
    assert "converged" in result.stdout


def test_fit_json_output_parses_and_recovers_the_truth(decay_csv):
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0", "--sigma", "s", "--json"))
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["kind"] == "fit"
    for name, truth in TRUTH.items():
        estimate = payload["parameters"][name]
        assert abs(estimate["value"] - truth) < 5 * estimate["stderr"] + 1e-9, name


def test_fit_passes_the_options_through_to_jaxpro_fit(decay_csv):
    table = jaxpro.io.read_table(decay_csv)
    direct = jaxpro.fit(
        "a*exp(-b*x)+c",
        table["x"],
        table["y"],
        p0={"a": 1.0, "b": 0.3, "c": 0.0},
        sigma=table["s"],
        loss="soft_l1",
        f_scale=2.0,
        method="trf",
        variables=("x",),
    )
    result = invoke(
        *fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0", "--sigma", "s", "--loss", "soft_l1"),
        *("--f-scale", "2", "--method", "trf", "--json"),
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["plan"]["method"] == "trf"
    for name, value in direct.params.items():
        assert payload["parameters"][name]["value"] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_fit_applies_bounds(decay_csv):
    result = invoke(
        *fit_args(decay_csv, "--p0", "a=1,b=0.7,c=0", "--bounds", "b=0.6:inf", "--json")
    )
    assert result.exit_code == 0, result.stderr
    b = json.loads(result.stdout)["parameters"]["b"]["value"]
    assert b >= 0.6 - 1e-12
    assert b == pytest.approx(0.6, abs=1e-6)  # the truth (0.5) is outside: the bound is active


def test_fit_parameters_without_p0_start_inside_their_bounds(decay_csv):
    # b has no --p0: it starts at 1, which is outside 0:0.9, so inside instead
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,c=0", "--bounds", "b=0:0.9", "--json"))
    assert result.exit_code == 0, result.stderr
    b = json.loads(result.stdout)["parameters"]["b"]["value"]
    assert b == pytest.approx(TRUTH["b"], abs=0.05)


def test_fit_several_variables(decay_csv):
    result = invoke(
        "fit",
        str(decay_csv),
        "--model",
        "a*exp(-b*x)+c + d*(T-300)",
        "--x",
        "x,T",
        "--y",
        "y",
        "--p0",
        "a=1,b=0.3,c=0,d=0",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload["parameters"]) == {"a", "b", "c", "d"}
    assert payload["parameters"]["b"]["value"] == pytest.approx(TRUTH["b"], abs=0.05)


def test_fit_out_writes_result_json_and_plot(decay_csv, tmp_path):
    out = tmp_path / "results"
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0", "--out", str(out)))
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "result.json").read_text())["kind"] == "fit"
    assert (out / "fit.png").read_bytes()[:8] == PNG_MAGIC
    assert str(out / "fit.png") in result.stdout


def test_fit_out_no_plot_writes_only_json(decay_csv, tmp_path):
    out = tmp_path / "results"
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0", "--out", str(out), "--no-plot"))
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]


def test_fit_json_with_out_keeps_stdout_pure_json(decay_csv, tmp_path):
    out = tmp_path / "results"
    args = fit_args(decay_csv, "--p0", "a=1,b=0.3,c=0", "--out", str(out), "--no-plot", "--json")
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)
    assert "saved" in result.stderr


def test_fit_bad_p0_text(decay_csv):
    result = invoke(*fit_args(decay_csv, "--p0", "a1"))
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--p0" in line
    assert "'a1'" in line


def test_fit_p0_value_that_is_not_a_number(decay_csv):
    result = invoke(*fit_args(decay_csv, "--p0", "a=abc"))
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--p0" in line
    assert "'a=abc'" in line


def test_fit_unknown_parameter_in_p0(decay_csv):
    result = invoke(*fit_args(decay_csv, "--p0", "a=1,zeta=2"))
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--p0" in line
    assert "'zeta'" in line
    assert "a, b, c" in line


def test_fit_bad_bounds_text(decay_csv):
    result = invoke(*fit_args(decay_csv, "--bounds", "b=0..1"))
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--bounds" in line
    assert "'b=0..1'" in line


def test_fit_unknown_column(decay_csv):
    result = invoke("fit", str(decay_csv), "--model", "a*x", "--x", "x", "--y", "counts")
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "'counts'" in line
    assert "available" in line


def test_fit_bad_model(decay_csv):
    result = invoke("fit", str(decay_csv), "--model", "a*x + import", "--x", "x", "--y", "y")
    assert result.exit_code == 2
    assert "--model" in assert_one_error_line(result.stderr)


def test_fit_bad_choice_is_a_usage_error(decay_csv):
    result = invoke(*fit_args(decay_csv, "--loss", "squared"))
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--loss" in line
    assert "(see jaxpro fit --help)" in line


# --------------------------------------------------------------------------- option parsing


def test_split_names_accepts_repeats_and_commas():
    assert split_names(["t,T", "P"], "--x") == ("t", "T", "P")


def test_split_names_rejects_duplicates():
    with pytest.raises(InputError, match="--x"):
        split_names(["t,t"], "--x")


def test_parse_p0_values():
    assert parse_p0(["a=1, b=-2.5e-3", "c=4"], ("a", "b", "c")) == {
        "a": 1.0,
        "b": -2.5e-3,
        "c": 4.0,
    }


def test_parse_p0_rejects_a_repeated_name():
    with pytest.raises(InputError, match="more than once"):
        parse_p0(["a=1,a=2"], ("a",))


def test_parse_p0_rejects_infinity():
    with pytest.raises(InputError, match=r"'a=inf'"):
        parse_p0(["a=inf"], ("a",))


def test_parse_bounds_infinite_and_empty_limits():
    parsed = parse_bounds(["a=0:inf,b=:5", "c=-inf:", "d=-1e3:+1e3"], ("a", "b", "c", "d"))
    assert parsed == {
        "a": (0.0, math.inf),
        "b": (-math.inf, 5.0),
        "c": (-math.inf, math.inf),
        "d": (-1000.0, 1000.0),
    }


def test_parse_bounds_rejects_reversed_limits():
    with pytest.raises(InputError, match=r"below .*'b=2:1'"):
        parse_bounds(["b=2:1"], ("b",))


def test_parse_bounds_rejects_nan():
    with pytest.raises(InputError, match=r"'b=nan:1'"):
        parse_bounds(["b=nan:1"], ("b",))


def test_parse_bounds_unknown_parameter_lists_the_model_parameters():
    with pytest.raises(InputError, match=r"'q'.*a, b"):
        parse_bounds(["q=0:1"], ("a", "b"))


# --------------------------------------------------------------------------- demo


def test_demo_runs_and_recovers_the_bundled_truth():
    result = invoke("demo", "fit", "--json")
    assert result.exit_code == 0, result.stderr
    fitted = json.loads(result.stdout)["fit"]["parameters"]
    for name, truth in {"A": 1200.0, "tau": 47.0, "B": 80.0}.items():
        assert abs(fitted[name]["value"] - truth) < 4 * fitted[name]["stderr"], name


def test_demo_prints_what_it_does_then_the_summary():
    result = invoke("demo", "fit")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Curve fit: A*exp(-t/tau) + B")
    assert lines[2].startswith("jaxpro fit: A*exp(-t/tau) + B")


def test_demo_out_saves_the_plot(tmp_path):
    result = invoke("demo", "fit", "--out", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    plot = tmp_path / "fit" / "fit.png"
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "fit" / "result.json").exists()
    assert f"plot saved to {plot}" in result.stdout


def run_demo(*args: str) -> dict:
    """``jaxpro demo ... --json`` as a user runs it: its own process, a CPU device per chain."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    done = subprocess.run([sys.executable, "-m", "jaxpro", "demo", *args, "--json"],
                          capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def assert_bayesian_demos_pass_within_two_attempts(results: dict) -> None:
    for name in ("bayes", "formula"):
        attempts = results[name]["attempts"]
        assert results[name]["ok"], (name, attempts)
        assert len(attempts) <= 2, (name, [a["problems"] for a in attempts])
    assert "4 chains, parallel" in results["formula"]["plan"]["reasons"]
    # Rubin's eight schools: the posterior mean of mu is near 4.4 (sd 3.3); 0.5 is ~5 MCSE
    assert abs(results["bayes"]["parameters"]["mu"]["mean"] - 4.4) < 0.5


# `jaxpro demo fit bayes formula` (every short demo, seed 0) in its own process: this
# also is the margin check of the Bayesian demos for seed 0 (seeds 1-9 in the slow test
# below). The stories that plain `jaxpro demo` runs are tested in tests/advisor/test_demo.py.
def test_every_demo_runs_and_the_bayes_demo_repairs_the_centred_model(tmp_path):
    results = run_demo("fit", "bayes", "formula", "--out", str(tmp_path), "--no-plot")
    assert list(results) == ["fit", "bayes", "formula"]
    assert_bayesian_demos_pass_within_two_attempts(results)
    bayes = results["bayes"]
    assert bayes["ok"] and bayes["divergences"] == 0
    # the centred funnel fails first, and the repair non-centres theta
    assert bayes["attempts"][0]["problems"]
    assert "non-centred: theta" in bayes["attempts"][-1]["settings"]
    assert (tmp_path / "bayes" / "result.json").exists()
    assert (tmp_path / "bayes" / "posterior.nc").exists()
    formula = results["formula"]
    assert formula["ok"] and formula["formula"] == "reaction ~ days + (1 + days | subject)"
    days = formula["parameters"]["days"]
    assert days["lower"] < 10 < days["upper"]  # the simulated slope inside its 90% interval
    assert "cor(Intercept,days|subject)" in formula["parameters"]
    # with margin: the eight schools repair is one attempt, the formula needs none
    assert len(bayes["attempts"]) == 2 and len(formula["attempts"]) <= 2


# Margin of the Bayesian demos as a user runs them: every seed passes its checks within
# two attempts. Before 2026-12-06 the formula demo took 1-4 attempts over seeds 0-9
# (centred subject effects), and eight schools 3 attempts on one seed in ten
# (target_accept 0.9 after non-centring). Seed 0 runs in the default suite (above);
# seeds 1-9 are slow (each a process of 10-18 s; the default suite keeps under 15 min).
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 10))
def test_bayesian_demos_pass_within_two_attempts(seed):
    assert_bayesian_demos_pass_within_two_attempts(
        run_demo("bayes", "formula", "--seed", str(seed))
    )


def test_demo_negative_seed_is_a_usage_error():
    result = invoke("demo", "bayes", "--seed", "-1")
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert "--seed" in line and "-1" in line


def test_demo_unknown_name_is_a_usage_error():
    result = invoke("demo", "nothing")
    assert result.exit_code == 2
    assert "(see jaxpro demo --help)" in assert_one_error_line(result.stderr)


def test_bundled_data_is_the_documented_synthetic_set():
    import importlib.resources

    from jaxpro.data.make_decay import make

    bundled = (importlib.resources.files("jaxpro.data") / "decay.csv").read_text()
    assert bundled == make()
    assert len(bundled.splitlines()) == 201


def test_interrupt_is_one_line_with_exit_code_130(monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(doctor_module, "collect", interrupted)
    result = invoke("doctor")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "jaxpro: error: interrupted"
    assert "Traceback" not in result.stderr


def test_fit_can_stream_a_file(decay_csv):
    streamed = invoke(*fit_args(decay_csv, "--stream", "--json"))
    in_memory = invoke(*fit_args(decay_csv, "--json"))
    assert streamed.exit_code == 0, streamed.output
    a, b = json.loads(streamed.stdout), json.loads(in_memory.stdout)
    assert a["plan"]["settings"]["path"] == "streamed"
    for name, entry in b["parameters"].items():
        assert math.isclose(a["parameters"][name]["value"], entry["value"], rel_tol=1e-9)
