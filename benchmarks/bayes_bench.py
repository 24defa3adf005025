"""Bayesian inference benchmark: ``jaxpro.bayes.sample`` against plain NumPyro NUTS.

Three posteriors from posteriordb (data copied into ``tests/data/posteriordb``):

- ``eight_schools_centered``: the funnel that makes plain NUTS diverge;
- ``eight_schools_noncentered``: the same posterior, written the easy way;
- ``radon_centered``: Minnesota radon, varying intercepts and slopes over 85
  counties (919 houses), written centred, as users write it. posteriordb
  holds no reference draws for it, so its accuracy column stays empty.

Engines, each on the same model function and data:

- ``numpyro``: NumPyro's defaults, as a user copies them from its
  documentation: ``MCMC(NUTS(model), num_warmup=1000, num_samples=1000,
  num_chains=4)``; with one CPU device NumPyro then runs the chains one after
  another (float32, NumPyro's default; progress bar off);
- ``numpyro-4cpu``: the same after ``numpyro.set_host_device_count(4)``, the
  fix NumPyro users find by hand, so the four chains run in parallel;
- ``jaxpro``: ``jaxpro.bayes.sample(model, **data, seed=seed)``, defaults
  (4 chains on 4 CPU devices, the diagnostic gate, remediation).

Per run: wall time (model call to draws in hand, remediation included), the
minimum bulk ESS over every scalar of the model's latent sites (ArviZ's
rank-normalised ESS, computed the same way for every engine), ESS per second,
divergences, and whether the default gate passes (R-hat < 1.01, bulk and tail
ESS >= 400, no divergences). *Time to gate* is the wall time of a run that
passes; plain NumPyro has no remedy, so a failed run never gets there.
Accuracy: the largest gap between a posterior mean and the reference mean,
in reference sds, over every scalar of the reference.

Each (model, engine) runs in its own process (this file with ``--child``): the
first run there is *cold* (compilation included; jaxpro's persistent
compilation cache, on by default, starts empty in a fresh directory), the next
``--repeats`` runs (seeds 1, 2, ...) are *warm* (jaxpro may reuse what the
cold run compiled; plain NumPyro has no disk cache by default and recompiles);
medians and ranges are over the warm runs. Peak
RSS is the child's ``ru_maxrss``. ``--write`` replaces the ``bayes_bench``
section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "bayes"))

import fit_bench as fb  # noqa: E402  (same folder: machine info, tables, section writer)

MODELS = ("eight_schools_centered", "eight_schools_noncentered", "radon_centered")
ENGINES = ("numpyro", "numpyro-4cpu", "jaxpro")
MARK_BEGIN, MARK_END = "<!-- bayes_bench:begin -->", "<!-- bayes_bench:end -->"
TARGET_ESS_PER_SECOND = 250.0  # the target for jaxpro on centred eight schools
DEFAULT_REPEATS = 3


# ----------------------------------------------------------------------------
# The posteriors
# ----------------------------------------------------------------------------


def radon_centered(N, J, county_idx, floor_measure, log_radon=None, log_uppm=None):
    """posteriordb's radon_variable_intercept_slope, written centred.

    alpha[j] ~ normal(mu_alpha, sigma_alpha), beta[j] ~ normal(mu_beta, sigma_beta);
    log_radon[n] ~ normal(alpha[county[n]] + floor[n] * beta[county[n]], sigma_y);
    sigma_* ~ half-normal(0, 1), mu_* ~ normal(0, 10): the same posterior as the
    non-centred program whose reference draws posteriordb holds.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    del log_uppm
    county = jnp.asarray(county_idx) - 1
    floor_measure = jnp.asarray(floor_measure, dtype=float)
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(1.0))
    sigma_beta = numpyro.sample("sigma_beta", dist.HalfNormal(1.0))
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 10.0))
    mu_beta = numpyro.sample("mu_beta", dist.Normal(0.0, 10.0))
    with numpyro.plate("county", J):
        alpha = numpyro.sample("alpha", dist.Normal(mu_alpha, sigma_alpha))
        beta = numpyro.sample("beta", dist.Normal(mu_beta, sigma_beta))
    with numpyro.plate("obs", N):
        numpyro.sample(
            "log_radon",
            dist.Normal(alpha[county] + floor_measure * beta[county], sigma_y),
            obs=log_radon,
        )


def problem(name: str):
    """(model function, data, posteriordb reference) for a benchmark model name."""
    import posteriordb

    if name == "radon_centered":
        reference = posteriordb.load("radon_variable_intercept_slope_noncentered")
        return radon_centered, reference.data, reference
    reference = posteriordb.load(name)
    return reference.model, reference.data, posteriordb.load("eight_schools_noncentered")


