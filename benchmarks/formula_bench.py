"""Formula benchmark: ``jaxpro.bayes.fit("y ~ x + (1 + x | g)", data)`` against bambi.

Two data sets, each fitted as a gaussian varying-intercept, varying-slope model:

- ``radon``: Minnesota radon (919 houses in 85 counties; posteriordb's
  ``radon_mn`` data, copied into ``tests/data/posteriordb``), columns
  ``log_radon``, ``floor`` and ``county`` (labels ``c01`` ... ``c85``);
- ``simulated``: 100,000 rows in 500 groups (``--quick``: 5,000 rows in 50),
  ``y = 1 + 0.5 x + a[g] + b[g] x + e`` with ``x ~ N(0, 1)``, ``e ~ N(0, 1)``
  and ``(a, b)`` drawn with sds 0.5 and 0.25 and correlation 0.5 (fixed seed).

Two forms of the group term:

- ``correlated``: ``(1 + x | g)``, intercepts and slopes with an LKJ-correlated
  prior; jaxpro only: bambi cannot fit correlated group effects (its
  ``(1 + x | g)`` means uncorrelated terms), so its rows read "cannot fit";
- ``uncorrelated``: the same model for both libraries: jaxpro
  ``(1 + x || g)``, bambi ``(1 + x | g)``.

Engines: ``jaxpro`` (``jaxpro.bayes.fit(formula, data, progress=False)``, its
defaults, with ``jaxpro.use_cpu_cores(4)`` first so that the 4 chains run in
parallel), ``bambi-pymc`` (``bmb.Model(formula, data).fit(draws=1000,
tune=1000, chains=4, cores=4)``: PyMC's NUTS, 4 worker processes) and
``bambi-numpyro`` (the same with ``inference_method="numpyro"``: PyMC hands the
model to NumPyro's NUTS, chains in parallel on PyMC's own host devices). bambi
runs in its own virtual environment (``--bambi-python``, default
``.venv-bambi/bin/python``; see ``benchmarks/README.md``): it brings PyMC,
PyTensor and Numba, and may pin other ArviZ or NumPy versions than jaxpro's.

Per run: wall time from model construction to draws in hand (jaxpro's
remediation included); the minimum bulk ESS over every named parameter
(intercept, slope, sigma, group sds and correlation, every group effect),
computed for every engine by the same function (``jaxpro.bayes._diagnose.
mcmc_diagnostics``: ArviZ's rank-normalised ESS and R-hat, tail ESS at the 5 %
and 95 % quantiles), so bambi's draws are diagnosed by this (the parent)
process; ESS per second; divergences; whether the gate passes (R-hat < 1.01,
bulk and tail ESS >= 400, no divergences). *Time to gate* is the wall time of
a run that passes; bambi has no remediation, so a failed run never gets there.

Each (data set, form, engine) runs in its own process (this file with
``--child``): the first run there is *cold* (compilation included; every
engine's compilation cache (jaxpro's XLA cache, PyTensor's, Numba's) starts
empty in a fresh directory), the next ``--repeats`` runs (seeds 1, 2, ...) are
*warm* and may reuse what the cold run compiled, as each library does by default. Peak RSS: the child's
``ru_maxrss`` and, polled by the parent every 0.25 s, the summed RSS of the
child and its descendants (PyMC samples in worker processes); the parent kills
a child that passes ``--max-rss`` or leaves the machine under 1.5 GB available.
``--write`` replaces the ``formula_bench`` section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import fit_bench as fb  # noqa: E402  (same folder, NumPy only: machine info, tables, quiet waits)

DATASETS = ("radon", "simulated")
FORMS = ("correlated", "uncorrelated")
ENGINES = ("jaxpro", "bambi-pymc", "bambi-numpyro")
MARK_BEGIN, MARK_END = "<!-- formula_bench:begin -->", "<!-- formula_bench:end -->"
RUN_PREFIX, DONE_PREFIX = "FORMULA_BENCH_RUN ", "FORMULA_BENCH_DONE "
LEVELS = "__levels__"  # prefix of the group labels saved beside bambi's draws
RADON_JSON = (
    ROOT
    / "tests"
    / "data"
    / "posteriordb"
    / "radon_mn-radon_variable_intercept_slope_noncentered"
    / "data.json"
)
DEFAULT_BAMBI_PYTHON = ROOT / ".venv-bambi" / "bin" / "python"

CHAINS = 4
SIM_SEED = 20260611
SIM_ROWS, SIM_GROUPS = 100_000, 500
QUICK_ROWS, QUICK_GROUPS = 5_000, 50
DRAWS, QUICK_DRAWS = 1000, 500  # warm-up and draws per chain, each
DEFAULT_REPEATS, QUICK_REPEATS = 2, 1
# the generating values of the simulated data (population level)
TRUTH = {
    "Intercept": 1.0,
    "x": 0.5,
    "sigma": 1.0,
    "sd(Intercept|g)": 0.5,
    "sd(x|g)": 0.25,
    "cor(Intercept,x|g)": 0.5,
}

# the gate, the same for every engine
RHAT_MAX = 1.01
ESS_MIN = 400.0

DEFAULT_MAX_SECONDS = 3600.0
QUICK_MAX_SECONDS = 900.0
POLL_SECONDS = 0.25
# Memory guard: the parent kills a child whose process tree passes --max-rss (default: half
# the machine's RAM) or when the machine has less than this available, before the OOM killer.
MIN_AVAILABLE_BYTES = 1.5e9


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def columns(dataset: str) -> tuple[str, str, str]:
    """(response, predictor, group) column names of a data set."""
    return ("log_radon", "floor", "county") if dataset == "radon" else ("y", "x", "g")


def formula(dataset: str, form: str, engine: str) -> str:
    """The formula an engine is given (bambi's ``|`` is jaxpro's ``||``)."""
    y, x, g = columns(dataset)
    bar = "|" if form == "correlated" or engine != "jaxpro" else "||"
    return f"{y} ~ {x} + (1 + {x} {bar} {g})"


def make_data(dataset: str, rows: int, groups: int) -> dict[str, np.ndarray]:
    """The columns as NumPy arrays (group labels as strings), generated once by the parent."""
    if dataset == "radon":
        raw = json.loads(RADON_JSON.read_text())
        codes = np.asarray(raw["county_idx"], dtype=np.int64)
        return {
            "log_radon": np.asarray(raw["log_radon"], dtype=np.float64),
            "floor": np.asarray(raw["floor_measure"], dtype=np.float64),
            "county": np.array([f"c{c:02d}" for c in codes]),
        }
    rng = np.random.default_rng(SIM_SEED)
    sd = np.array([TRUTH["sd(Intercept|g)"], TRUTH["sd(x|g)"]])
    rho = TRUTH["cor(Intercept,x|g)"]
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    # every group gets rows: a shuffled round-robin assignment
    code = rng.permutation(np.arange(rows) % groups)
    x = rng.standard_normal(rows)
    y = (
        TRUTH["Intercept"]
        + effects[code, 0]
        + (TRUTH["x"] + effects[code, 1]) * x
        + TRUTH["sigma"] * rng.standard_normal(rows)
    )
    width = len(str(groups))
    return {"y": y, "x": x, "g": np.array([f"g{c + 1:0{width}d}" for c in code])}


def load_frame(path: str):
    """The data file written by the parent, as a pandas DataFrame."""
    import pandas as pd

    with np.load(path, allow_pickle=False) as data:
        return pd.DataFrame({k: data[k] for k in data.files})


# ----------------------------------------------------------------------------
# Diagnostics and the gate (the same for every engine)
# ----------------------------------------------------------------------------


def is_population(name: str) -> bool:
    """Population-level rows (not a group effect such as ``county[c01]``)."""
    return not str(name).endswith("]")


def run_summary(table, divergences: int | None) -> dict:
    """Min ESS, max R-hat, divergences, gate verdict and population means of one run's table."""
    bulk = table["ess_bulk"].to_numpy(dtype=float)
    tail = table["ess_tail"].to_numpy(dtype=float)
    rhat = table["r_hat"].to_numpy(dtype=float)
    problems = []
    if not np.all(rhat < RHAT_MAX):
        problems.append(f"R-hat {np.nanmax(rhat):.3f} ({table.index[np.nanargmax(rhat)]})")
    if not np.all(bulk >= ESS_MIN):
        problems.append(f"bulk ESS {np.nanmin(bulk):.0f} ({table.index[np.nanargmin(bulk)]})")
    if not np.all(tail >= ESS_MIN):
        problems.append(f"tail ESS {np.nanmin(tail):.0f} ({table.index[np.nanargmin(tail)]})")
    if divergences:
        problems.append(f"{divergences} divergences")
    population = [name for name in table.index if is_population(name)]
    return {
        "min_ess_bulk": float(np.nanmin(bulk)),
        "min_ess_tail": float(np.nanmin(tail)),
        "max_rhat": float(np.nanmax(rhat)),
        "worst_bulk": str(table.index[np.nanargmin(bulk)]),
        "divergences": divergences,
        "parameters": len(table),
        "gate": not problems,
        "problems": problems,
        "means": {str(k): float(table.loc[k, "mean"]) for k in population},
        "sds": {str(k): float(table.loc[k, "sd"]) for k in population},
    }