def latent_sites(model, data) -> list[str]:
    """The model's own latent sample sites (what the user wrote), in trace order."""
    import jax
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**data)
    return [k for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"]]


def reference_gap(draws: dict, reference) -> float | None:
    """Largest |mean - reference mean| / reference sd over the reference's scalars (None: no reference)."""
    import posteriordb

    if reference.reference_summary is None:
        return None
    worst = 0.0
    for row in posteriordb.reference_table(reference).values():
        if row.site not in draws:
            continue
        values = posteriordb.site_value(np.asarray(draws[row.site]), row.index)
        worst = max(worst, abs(float(values.mean()) - row.mean) / row.sd)
    return worst


# ----------------------------------------------------------------------------
# One child: one (model, engine), a cold run then warm runs
# ----------------------------------------------------------------------------


def run_numpyro(model, data, seed: int):
    import jax
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=1000, num_chains=4, progress_bar=False)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not enough devices to run parallel chains"
        mcmc.run(
            jax.random.PRNGKey(seed), extra_fields=("diverging", "num_steps", "energy"), **data
        )
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    seconds = time.perf_counter() - started
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return draws, extra, seconds, 1, ""


def run_jaxpro(model, data, seed: int):
    import jaxpro

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed gate warns; the record says so
        posterior = jaxpro.bayes.sample(model, **data, seed=seed)
    seconds = time.perf_counter() - started
    final = posterior.attempts[-1].settings if posterior.attempts else ""
    return dict(posterior.draws), None, seconds, len(posterior.attempts), final, posterior


def child(model_name: str, engine: str, repeats: int) -> dict:
    if engine == "numpyro-4cpu":
        import numpyro

        numpyro.set_host_device_count(4)
    baseline_started = time.perf_counter()
    import jax

    from jaxpro.bayes import Gate
    from jaxpro.bayes._diagnose import mcmc_diagnostics

    if engine == "jaxpro":
        import jaxpro  # noqa: F401
    else:
        jax.config.update("jax_enable_x64", False)  # NumPyro's default precision
    model, data, reference = problem(model_name)  # NumPy only: JAX's backend is not started yet
    import_seconds = time.perf_counter() - baseline_started

    runs, sites = [], None
    for seed in range(repeats + 1):
        if engine == "jaxpro":
            draws, extra, seconds, attempts, final, posterior = run_jaxpro(model, data, seed)
            diagnostics = posterior.diagnostics
            ok = posterior.ok
        else:
            draws, extra, seconds, attempts, final = run_numpyro(model, data, seed)
            diagnostics = mcmc_diagnostics(draws, extra=extra)
            ok = not diagnostics.problems(Gate())
        # traced after the first run, which must find JAX unstarted (jaxpro then
        # gives it a CPU device per chain, as it does for a user)
        sites = sites or latent_sites(model, data)
        own = mcmc_diagnostics({k: draws[k] for k in sites if k in draws})
        runs.append(
            {
                "seed": seed,
                "seconds": seconds,
                "min_ess_bulk": float(own.min_ess_bulk),
                "min_ess_tail": float(own.min_ess_tail),
                "max_rhat": float(own.max_rhat),
                "divergences": diagnostics.divergences,
                "gate": bool(ok),
                "attempts": attempts,
                "final": final,
                "gap": reference_gap(draws, reference),
            }
        )
    return {
        "model": model_name,
        "engine": engine,
        "devices": len(jax.devices()),
        "import_seconds": import_seconds,
        "runs": runs,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


# ----------------------------------------------------------------------------
# Parent: launch children, tabulate
# ----------------------------------------------------------------------------


def launch(model_name: str, engine: str, repeats: int, max_seconds: float) -> dict:
    # jaxpro's default: a persistent compilation cache, here fresh for each child
    cache = tempfile.mkdtemp(prefix="bayes_bench_xla_")
    env = dict(os.environ, JAXPRO_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        model_name,
        engine,
        "--repeats",
        str(repeats),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=max_seconds, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            "model": model_name,
            "engine": engine,
            "error": f"timed out after {max_seconds:g} s",
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"model": model_name, "engine": engine, "error": tail[0][:200]}
    return json.loads(lines[-1])


def summarise(record: dict) -> dict:
    runs = record.get("runs", [])
    warm = runs[1:] or runs
    rates = [r["min_ess_bulk"] / r["seconds"] for r in warm]
    passed = [r for r in warm if r["gate"]]
    return {
        "cold": runs[0]["seconds"] if runs else None,
        "warm": fb.median_or_none([r["seconds"] for r in warm]),
        "rate": fb.median_or_none(rates),
        "rate_range": (min(rates), max(rates)) if rates else None,
        "divergences": [r["divergences"] for r in warm],
        "passed": len(passed),
        "warm_runs": len(warm),
        "to_gate": fb.median_or_none([r["seconds"] for r in passed]),
        "gap": max((r["gap"] for r in warm if r["gap"] is not None), default=None),
        "attempts": [r["attempts"] for r in warm],
        "final": warm[-1]["final"] if warm else "",
    }


def fmt_rate(summary: dict) -> str:
    if summary["rate"] is None:
        return "—"
    low, high = summary["rate_range"]
    return f"{summary['rate']:.0f} ({low:.0f}–{high:.0f})"


def table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "engine",
        "ESS/s median (range)",
        "gate passed",
        "time to gate",
        "divergences",
        "attempts",
        "warm run",
        "cold run",
        "max mean gap (ref sd)",
        "peak RSS",
    ]
    rows = []
    for record in records:
        if "error" in record:
            rows.append([record["model"], record["engine"], f"error: {record['error']}"] + [""] * 8)
            continue
        s = summarise(record)
        rows.append(
            [
                record["model"],
                record["engine"],
                fmt_rate(s),
                f"{s['passed']}/{s['warm_runs']}",
                fb.fmt_time(s["to_gate"]) if s["to_gate"] is not None else "never",
                ", ".join(str(d) for d in s["divergences"]),
                ", ".join(str(a) for a in s["attempts"]),
                fb.fmt_time(s["warm"]),
                fb.fmt_time(s["cold"]),
                f"{s['gap']:.3f}" if s["gap"] is not None else "—",
                fb.fmt_mb(record["peak_rss"]),
            ]
        )
    return header, rows