def diagnose_bambi(path: str) -> dict:
    """Diagnose bambi draws saved by a child (parent side, the main environment's ArviZ)."""
    from jaxpro.bayes._diagnose import mcmc_diagnostics

    with np.load(path, allow_pickle=False) as saved:
        draws = {k: saved[k] for k in saved.files if not k.startswith("__")}
        levels = {k[len(LEVELS) :]: saved[k] for k in saved.files if k.startswith(LEVELS)}
        diverging = saved["__diverging__"]
    table = mcmc_diagnostics(draws, extra={"diverging": diverging}).table
    labels = {
        f"{name}[{i}]": f"{name}[{label}]"
        for name, values in levels.items()
        for i, label in enumerate(values)
    }
    return run_summary(table.rename(index=labels), int(diverging.sum()))


def truth_gap(means: dict, sds: dict) -> float | None:
    """Largest |posterior mean - generating value| / posterior sd (simulated data only)."""
    gaps = [abs(means[k] - v) / sds[k] for k, v in TRUTH.items() if k in means and sds[k] > 0]
    return max(gaps) if gaps else None


# ----------------------------------------------------------------------------
# One child: one (data set, form, engine), a cold run then warm runs
# ----------------------------------------------------------------------------


def emit(prefix: str, record: dict) -> None:
    print(prefix + json.dumps(record), flush=True)


def child_jaxpro(args, frame_path: str) -> None:
    started = time.perf_counter()
    import jaxpro

    jaxpro.use_cpu_cores(CHAINS)  # before any JAX work: one CPU device per chain
    frame = load_frame(frame_path)
    import_seconds = time.perf_counter() - started
    text = formula(args.dataset, args.form, "jaxpro")
    for seed in range(args.repeats + 1):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a failed gate warns; the record says so
            posterior = jaxpro.bayes.fit(
                text,
                data=frame,
                family="gaussian",
                method=args.jaxpro_method,
                num_chains=CHAINS,
                num_warmup=args.warmup,
                num_samples=args.draws,
                seed=seed,
                progress=False,
            )
        seconds = time.perf_counter() - started
        divergences = getattr(posterior.diagnostics, "divergences", None)
        record = run_summary(posterior.table, divergences)
        record.update(
            seed=seed,
            seconds=seconds,
            engine_seconds=posterior.seconds,
            engine_ok=bool(posterior.ok),
            method=posterior.plan.method,
            attempts=len(posterior.attempts),
            final=posterior.attempts[-1].settings if posterior.attempts else "",
        )
        emit(RUN_PREFIX, record)
    emit(DONE_PREFIX, child_tail(import_seconds, ("jaxpro", "jax", "numpyro", "arviz")))