def find(records, model, engine):
    return next(
        (r for r in records if r["model"] == model and r["engine"] == engine and "runs" in r), None
    )


def verdicts(records) -> list[str]:
    lines = []
    mine = find(records, "eight_schools_centered", "jaxpro")
    if mine:
        s = summarise(mine)
        met = (
            s["passed"] == s["warm_runs"]
            and s["rate"] is not None
            and s["rate"] >= TARGET_ESS_PER_SECOND
        )
        lines.append(
            f"Target: jaxpro given centred eight schools passes the gate at ≥ {TARGET_ESS_PER_SECOND:.0f} ESS/s: "
            f"{'MET' if met else 'NOT MET'} (gate passed in {s['passed']}/{s['warm_runs']} warm runs, "
            f"median {s['rate']:.0f} ESS/s, final settings: {s['final']})."
        )
    for model in MODELS:
        mine, plain = find(records, model, "jaxpro"), find(records, model, "numpyro")
        if mine and plain:
            a, b = summarise(mine), summarise(plain)
            if a["rate"] and b["rate"]:
                lines.append(
                    f"{model}: jaxpro / plain NumPyro ESS per second = {a['rate'] / b['rate']:.1f}× "
                    f"(medians of the warm runs)."
                )
    return lines


def report(records: list[dict], machine: dict, repeats: int) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    header, rows = table(records)
    parts = [
        "## Bayesian inference (`benchmarks/bayes_bench.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM; "
        f"Python {machine['python']}; {versions}. Run {machine['date']}.",
        "",
        "Plain NumPyro = `MCMC(NUTS(model), num_warmup=1000, num_samples=1000, num_chains=4)` "
        "(its defaults: float32, chains one after another on one CPU device); `numpyro-4cpu` adds "
        "`numpyro.set_host_device_count(4)`; jaxpro = `jaxpro.bayes.sample(model, **data)` with "
        "its defaults (float64, 4 chains on 4 CPU devices, gate R-hat < 1.01, bulk and tail "
        "ESS ≥ 400, no divergences, remediation when it fails). ESS/s = the minimum ArviZ bulk ESS "
        "over every scalar of the model's latent sites / the run's wall time (remediation "
        f"attempts included). Median and range over {repeats} warm runs (seeds 1–{repeats}) per "
        "process; the cold run (seed 0, compilation included; jaxpro's compilation cache starts empty, warm runs may reuse it as they do by default) is reported separately. *Max mean "
        "gap* = the largest |posterior mean − posteriordb reference mean| in reference sds over "
        "the warm runs. Peak RSS = the process's `ru_maxrss` (MB = 10⁶ bytes).",
        "",
        fb.markdown_table(header, rows),
        "",
        *[f"- {line}" for line in verdicts(records)],
    ]
    return "\n".join(parts)


def write_section(section: str, path: Path = fb.BENCHMARKS_MD) -> None:
    """Replace this benchmark's section of ``path`` (BENCHMARKS.md by default)."""
    fb.write_section(section, path, markers=(MARK_BEGIN, MARK_END))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="warm runs per process"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="budget per process")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--json", help="write the raw records here")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.repeats)))
        return
    models = fb.parse_list(args.models, MODELS, "model")
    engines = fb.parse_list(args.engines, ENGINES, "engine")
    machine = fb.machine_info()
    machine["versions"] = {k: fb.package_version(k) for k in ("jaxpro", "jax", "numpyro", "arviz")}
    records = []
    for model in models:
        for engine in engines:
            started = time.perf_counter()
            records.append(launch(model, engine, args.repeats, args.max_seconds))
            print(
                f"{model} / {engine}: {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    header, rows = table(records)
    print(fb.text_table(header, rows))
    for line in verdicts(records):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "records": records}, indent=1))
    if args.write:
        write_section(report(records, machine, args.repeats))
        print(f"wrote {fb.BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