def bambi_draws(idata, dataset: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """bambi's posterior under jaxpro's names: ``(chains, draws[, groups])`` arrays, and divergences."""
    _, x, g = columns(dataset)
    posterior = idata["posterior"]
    names = {
        "Intercept": "Intercept",
        x: x,
        "sigma": "sigma",
        f"1|{g}_sigma": f"sd(Intercept|{g})",
        f"{x}|{g}_sigma": f"sd({x}|{g})",
        f"1|{g}": g,
        f"{x}|{g}": f"{x}|{g}",
    }
    missing = sorted(set(names) - set(posterior.data_vars))
    if missing:
        raise KeyError(f"bambi's posterior lacks {missing}; it has {sorted(posterior.data_vars)}")
    draws = {}
    for theirs, ours in names.items():
        values = posterior[theirs]
        extra = [d for d in values.dims if d not in ("chain", "draw")]
        draws[ours] = np.asarray(values.transpose("chain", "draw", *extra).values, dtype=float)
        if extra:  # the group labels, to name the rows as jaxpro does: county[c01]
            draws[LEVELS + ours] = np.asarray(values[extra[0]].values).astype(str)
    diverging = np.asarray(idata["sample_stats"]["diverging"].values, dtype=bool)
    return draws, diverging


def child_bambi(args, frame_path: str) -> None:
    started = time.perf_counter()
    import bambi as bmb

    frame = load_frame(frame_path)
    import_seconds = time.perf_counter() - started
    backend = args.engine.removeprefix("bambi-")
    text = formula(args.dataset, args.form, args.engine)
    for seed in range(args.repeats + 1):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = bmb.Model(text, frame, family="gaussian")
            idata = model.fit(
                draws=args.draws,
                tune=args.warmup,
                chains=CHAINS,
                cores=CHAINS,
                random_seed=seed,
                progressbar=False,
                inference_method=backend,
            )
        seconds = time.perf_counter() - started
        draws, diverging = bambi_draws(idata, args.dataset)
        path = Path(args.outdir) / f"{args.dataset}-{args.form}-{args.engine}-{seed}.npz"
        np.savez(path, __diverging__=diverging, **draws)
        emit(RUN_PREFIX, {"seed": seed, "seconds": seconds, "draws_file": str(path)})
    emit(
        DONE_PREFIX,
        child_tail(
            import_seconds, ("bambi", "pymc", "pytensor", "numpyro", "jax", "arviz", "numpy")
        ),
    )


def child_tail(import_seconds: float, packages: Sequence[str]) -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "import_seconds": import_seconds,
        "peak_rss": own,
        "peak_rss_worker": workers or None,
        "versions": {name: fb.package_version(name) for name in packages},
        "python": sys.version.split()[0],
    }


# ----------------------------------------------------------------------------
# Parent: launch children, watch them, tabulate
# ----------------------------------------------------------------------------


def tree_rss(root: int) -> int:
    """Summed RSS (bytes) of process ``root`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def child_env(cache_dir: str) -> dict:
    """Every engine's compilation cache in a fresh directory of this child (jaxpro's XLA
    cache, PyTensor's and Numba's): the cold run compiles, later runs may reuse it, as a
    user's second call in a session does (each library's default behaviour)."""
    env = {k: v for k, v in os.environ.items() if k not in fb.CACHE_ENV_VARS}
    env["JAXPRO_CACHE_DIR"] = str(Path(cache_dir) / "jaxpro-xla")
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={cache_dir}") if f)
    env["NUMBA_CACHE_DIR"] = str(Path(cache_dir) / "numba-user")
    env["PYTHONWARNINGS"] = "ignore"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def launch(job: dict, args, frame_path: str, workdir: str) -> dict:
    """Run one configuration in a child process; keep the runs it finished, even on timeout."""
    python = sys.executable if job["engine"] == "jaxpro" else str(args.bambi_python)
    outdir = tempfile.mkdtemp(prefix="child-", dir=workdir)
    command = [
        python,
        str(Path(__file__).resolve()),
        "--child",
        job["dataset"],
        job["form"],
        job["engine"],
        "--data-file",
        frame_path,
        "--outdir",
        outdir,
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--draws",
        str(args.draws),
        "--jaxpro-method",
        args.jaxpro_method,
    ]
    busy = fb.wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
    stdout_path, stderr_path = Path(outdir) / "stdout", Path(outdir) / "stderr"
    jiffies0, cpu0 = fb.cpu_jiffies(), fb.children_cpu_seconds()
    started = time.perf_counter()
    peak_tree, status, reason = 0, "ok", ""
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            env=child_env(str(Path(outdir) / "cache")),
            start_new_session=True,  # its own process group: a timeout kills its workers too
        )
        while process.poll() is None:
            rss = tree_rss(process.pid)
            peak_tree = max(peak_tree, rss)
            available = available_bytes()
            if time.perf_counter() - started > args.max_seconds:
                status, reason = "timeout", f"killed after {args.max_seconds:g} s"
            elif rss > args.max_rss:
                status = "killed"
                reason = f"killed at RSS {fb.fmt_mb(rss)} > limit {fb.fmt_mb(args.max_rss)}"
            elif available is not None and available < MIN_AVAILABLE_BYTES:
                status = "killed"
                reason = (
                    f"killed at RSS {fb.fmt_mb(rss)}: the machine had under "
                    f"{fb.fmt_mb(MIN_AVAILABLE_BYTES)} available"
                )
            if status != "ok":
                os.killpg(process.pid, signal.SIGKILL)  # the child's own process group
                process.wait()
                break
            time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    record = dict(job, status=status, child_wall=wall, cpu_busy_before=busy, runs=[])
    jiffies1, cpu1 = fb.cpu_jiffies(), fb.children_cpu_seconds()
    if jiffies0 is not None and jiffies1 is not None:
        busy_seconds = (jiffies1[1] - jiffies0[1]) / os.sysconf("SC_CLK_TCK")
        record["other_cpu"] = max(0.0, busy_seconds - (cpu1 - cpu0)) / wall
    for line in stdout_path.read_text().splitlines():
        if line.startswith(RUN_PREFIX):
            run = json.loads(line[len(RUN_PREFIX) :])
            if "draws_file" in run:
                run.update(diagnose_bambi(run.pop("draws_file")))
            record["runs"].append(run)
        elif line.startswith(DONE_PREFIX):
            record.update(json.loads(line[len(DONE_PREFIX) :]))
    record["peak_rss_tree"] = peak_tree or None
    if status == "ok" and process.returncode != 0:
        reason = f"exit {process.returncode}: {error_line(stderr_path.read_text())}"
        if process.returncode == -signal.SIGKILL:
            reason += " (killed from outside: out of memory?)"
        record.update(status="error", reason=reason)
    elif status != "ok":
        record["reason"] = reason
    shutil.rmtree(outdir, ignore_errors=True)
    return record


def error_line(stderr: str) -> str:
    """The exception line of a traceback (else the last line), bounded."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Warning)\b:?", line)]
    return ((errors or lines or ["no output"])[-1])[:200]


def available_bytes() -> float | None:
    """MemAvailable of the machine (None if unreadable)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemAvailable:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def bambi_problem(python: Path) -> str | None:
    """Why bambi cannot run (None: it can)."""
    if not python.exists():
        return f"bambi not installed ({python} missing)"
    done = subprocess.run(
        [str(python), "-c", "import bambi, numpyro"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"bambi not installed ({last[:120]})"
    return None


def summarise(record: dict) -> dict:
    runs = record.get("runs", [])
    warm = runs[1:] or runs
    rates = [r["min_ess_bulk"] / r["seconds"] for r in warm]
    passed = [r for r in warm if r["gate"]]
    gaps = [truth_gap(r["means"], r["sds"]) for r in warm] if record["dataset"] != "radon" else []
    return {
        "cold": runs[0] if runs else None,
        "warm_runs": len(runs) - 1 if len(runs) > 1 else 0,
        "warm": fb.median_or_none([r["seconds"] for r in runs[1:]]),
        "rate": fb.median_or_none(rates),
        "rate_range": (min(rates), max(rates)) if rates else None,
        "ess": fb.median_or_none([r["min_ess_bulk"] for r in warm]),
        "rhat": max((r["max_rhat"] for r in warm), default=None),
        "divergences": [r["divergences"] for r in warm],
        "passed": len(passed),
        "counted": len(warm),
        "to_gate": fb.median_or_none([r["seconds"] for r in passed]),
        "gap": max((g for g in gaps if g is not None), default=None),
        "methods": sorted({r.get("method", "nuts") for r in warm}),
        "attempts": [r.get("attempts", 1) for r in warm],
    }


def fmt_rate(s: dict) -> str:
    if s["rate"] is None:
        return "—"
    low, high = s["rate_range"]
    return f"{s['rate']:.0f}" if low == high else f"{s['rate']:.0f} ({low:.0f}–{high:.0f})"


def fmt_cold(run: dict | None) -> str:
    if run is None:
        return "—"
    return f"{fb.fmt_time(run['seconds'])} {'✓' if run['gate'] else '✗'}"


HEADER = [
    "data",
    "form",
    "engine",
    "method",
    "time to gate",
    "gate passed",
    "min bulk ESS/s",
    "min bulk ESS",
    "max R-hat",
    "divergences",
    "warm run",
    "cold run (gate)",
    "truth gap (sd)",
    "peak RSS (all processes)",
]


def table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for record in records:
        head = [record["dataset"], record["form"], record["engine"]]
        if record["status"] in ("cannot fit", "not installed", "skipped"):
            rows.append(head + [record["reason"]] + [""] * (len(HEADER) - 4))
            continue
        if not record.get("runs"):
            rows.append(head + [f"{record['status']}: {record.get('reason', '')}"] + [""] * 10)
            continue
        s = summarise(record)
        incomplete = "" if record["status"] == "ok" else f" ({record['status']})"
        mark = " †" if record.get("noisy") else ""
        attempts = (
            "" if set(s["attempts"]) == {1} else f" ({'/'.join(map(str, s['attempts']))} attempts)"
        )
        rows.append(
            [
                *head,
                "/".join(s["methods"]) + attempts,
                (fb.fmt_time(s["to_gate"]) if s["to_gate"] is not None else "never") + mark,
                f"{s['passed']}/{s['counted']}{incomplete}",
                fmt_rate(s),
                f"{s['ess']:.0f}",
                f"{s['rhat']:.3f}",
                ", ".join("—" if d is None else str(d) for d in s["divergences"]),
                fb.fmt_time(s["warm"]),
                fmt_cold(s["cold"]),
                f"{s['gap']:.2f}" if s["gap"] is not None else "—",
                fmt_rss(record),
            ]
        )
    return HEADER, rows


def fmt_rss(record: dict) -> str:
    own, tree = record.get("peak_rss"), record.get("peak_rss_tree")
    if own is None:
        return fb.fmt_mb(tree)
    return f"{fb.fmt_mb(own)} ({fb.fmt_mb(tree)})"


def find(records, dataset, form, engine):
    return next(
        (
            r
            for r in records
            if (r["dataset"], r["form"], r["engine"]) == (dataset, form, engine) and r.get("runs")
        ),
        None,
    )


def verdicts(records: list[dict], datasets: Sequence[str]) -> list[str]:
    lines = []
    for dataset in datasets:
        mine = find(records, dataset, "uncorrelated", "jaxpro")
        for peer in ("bambi-pymc", "bambi-numpyro"):
            theirs = find(records, dataset, "uncorrelated", peer)
            if not (mine and theirs):
                continue
            a, b = summarise(mine), summarise(theirs)
            parts = []
            if a["to_gate"] is not None and b["to_gate"] is not None:
                ratio = b["to_gate"] / a["to_gate"]
                speed = f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"
                parts.append(
                    f"time to gate {fb.fmt_time(a['to_gate'])} vs "
                    f"{fb.fmt_time(b['to_gate'])} ({speed})"
                )
            elif a["to_gate"] is not None:
                parts.append(f"jaxpro passed the gate, {peer} never did")
            elif b["to_gate"] is not None:
                parts.append(f"{peer} passed the gate, jaxpro never did")
            else:
                parts.append("neither passed the gate")
            if a["rate"] and b["rate"]:
                parts.append(f"{a['rate'] / b['rate']:.1f}× the min bulk ESS per second")
            common = sorted(
                set(mine["runs"][-1]["means"])
                & set(theirs["runs"][-1]["means"])
                & {k for k in mine["runs"][-1]["means"] if is_population(k)}
            )
            if common:
                ma, mb = mine["runs"][-1], theirs["runs"][-1]
                gap = max(abs(ma["means"][k] - mb["means"][k]) / mb["sds"][k] for k in common)
                parts.append(f"posterior means within {gap:.2f} {peer} sds of each other")
            if parts:
                lines.append(
                    f"{dataset}, same (uncorrelated) model: jaxpro vs {peer}: "
                    + "; ".join(parts)
                    + "."
                )
        corr = find(records, dataset, "correlated", "jaxpro")
        if corr:
            s = summarise(corr)
            lines.append(
                f"{dataset}, correlated `(1 + x | g)`: jaxpro passed the gate in "
                f"{s['passed']}/{s['counted']} runs"
                + (f", median time to gate {fb.fmt_time(s['to_gate'])}" if s["to_gate"] else "")
                + "; bambi cannot fit this model."
            )
    differ = [
        f"{r['dataset']}/{r['form']} seed {run['seed']}"
        for r in records
        if r["engine"] == "jaxpro" and r["dataset"] in datasets
        for run in r.get("runs", [])
        if run.get("engine_ok") is not None and run["engine_ok"] != run["gate"]
    ]
    if differ:
        lines.append(
            "jaxpro's own verdict (`posterior.ok`, on its sampled sites) differs from the gate "
            f"on the named parameters in: {', '.join(differ)}."
        )
    return lines


def describe(record: dict) -> str:
    """One progress line for a record."""
    head = f"{record['dataset']} / {record['form']} / {record['engine']}: {record['status']}"
    runs = ", ".join(
        f"{r['seconds']:.1f} s {'pass' if r['gate'] else 'FAIL'} ess {r['min_ess_bulk']:.0f}"
        for r in record.get("runs", [])
    )
    other = record.get("other_cpu")
    return (
        f"{head} in {record.get('child_wall', 0):.0f} s [{runs}]"
        + (f" others {other:.2f} cores" if other is not None else "")
        + (f" ({record['reason']})" if record.get("reason") else "")
    )


def report(records: list[dict], machine: dict, args) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    peer = next((r["versions"] for r in records if r["engine"] != "jaxpro" and "versions" in r), {})
    peer_text = ", ".join(f"{k} {v}" for k, v in peer.items()) or "not run"
    header, rows = table(records)
    sizes = f"{args.rows:,} rows in {args.groups} groups"
    parts = [
        "## Formula models against bambi (`benchmarks/formula_bench.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM; "
        f"Python {machine['python']}; {versions}; bambi's environment: {peer_text}. "
        f"Run {machine['date']} (1-min load average at start {machine['loadavg_start']})"
        + (", `--quick`." if args.quick else "."),
        "",
        f"Data: radon (919 houses, 85 counties) and simulated ({sizes}, true correlation 0.5). "
        "Model: gaussian, varying intercepts and slopes. *correlated* = `(1 + x | g)` "
        "(jaxpro only: bambi cannot fit correlated group effects); *uncorrelated* = jaxpro "
        "`(1 + x || g)` = bambi `(1 + x | g)`, the same model (each library's default priors). "
        f"jaxpro = `jaxpro.bayes.fit(formula, data)` after `jaxpro.use_cpu_cores(4)` (method "
        f"{args.jaxpro_method!r}, 4 chains on 4 CPU devices, its gate and remediation); "
        f"bambi = `bmb.Model(formula, data).fit(draws={args.draws}, tune={args.warmup}, "
        "chains=4, cores=4)` with PyMC's NUTS (`bambi-pymc`, 4 worker processes) or "
        '`inference_method="numpyro"` (`bambi-numpyro`). Every engine draws '
        f"{args.warmup} warm-up + {args.draws} draws per chain on its first attempt. *Time to "
        "gate* = median wall time (model construction to draws, remediation included) of the "
        "warm runs that pass the gate: R-hat < 1.01, bulk and tail ESS ≥ 400 over every named "
        "parameter (population parameters and every group effect) and no divergences, computed "
        "for every engine by the same ArviZ rank-normalised diagnostics; bambi has no "
        "remediation, so a failed run *never* gets there. ESS/s = min bulk ESS / wall time. "
        f"Median (range) over {args.repeats} warm run(s) (seeds 1–{args.repeats}) per process; "
        "the cold run (seed 0, compilation included, fresh disk caches) is reported separately "
        "with ✓/✗ for its gate. *Truth gap* = the largest |posterior mean − generating value| in "
        "posterior sds over the population parameters (simulated data). Peak RSS = the child's "
        "`ru_maxrss`, in parentheses the largest summed RSS of its process tree (PyMC's workers "
        "included), MB = 10⁶ bytes. † = other processes used more than "
        f"{fb.NOISY_CORES} cores during the run.",
        "",
        fb.markdown_table(header, rows),
        "",
        *[f"- {line}" for line in verdicts(records, DATASETS)],
    ]
    imports: dict[str, float] = {}
    for r in records:
        if r.get("import_seconds") is not None:
            imports.setdefault(r["engine"], r["import_seconds"])
    if imports:
        parts.append(
            "- Import time (not in the times above): "
            + ", ".join(f"{k} {fb.fmt_time(v)}" for k, v in imports.items())
            + "."
        )
    return "\n".join(parts)


def write_section(section: str, path: Path = fb.BENCHMARKS_MD) -> None:
    """Replace this benchmark's section of ``path`` (BENCHMARKS.md by default)."""
    fb.write_section(section, path, markers=(MARK_BEGIN, MARK_END))


def jobs(datasets, forms, engines, bambi_missing: str | None) -> list[dict]:
    out = []
    for dataset in datasets:
        for form in forms:
            for engine in engines:
                job = {"dataset": dataset, "form": form, "engine": engine}
                if engine != "jaxpro" and form == "correlated":
                    job.update(status="cannot fit", reason="cannot fit (no correlated terms)")
                elif engine != "jaxpro" and bambi_missing:
                    job.update(status="not installed", reason=bambi_missing)
                out.append(job)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"simulated data {QUICK_ROWS:,} rows x {QUICK_GROUPS} groups, "
        f"{QUICK_DRAWS} warm-up + {QUICK_DRAWS} draws, {QUICK_REPEATS} warm run",
    )
    parser.add_argument("--rows", type=int, help="simulated rows")
    parser.add_argument("--groups", type=int, help="simulated groups")
    parser.add_argument("--warmup", type=int, help="warm-up iterations per chain")
    parser.add_argument("--draws", type=int, help="draws per chain")
    parser.add_argument("--repeats", type=int, help="warm runs per process")
    parser.add_argument("--jaxpro-method", default="auto", help="jaxpro.bayes.fit(method=...)")
    parser.add_argument("--bambi-python", type=Path, default=DEFAULT_BAMBI_PYTHON)
    parser.add_argument("--max-seconds", type=float, help="budget per child process")
    parser.add_argument(
        "--max-rss",
        type=float,
        help="memory guard: kill a child whose process tree's RSS passes this many bytes "
        "(default half the RAM)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=fb.DEFAULT_QUIET_WAIT_SECONDS,
        help="before each child, wait up to this long for other processes to go idle (0: off)",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--json", help="write the raw records here")
    parser.add_argument(
        "--from-json",
        help="run nothing: report a saved --json file (with --write: into BENCHMARKS.md)",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("DATA", "FORM", "ENGINE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--data-file", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "rows": QUICK_ROWS if quick else SIM_ROWS,
        "groups": QUICK_GROUPS if quick else SIM_GROUPS,
        "warmup": QUICK_DRAWS if quick else DRAWS,
        "draws": QUICK_DRAWS if quick else DRAWS,
        "repeats": QUICK_REPEATS if quick else DEFAULT_REPEATS,
        "max_seconds": QUICK_MAX_SECONDS if quick else DEFAULT_MAX_SECONDS,
    }
    if args.max_rss is None and not args.child:
        ram = fb.machine_info()["ram_gib"]
        args.max_rss = ram * 2**30 / 2 if ram else 8e9
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def run_all(args, datasets: Sequence[str]) -> tuple[dict, list[dict]]:
    """Every configuration, each in its child process: (machine, records)."""
    forms = fb.parse_list(args.forms, FORMS, "form")
    engines = fb.parse_list(args.engines, ENGINES, "engine")
    machine = fb.machine_info()
    machine["versions"] = {
        k: fb.package_version(k) for k in ("jaxpro", "jax", "numpyro", "arviz-stats")
    }
    missing = bambi_problem(args.bambi_python) if set(engines) - {"jaxpro"} else None
    records = []
    with tempfile.TemporaryDirectory(prefix="formula_bench_") as workdir:
        frames = {}
        for job in jobs(datasets, forms, engines, missing):
            if "status" in job:
                records.append(job)
                print(describe(job), file=sys.stderr, flush=True)
                continue
            dataset = job["dataset"]
            if dataset not in frames:
                frames[dataset] = str(Path(workdir) / f"{dataset}.npz")
                np.savez(frames[dataset], **make_data(dataset, args.rows, args.groups))
            record = launch(job, args, frames[dataset], workdir)
            record["noisy"] = (record.get("other_cpu") or 0.0) > fb.NOISY_CORES
            records.append(record)
            print(describe(record), file=sys.stderr, flush=True)
    return machine, records


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        args.dataset, args.form, args.engine = args.child
        (child_jaxpro if args.engine == "jaxpro" else child_bambi)(args, args.data_file)
        return
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        machine, records = saved["machine"], saved["records"]
        for key in ("quick", "rows", "groups", "warmup", "draws", "repeats", "jaxpro_method"):
            setattr(args, key, saved["args"][key])
        datasets = [d for d in DATASETS if any(r["dataset"] == d for r in records)]
    else:
        datasets = fb.parse_list(args.datasets, DATASETS, "data set")
        machine, records = run_all(args, datasets)
    header, rows = table(records)
    print(fb.text_table(header, rows))
    for line in verdicts(records, datasets):
        print(line)
    if args.json and not args.from_json:
        Path(args.json).write_text(
            json.dumps(
                {"machine": machine, "args": vars(args), "records": records}, indent=1, default=str
            )
        )
    if args.write:
        write_section(report(records, machine, args))
        print(f"wrote {fb.BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
