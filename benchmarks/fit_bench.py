"""Curve-fitting benchmark: jaxpro against scipy (lm, trf) and nlsq, side by side.

Run ``python benchmarks/fit_bench.py`` for the whole matrix (models x sizes x
engines), ``--quick`` for sizes up to 1e6, ``--write`` to update the
``fit_bench`` section of ``BENCHMARKS.md``. See ``benchmarks/README.md``.

Every configuration runs in its own child process (this same file with
``--child``), so that each one's peak RSS is its own and nlsq's import-time
side effects (float64 switched on globally, environment variables, logging
handlers) cannot leak into the other engines. The child generates the data
deterministically, times the first call (cold, compilation included) and the
best of several warm calls, reads its peak RSS and prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------

ENGINES = ("jaxpro", "scipy-lm", "scipy-trf", "nlsq")
# The NumPy-model table (--numpy-model): scipy's own model through jaxpro, as
# its jax.numpy translation, and an in-place NumPy variant that runs on the host
# (against SciPy on that same in-place function: "scipy-lm-inplace").
NUMPY_ENGINES = ("scipy-lm", "jaxpro-numpy", "scipy-lm-inplace", "jaxpro-host")
NUMPY_MAX_SIZE = 1e7
ALL_ENGINES = ENGINES + NUMPY_ENGINES[1:]
SIZES = (1e3, 1e4, 1e5, 1e6, 1e7, 3e7)
QUICK_MAX_SIZE = 1e6
SEED = 20240611
NOISE_SD = 0.05
X_RANGE = (0.0, 5.0)
BLOCK = 1 << 20  # points per block when generating data (bounds temporaries)

WARM_MIN_CALLS = 2
WARM_MAX_CALLS = 20
WARM_MAX_CALLS_LARGE = 3  # at N >= LARGE_N
LARGE_N = 10_000_000
WARM_TARGET_SECONDS = 1.0

DEFAULT_MAX_SECONDS = 120.0
# Child overhead (interpreter, imports, data generation) added to predictions.
PREDICTION_OVERHEAD_SECONDS = 3.0

# Before each child, wait (up to --quiet-wait seconds) until other processes
# use at most this share of all CPUs, measured over QUIET_SAMPLE_SECONDS.
QUIET_BUSY_FRACTION = 0.2
QUIET_SAMPLE_SECONDS = 1.0
DEFAULT_QUIET_WAIT_SECONDS = 120.0
# A child during which other processes used more than this many cores on
# average is run again (at most NOISY_RETRIES times) and flagged if still noisy.
NOISY_CORES = 0.15
NOISY_RETRIES = 2

RESULT_PREFIX = "FIT_BENCH_RESULT "
MARK_BEGIN = "<!-- fit_bench:begin -->"
MARK_END = "<!-- fit_bench:end -->"
NUMPY_MARKERS = ("<!-- fit_bench_numpy:begin -->", "<!-- fit_bench_numpy:end -->")
BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"

# Agreement needed to call a fit "right".
REL_TOL_VS_SCIPY = 1e-4  # relative, against scipy's lm answer on the same data
REL_TOL_VS_TRUTH = 0.05  # relative, against the generating parameters (loose)

# Targets from the issue.
TARGET_SPEEDUP = 10.0  # warm, vs scipy lm, at N >= TARGET_SPEEDUP_MIN_N
TARGET_SPEEDUP_MIN_N = 1_000_000
TARGET_WARM_SMALL_SECONDS = 2e-3  # at N = 1e3
TARGET_COLD_SECONDS = 1.5
TARGET_RSS_N = 10_000_000
TARGET_RSS_SLACK_BYTES = 300e6  # on top of the raw data (x and y, float64)
BYTES_PER_POINT = 16
MB = 1e6  # memory is reported in MB = 10**6 bytes

# Every environment variable that could point a child at a shared cache.
CACHE_ENV_VARS = ("JAXPRO_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR", "NLSQ_JAX_CACHE_DIR")


# ----------------------------------------------------------------------------
# Models (module-level so that compiled executables are reused across calls)
# ----------------------------------------------------------------------------


def exp3_np(x, a, b, c):
    """``a*exp(-b*x) + c`` with NumPy (for scipy)."""
    return a * np.exp(-b * x) + c


def exp3_jax(x, a, b, c):
    """``a*exp(-b*x) + c`` with jax.numpy (for jaxpro and nlsq)."""
    import jax.numpy as jnp  # imported here so that scipy children never load JAX

    return a * jnp.exp(-b * x) + c


def gauss6_np(x, a1, m1, s1, a2, m2, s2):
    """Sum of two Gaussians with NumPy (for scipy)."""
    return a1 * np.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * np.exp(-0.5 * ((x - m2) / s2) ** 2)


def gauss6_jax(x, a1, m1, s1, a2, m2, s2):
    """Sum of two Gaussians with jax.numpy (for jaxpro and nlsq)."""
    import jax.numpy as jnp

    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


def exp3_in_place(x, a, b, c):
    """``a*exp(-b*x) + c`` computed into one array in place: JAX cannot trace it."""
    out = np.multiply(-b, x)
    np.exp(out, out=out)
    out *= a
    out += c
    return out


def gauss6_in_place(x, a1, m1, s1, a2, m2, s2):
    """Two Gaussians, each computed into its array in place: JAX cannot trace it.

    (``out += ...`` alone would not do: on a traced array it rebinds to a new
    one, so the jax.numpy translation runs it compiled.)
    """
    total = np.zeros_like(x, dtype=np.float64)
    for a, m, s in ((a1, m1, s1), (a2, m2, s2)):
        term = np.subtract(x, m)
        term /= s
        np.square(term, out=term)
        term *= -0.5
        np.exp(term, out=term)
        term *= a
        total += term
    return total


@dataclass(frozen=True)
class Model:
    """A benchmark model: its implementations, true parameters and start."""

    name: str
    formula: str
    np_fn: Callable
    jax_fn: Callable
    truth: tuple[float, ...]
    p0: tuple[float, ...]
    in_place_fn: Callable | None = None  # NumPy, in place (jaxpro runs it on the host)


MODELS = {
    "exp3": Model(
        "exp3",
        "a*exp(-b*x) + c",
        exp3_np,
        exp3_jax,
        (2.5, 1.3, 0.5),
        (1.0, 1.0, 1.0),
        exp3_in_place,
    ),
    "gauss6": Model(
        "gauss6",
        "a1*exp(-(x-m1)^2/(2 s1^2)) + a2*exp(-(x-m2)^2/(2 s2^2))",
        gauss6_np,
        gauss6_jax,
        (2.0, 1.5, 0.4, 1.2, 3.2, 0.6),
        (1.8, 1.4, 0.5, 1.0, 3.0, 0.5),
        gauss6_in_place,
    ),
}


# ----------------------------------------------------------------------------
# Child: one configuration in one process
# ----------------------------------------------------------------------------


def generate_data(model: Model, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic data ``y = model(x, *truth) + noise`` on ``x = linspace(0, 5, n)``.

    ``y`` is filled block by block, so no temporary is larger than ``BLOCK``
    points: the only full-size arrays are ``x`` and ``y``.
    """
    x = np.linspace(*X_RANGE, n)
    y = np.empty_like(x)
    rng = np.random.default_rng(SEED)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        y[start:stop] = model.np_fn(x[start:stop], *model.truth)
        y[start:stop] += NOISE_SD * rng.standard_normal(stop - start)
    return x, y


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def make_fitter(engine: str, model: Model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Import ``engine`` and return ``fit(x, y) -> popt`` (imports happen here, untimed)."""
    p0 = np.asarray(model.p0)
    if engine == "jaxpro":
        import jax  # imported before the baseline, not inside the cold call

        import jaxpro

        curve_fit = jaxpro.curve_fit

        def fit(x, y):
            return np.asarray(curve_fit(model.jax_fn, x, y, p0=p0)[0])

        return fit
    if engine in ("jaxpro-numpy", "jaxpro-host"):
        import warnings

        import jax  # noqa: F401  (imported before the baseline, not inside the cold call)

        import jaxpro
        from jaxpro.errors import NumPyModelWarning

        # the NumPy model as scipy gets it (translated), or the in-place one (host)
        function = model.np_fn if engine == "jaxpro-numpy" else model.in_place_fn
        curve_fit = jaxpro.curve_fit

        def fit(x, y):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NumPyModelWarning)  # recorded, not printed
                popt = np.asarray(curve_fit(function, x, y, p0=p0)[0])
            on_host = any(issubclass(w.category, NumPyModelWarning) for w in caught)
            if on_host != (engine == "jaxpro-host"):  # the row must measure what it says
                raise RuntimeError(f"{engine}: the model ran {'on' if on_host else 'off'} the host")
            return popt

        return fit
    if engine in ("scipy-lm", "scipy-trf", "scipy-lm-inplace"):
        from scipy.optimize import curve_fit

        method = engine.split("-")[1]
        # the in-place variant: the very function jaxpro's host row is given
        function = model.in_place_fn if engine.endswith("inplace") else model.np_fn

        def fit(x, y):
            return np.asarray(curve_fit(function, x, y, p0=p0, method=method)[0])

        return fit
    if engine == "nlsq":
        import logging

        import nlsq

        # nlsq logs every iteration at INFO/PERFORMANCE level; formatting those
        # records is not part of the fit, so keep only warnings and errors.
        logging.disable(logging.WARNING - 1)
        # One CurveFit instance reused across calls, as nlsq recommends for
        # repeated fits: nlsq.curve_fit() builds a new instance (and retraces)
        # on every call.
        fitter = nlsq.CurveFit()

        def fit(x, y):
            popt, _ = fitter.curve_fit(model.jax_fn, x, y, p0=p0)  # a result that unpacks
            return np.asarray(popt)

        return fit
    raise ValueError(f"unknown engine {engine!r}")


def time_calls(fit: Callable, x, y, n: int, deadline: float) -> dict:
    """Time the first call (cold), then warm calls until ~1 s, the call cap or the deadline."""
    start = time.perf_counter()
    popt = fit(x, y)
    cold = time.perf_counter() - start
    max_calls = WARM_MAX_CALLS_LARGE if n >= LARGE_N else WARM_MAX_CALLS
    warm: list[float] = []
    while len(warm) < max_calls:
        spent = sum(warm)
        if len(warm) >= WARM_MIN_CALLS and spent >= WARM_TARGET_SECONDS:
            break
        last = warm[-1] if warm else cold
        if warm and time.perf_counter() + last > deadline:
            break  # at least one warm call; more would overrun the budget
        start = time.perf_counter()
        popt = fit(x, y)
        warm.append(time.perf_counter() - start)
    return {"cold_s": cold, "warm_s": min(warm), "warm_calls": len(warm), "popt": popt}


def relative_deviation(popt: np.ndarray, reference: Sequence[float]) -> float:
    """Largest ``|popt - reference| / |reference|`` over the parameters."""
    reference = np.asarray(reference, dtype=float)
    scale = np.maximum(np.abs(reference), 1e-12)
    return float(np.max(np.abs(np.asarray(popt, dtype=float) - reference) / scale))


def check_fit(popt: np.ndarray, model: Model, reference: Sequence[float] | None) -> dict:
    """Deviation from scipy lm's answer if given, else from the truth (loose)."""
    if reference is not None:
        deviation = relative_deviation(popt, reference)
        return {"dev_ref": "scipy-lm", "dev": deviation, "ok": deviation <= REL_TOL_VS_SCIPY}
    deviation = relative_deviation(popt, model.truth)
    return {"dev_ref": "truth", "dev": deviation, "ok": deviation <= REL_TOL_VS_TRUTH}


def run_child(engine: str, model: Model, n: int, reference, max_seconds: float) -> dict:
    """Measure one configuration in this process and return its record."""
    t_start = time.perf_counter()
    deadline = t_start + 0.9 * max_seconds
    record = {"engine": engine, "model": model.name, "n": n, "loadavg": os.getloadavg()[0]}
    x, y = generate_data(model, n)
    record["datagen_s"] = time.perf_counter() - t_start
    t_import = time.perf_counter()
    try:
        fit = make_fitter(engine, model)
    except Exception as exc:  # an engine that does not import is reported, not fatal
        return record | {"status": "n/a", "reason": one_line(exc)}
    record["import_s"] = time.perf_counter() - t_import
    record["baseline_rss"] = current_rss_bytes()
    record["baseline_peak_rss"] = peak_rss_bytes()
    try:
        timing = time_calls(fit, x, y, n, deadline)
    except Exception as exc:
        return record | {"status": "error", "reason": one_line(exc)}
    popt = timing.pop("popt")
    record |= timing
    record["peak_rss"] = peak_rss_bytes()
    record["popt"] = [float(p) for p in popt]
    record |= check_fit(popt, model, reference)
    record["status"] = "ok"
    return record


def one_line(exc: BaseException) -> str:
    """``Type: message`` on a single, bounded line."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:200]


# ----------------------------------------------------------------------------
# Parent: the matrix
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One child run: ``variant`` is "main", or "cache-prime"/"cache-warm" for jaxpro."""

    model: str
    n: int
    engine: str
    variant: str = "main"


def child_env(job: Job, cache_dir: str | None) -> dict:
    """Environment for a child: no shared compilation caches unless asked for."""
    env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV_VARS}
    env["JAXPRO_CACHE_DIR"] = cache_dir if cache_dir else "off"
    env["NLSQ_DISABLE_PERSISTENT_CACHE"] = "1"  # honest cold for nlsq too
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def cpu_jiffies() -> tuple[int, int] | None:
    """``(total, busy)`` clock ticks of all CPUs since boot (Linux /proc/stat), else None."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        values = [int(v) for v in first[1:9]]  # user .. steal (guest is inside user)
    except (OSError, ValueError, IndexError):
        return None
    total = sum(values)
    return total, total - values[3] - values[4]  # minus idle and iowait


def cpu_busy_fraction(seconds: float) -> float | None:
    """Share of all CPUs that was busy over the next ``seconds``."""
    before = cpu_jiffies()
    time.sleep(seconds)
    after = cpu_jiffies()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def wait_for_quiet(max_wait: float) -> float | None:
    """Wait until the machine is quiet (or ``max_wait`` passed); return the last busy share."""
    give_up = time.monotonic() + max_wait
    while True:
        busy = cpu_busy_fraction(QUIET_SAMPLE_SECONDS)
        if busy is None or busy <= QUIET_BUSY_FRACTION or time.monotonic() >= give_up:
            return busy
        time.sleep(2.0)


def children_cpu_seconds() -> float:
    """CPU time (user + system) of this process's finished children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_command(job: Job, reference, max_seconds: float) -> list[str]:
    """Command line of the child that measures ``job``."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--engines", job.engine,
        "--models", job.model,
        "--sizes", str(job.n),
        "--max-seconds", str(max_seconds),
    ]  # fmt: skip
    if reference is not None:
        command += ["--reference", ",".join(repr(float(p)) for p in reference)]
    return command


def run_child_process(job: Job, reference, max_seconds: float, cache_dir: str | None) -> dict:
    """Run one child; its record gains ``other_cpu``: cores used by other processes meanwhile."""
    base = {"engine": job.engine, "model": job.model, "n": job.n, "variant": job.variant}
    jiffies0, cpu0, start = cpu_jiffies(), children_cpu_seconds(), time.perf_counter()
    try:
        done = subprocess.run(
            child_command(job, reference, max_seconds),
            env=child_env(job, cache_dir),
            capture_output=True,
            text=True,
            timeout=max_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return base | {"status": "timeout", "reason": f"killed after {max_seconds:g} s"}
    wall = time.perf_counter() - start
    jiffies1, cpu1 = cpu_jiffies(), children_cpu_seconds()
    if jiffies0 is not None and jiffies1 is not None:
        busy_seconds = (jiffies1[1] - jiffies0[1]) / os.sysconf("SC_CLK_TCK")
        base["other_cpu"] = max(0.0, busy_seconds - (cpu1 - cpu0)) / wall
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return base | {"status": "error", "reason": f"exit {done.returncode}: {tail[:200]}"}
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) | base | {"child_wall_s": wall}


def launch(
    job: Job,
    reference,
    max_seconds: float,
    quiet_wait: float,
    cache_dir: str | None = None,
    retries: int = NOISY_RETRIES,
) -> dict:
    """Run ``job`` in a child process once the machine is quiet; return its record.

    When other processes used more than ``NOISY_CORES`` meanwhile, the child is
    run again (up to ``retries`` times, short runs only) and the least
    disturbed run is kept; it is flagged ``noisy`` if none was clean.
    """
    attempts = []
    for attempt in range(1 + retries):
        busy = wait_for_quiet(quiet_wait) if quiet_wait > 0 else None
        record = run_child_process(job, reference, max_seconds, cache_dir)
        record |= {"cpu_busy_before": busy, "attempt": attempt + 1}
        attempts.append(record)
        other = record.get("other_cpu") or 0.0
        short = record.get("child_wall_s", max_seconds) <= max_seconds / 4
        if record.get("status") != "ok" or other <= NOISY_CORES or not short:
            break
    best = min(attempts, key=lambda r: r.get("other_cpu") or 0.0)
    best["noisy"] = (best.get("other_cpu") or 0.0) > NOISY_CORES
    return best


def predicted_seconds(previous: dict | None, n: int) -> float | None:
    """Child wall time predicted from the same engine at a smaller N.

    The one-off part of the first call (compilation) is taken as constant and
    the per-call time as linear in N.
    """
    if previous is None or previous.get("status") != "ok":
        return None
    one_off = max(previous["cold_s"] - previous["warm_s"], 0.0)
    per_call = previous["warm_s"] * n / previous["n"]
    overhead = PREDICTION_OVERHEAD_SECONDS * max(1.0, n / 1e7)
    return overhead + one_off + (1 + WARM_MIN_CALLS) * per_call


def run_matrix(models, sizes, engines, max_seconds: float, quiet_wait: float, log) -> list[dict]:
    """Run every configuration, one child at a time; return all records."""
    records: list[dict] = []
    last_ok: dict[tuple[str, str], dict] = {}
    for model in models:
        for n in sizes:
            reference = None
            for engine in sorted(engines, key=lambda e: e != "scipy-lm"):
                job = Job(model, n, engine)
                previous = last_ok.get((model, engine))
                guess = predicted_seconds(previous, n)
                if guess is not None and guess > max_seconds:
                    record = {
                        "engine": engine, "model": model, "n": n, "variant": "main",
                        "status": "skipped",
                        "reason": f"predicted ~{guess:.0f} s > budget {max_seconds:g} s",
                    }  # fmt: skip
                    records.append(record)
                    log(describe(record))
                    continue
                batch = run_engine(job, reference, max_seconds, quiet_wait)
                for record in batch:
                    records.append(record)
                    log(describe(record))
                main = batch[0]
                if main.get("status") == "ok":
                    last_ok[(model, engine)] = main
                    if engine == "scipy-lm":
                        reference = main["popt"]
    return records


def run_engine(job: Job, reference, max_seconds: float, quiet_wait: float) -> list[dict]:
    """The main run; for jaxpro also a cache-priming run and a run on the warmed disk cache."""
    main = launch(job, reference, max_seconds, quiet_wait)
    if job.engine != "jaxpro" or main.get("status") != "ok":
        return [main]
    with tempfile.TemporaryDirectory(prefix="fit_bench_cache_") as cache:
        # No retry of the priming run: a second attempt would find its own cache.
        prime = Job(job.model, job.n, job.engine, "cache-prime")
        runs = [launch(prime, reference, max_seconds, quiet_wait, cache, retries=0)]
        warm = Job(job.model, job.n, job.engine, "cache-warm")
        runs.append(launch(warm, reference, max_seconds, quiet_wait, cache))
    return [main, *runs]


def describe(record: dict) -> str:
    """One progress line for a record."""
    head = f"{record['model']:>6} N={fmt_n(record['n']):>4} {record['engine']:<9}"
    head += f" {record.get('variant', 'main'):<11}"
    if record.get("status") != "ok":
        return f"{head} {record.get('status')}: {record.get('reason', '')}"
    return (
        f"{head} cold {fmt_time(record['cold_s']):>8}  warm {fmt_time(record['warm_s']):>8}"
        f" (x{record['warm_calls']})  peak {fmt_mb(record['peak_rss'])}"
        f"  dev {record['dev']:.1e} vs {record['dev_ref']}{'' if record['ok'] else '  WRONG'}"
        f"  [others: {busy_text(record.get('other_cpu'))} cores, try {record.get('attempt')}"
        f"{', NOISY' if record.get('noisy') else ''}]"
    )


def busy_text(cores: float | None) -> str:
    """'0.12' or '?'."""
    return "?" if cores is None else f"{cores:.2f}"


# ----------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------


def fmt_n(n: float) -> str:
    """1000 -> '1e3', 30000000 -> '3e7'."""
    exponent = math.floor(math.log10(n))
    mantissa = n / 10**exponent
    return f"{mantissa:g}e{exponent}"


def fmt_time(seconds: float | None) -> str:
    """Human time: µs/ms/s with three significant figures."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_mb(nbytes: float | None) -> str:
    """Bytes as MB (10**6)."""
    return "—" if nbytes is None else f"{nbytes / MB:.0f} MB"


def find(records, model, n, engine, variant="main") -> dict | None:
    """The record of one configuration, if it was run."""
    for record in records:
        if (record["model"], record["n"], record["engine"], record.get("variant", "main")) == (
            model,
            n,
            engine,
            variant,
        ):
            return record
    return None


def cell(record: dict | None, key: str, fmt: Callable) -> str:
    """A table cell: the formatted value, or the reason it is missing."""
    if record is None:
        return "—"
    status = record.get("status")
    if status == "n/a":
        return "n/a"
    if status != "ok":
        return str(status)
    return fmt(record.get(key)) + (" †" if record.get("noisy") else "")


def rss_cell(record: dict | None) -> str:
    """Peak RSS, with the growth above the post-import baseline in parentheses."""
    if record is None or record.get("status") != "ok":
        return cell(record, "peak_rss", fmt_mb)
    growth = record["peak_rss"] - record["baseline_rss"]
    return f"{record['peak_rss'] / MB:.0f} (+{growth / MB:.0f}) MB"


def speedup(records, model, n) -> float | None:
    """scipy lm warm / jaxpro warm."""
    ours = find(records, model, n, "jaxpro")
    theirs = find(records, model, n, "scipy-lm")
    if not (ours and theirs and ours.get("status") == "ok" and theirs.get("status") == "ok"):
        return None
    return theirs["warm_s"] / ours["warm_s"]


def dev_cell(record: dict | None) -> str:
    """Deviation of jaxpro's popt (relative), flagged when outside tolerance."""
    if record is None or record.get("status") != "ok":
        return "—"
    text = f"{record['dev']:.1e}"
    if record["dev_ref"] != "scipy-lm":
        text += " (vs truth)"
    return text if record["ok"] else f"{text} ✗"


TABLE_HEADER = (
    "N",
    "jaxpro cold (no cache)",
    "jaxpro cold (disk cache)",
    "jaxpro warm",
    "scipy lm warm",
    "scipy trf warm",
    "nlsq cold",
    "nlsq warm",
    "speed-up vs scipy lm (warm)",
    "peak RSS jaxpro",
    "peak RSS scipy lm",
    "peak RSS nlsq",
    "max |Δpopt| vs scipy lm",
)


def table_rows(records, model: str, sizes) -> list[list[str]]:
    """Rows of the per-model table."""
    rows = []
    for n in sizes:
        jp = find(records, model, n, "jaxpro")
        lm = find(records, model, n, "scipy-lm")
        nl = find(records, model, n, "nlsq")
        ratio = speedup(records, model, n)
        rows.append(
            [
                fmt_n(n),
                cell(jp, "cold_s", fmt_time),
                cell(find(records, model, n, "jaxpro", "cache-warm"), "cold_s", fmt_time),
                cell(jp, "warm_s", fmt_time),
                cell(lm, "warm_s", fmt_time),
                cell(find(records, model, n, "scipy-trf"), "warm_s", fmt_time),
                cell(nl, "cold_s", fmt_time),
                cell(nl, "warm_s", fmt_time),
                "—" if ratio is None else f"{ratio:.1f}×",
                rss_cell(jp),
                rss_cell(lm),
                rss_cell(nl),
                dev_cell(jp),
            ]
        )
    return rows


NUMPY_HEADER = (
    "N",
    "scipy lm warm",
    "jaxpro, NumPy model translated: cold",
    "warm",
    "vs scipy lm (warm)",
    "scipy lm, in-place model: warm",
    "jaxpro, in-place model on the host: cold",
    "warm",
    "vs scipy lm, same model (warm)",
    "max |Δpopt| vs scipy lm (translated, host)",
)


def numpy_rows(records, model: str, sizes) -> list[list[str]]:
    """Rows of the NumPy-model table: scipy lm against jaxpro's two paths for NumPy models."""
    rows = []
    for n in sizes:
        lm = find(records, model, n, "scipy-lm")
        translated = find(records, model, n, "jaxpro-numpy")
        host = find(records, model, n, "jaxpro-host")
        lm_inplace = find(records, model, n, "scipy-lm-inplace")

        def ratio(record, lm=lm):
            ok = record and lm and record.get("status") == "ok" and lm.get("status") == "ok"
            return f"{lm['warm_s'] / record['warm_s']:.2f}×" if ok else "—"

        rows.append(
            [
                fmt_n(n),
                cell(lm, "warm_s", fmt_time),
                cell(translated, "cold_s", fmt_time),
                cell(translated, "warm_s", fmt_time),
                ratio(translated),
                cell(lm_inplace, "warm_s", fmt_time),
                cell(host, "cold_s", fmt_time),
                cell(host, "warm_s", fmt_time),
                ratio(host, lm_inplace),
                f"{dev_cell(translated)}, {dev_cell(host)}",
            ]
        )
    return rows


def numpy_markdown(records, models, sizes, machine: dict) -> str:
    """The NumPy-model section of BENCHMARKS.md (``--numpy-model --write``)."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    out = [
        "## Curve fitting with models written with NumPy (`fit_bench.py --numpy-model`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM;"
        f" Python {machine['python']}; {versions}. Run {machine['date']}"
        f"{interference_note(records)}",
        "",
        "SciPy's model as SciPy users write it (`np.exp`) handed to `jaxpro.curve_fit`: jaxpro"
        " runs its exact `jax.numpy` translation. The same model computed into an array in place"
        " (`np.exp(out, out=out)`, which JAX cannot trace) runs on the host: up to 32,768 points"
        " (LM; 4,096 for TRF) SciPy's own loop iterates (MINPACK lmdif, as `curve_fit` runs it,"
        " with jaxpro's checks, plan and covariance at the answer: its p extra evaluations"
        " are in the time), above that through `jax.pure_callback` with SciPy's forward"
        " differences inside jaxpro's compiled iterations. Cold and warm as in the curve-fitting"
        " table; each configuration in its own process; ratios are scipy lm's warm time over"
        " jaxpro's, on the same function (the host row against SciPy given the in-place"
        " model too).",
        "",
    ]
    for model in models:
        spec = MODELS[model]
        out += [
            f"### {model}: `{spec.formula}`",
            "",
            markdown_table(NUMPY_HEADER, numpy_rows(records, model, sizes)),
            "",
        ]
    return "\n".join(out)


def markdown_table(header: Sequence[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def fmt_row(row):
        return "| " + " | ".join(value.replace("|", "\\|") for value in row) + " |"

    lines = [fmt_row(header), "|" + "---|" * len(header)]
    return "\n".join(lines + [fmt_row(r) for r in rows])


def text_table(header: Sequence[str], rows: list[list[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt_row(row):
        return "  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True))

    lines = [fmt_row(header), fmt_row(["-" * w for w in widths])]
    return "\n".join(lines + [fmt_row(r) for r in rows])


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------


def median_or_none(values) -> float | None:
    """The median of ``values``, None when there are none (a configuration that never ran)."""
    return float(np.median(values)) if len(values) else None


def yes_no(flag: bool) -> str:
    """'yes' / 'NO'."""
    return "yes" if flag else "NO"


def target_lines(records, models, sizes) -> list[str]:
    """The issue's targets, evaluated from the numbers (one bullet per target and model)."""
    lines = []
    for model in models:
        lines += target_speedup(records, model, sizes)
        lines += target_small_warm(records, model)
        lines += target_cold(records, model, sizes)
        lines += target_rss(records, model)
    return lines


def target_speedup(records, model, sizes) -> list[str]:
    """Warm >= 10x faster than scipy lm at N >= 1e6, per row."""
    parts = []
    for n in (n for n in sizes if n >= TARGET_SPEEDUP_MIN_N):
        ratio = speedup(records, model, n)
        if ratio is None:
            parts.append(f"{fmt_n(n)}: n/a")
        else:
            parts.append(f"{fmt_n(n)}: {yes_no(ratio >= TARGET_SPEEDUP)} ({ratio:.1f}×)")
    if not parts:
        return []
    return [
        f"- {model}: warm ≥ {TARGET_SPEEDUP:g}× faster than scipy lm at N ≥ 1e6 — "
        + "; ".join(parts)
    ]


def target_small_warm(records, model) -> list[str]:
    """Warm <= 2 ms at N = 1e3."""
    record = find(records, model, 1000, "jaxpro")
    if record is None or record.get("status") != "ok":
        return []
    ok = record["warm_s"] <= TARGET_WARM_SMALL_SECONDS
    return [f"- {model}: warm ≤ 2 ms at N = 1e3 — {yes_no(ok)} ({fmt_time(record['warm_s'])})"]


def target_cold(records, model, sizes) -> list[str]:
    """Cold <= 1.5 s, without and with the disk cache, per N."""
    lines = []
    for variant, label in (("main", "no cache"), ("cache-warm", "disk cache")):
        parts = []
        for n in sizes:
            record = find(records, model, n, "jaxpro", variant)
            if record is not None and record.get("status") == "ok":
                ok = record["cold_s"] <= TARGET_COLD_SECONDS
                parts.append(f"{fmt_n(n)}: {yes_no(ok)} ({fmt_time(record['cold_s'])})")
        if parts:
            lines.append(f"- {model}: cold ({label}) ≤ 1.5 s — " + "; ".join(parts))
    return lines


def target_rss(records, model) -> list[str]:
    """Peak RSS at N = 1e7 <= raw data bytes + 300 MB (3e7 reported for information)."""
    lines = []
    for n in (TARGET_RSS_N, 3 * TARGET_RSS_N):
        record = find(records, model, n, "jaxpro")
        if record is None or record.get("status") != "ok":
            continue
        budget = BYTES_PER_POINT * n + TARGET_RSS_SLACK_BYTES
        ok = record["peak_rss"] <= budget
        over = record["peak_rss"] - budget
        verdict = yes_no(ok) if n == TARGET_RSS_N else ("within" if ok else "over")
        cached = find(records, model, n, "jaxpro", "cache-warm")
        cached_text = ""
        if cached is not None and cached.get("status") == "ok":
            cached_text = (
                f"; with the disk cache warm (no compilation in the process)"
                f" {fmt_mb(cached['peak_rss'])}"
            )
        lines.append(
            f"- {model}: peak RSS at N = {fmt_n(n)} ≤ data {BYTES_PER_POINT * n / MB:.0f} MB"
            f" + 300 MB = {budget / MB:.0f} MB — {verdict}"
            f" ({fmt_mb(record['peak_rss'])}, {'+' if over > 0 else ''}{over / MB:.0f} MB vs budget;"
            f" growth above the post-import baseline"
            f" {(record['peak_rss'] - record['baseline_rss']) / MB:.0f} MB{cached_text})"
            + ("" if n == TARGET_RSS_N else " [information only]")
        )
    return lines


# ----------------------------------------------------------------------------
# Machine description and BENCHMARKS.md
# ----------------------------------------------------------------------------


def package_version(name: str) -> str:
    """Installed version of a distribution, without importing it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """CPU, cores, RAM, Python and library versions, date."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    ram = None
    try:
        match = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        ram = int(match.group(1)) * 1024 if match else None
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": None if ram is None else round(ram / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {
            name: package_version(name)
            for name in ("jaxpro", "jax", "jaxlib", "numpy", "scipy", "nlsq")
        },
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_start": round(os.getloadavg()[0], 2),
    }


def import_notes(records, model) -> str:
    """Import times, which the cold columns exclude."""
    parts = []
    for engine in ENGINES:
        times = [
            r["import_s"]
            for r in records
            if r["model"] == model and r["engine"] == engine and r.get("status") == "ok"
        ]
        if times:
            parts.append(f"{engine} {fmt_time(float(np.median(times)))}")
    return "Import time (median, not included in cold): " + ", ".join(parts) + "." if parts else ""


def unavailable_notes(records) -> list[str]:
    """One line per engine/config that could not run (n/a, error, timeout, skipped)."""
    seen = []
    for r in records:
        if r.get("status") not in (None, "ok"):
            line = (
                f"- {r['model']} N={fmt_n(r['n'])} {r['engine']}"
                f"{'' if r.get('variant', 'main') == 'main' else ' (' + r['variant'] + ')'}:"
                f" {r['status']} — {r.get('reason', '')}"
            )
            seen.append(line)
    return seen


def noisy_note(records) -> str:
    """Footnote for measurements taken while other processes were busy."""
    if not any(r.get("noisy") for r in records):
        return ""
    return (
        f"† other processes used more than {NOISY_CORES} cores on average during this"
        f" measurement, even in the quietest of its runs (short runs are repeated up to"
        f" {NOISY_RETRIES} times); treat it as an upper bound."
    )


def interference_note(records) -> str:
    """The largest CPU use by other processes during any kept measurement."""
    others = [r["other_cpu"] for r in records if r.get("other_cpu") is not None]
    if not others:
        return ""
    return (
        f" Other processes used at most {max(others):.2f} cores on average during any kept"
        " measurement (from `/proc/stat` minus the child's own CPU time)."
    )


def report_markdown(records, models, sizes, machine: dict) -> str:
    """The whole fit_bench section (without the markers)."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    ram = machine["ram_gib"]
    out = [
        "## Curve fitting (`benchmarks/fit_bench.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {ram} GiB RAM, {machine['os']};"
        f" Python {machine['python']}; {versions}. Run {machine['date']}"
        f" (1-min load average at start {machine['loadavg_start']}).{interference_note(records)}",
        "",
        "Each configuration runs in its own process. *cold* = first `curve_fit` call in a fresh"
        " process (compilation included, imports excluded); *warm* = best of the following calls"
        f" (up to {WARM_MAX_CALLS}, or ~1 s; {WARM_MAX_CALLS_LARGE} at N ≥ 1e7)."
        " *jaxpro cold (no cache)* runs with `JAXPRO_CACHE_DIR=off`; *(disk cache)* is a second"
        " process on a compilation cache written by a previous process. nlsq runs with"
        " `NLSQ_DISABLE_PERSISTENT_CACHE=1`, one reused `nlsq.CurveFit()` instance and its INFO"
        " logging disabled. Peak RSS is `ru_maxrss` of the child; in parentheses its growth above"
        " the RSS after data generation and imports. MB = 10⁶ bytes. Δpopt is the largest relative"
        " difference between jaxpro's parameters and scipy lm's on the same data.",
        "",
    ]
    for model in models:
        spec = MODELS[model]
        out += [
            f"### {model}: `{spec.formula}` ({len(spec.truth)} parameters)",
            "",
            markdown_table(TABLE_HEADER, table_rows(records, model, sizes)),
            "",
        ]
        note = import_notes(records, model)
        if note:
            out += [note, ""]
    note = noisy_note(records)
    if note:
        out += [note, ""]
    out += ["### Targets", "", *target_lines(records, models, sizes), ""]
    missing = unavailable_notes(records)
    if missing:
        out += ["### Not measured", "", *missing, ""]
    return "\n".join(out)


def write_section(
    section: str,
    path: Path = BENCHMARKS_MD,
    markers: tuple[str, str] = (MARK_BEGIN, MARK_END),
) -> None:
    """Replace the text between a benchmark's markers in ``path`` (create what is missing).

    Every benchmark script writes its section through this, with its own markers.
    """
    begin, end = markers
    block = f"{begin}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    """Comma-separated names, validated."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(bad)}")
    return items


def parse_sizes(text: str) -> list[int]:
    """'1e3,1e6' -> [1000, 1000000]."""
    return [int(float(t)) for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 1e6 only")
    parser.add_argument("--models", default=",".join(MODELS), help="e.g. exp3,gauss6")
    parser.add_argument("--sizes", default=None, help="e.g. 1e3,1e6 (default: all)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="e.g. jaxpro,scipy-lm")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument(
        "--numpy-model",
        action="store_true",
        help="the NumPy-model table: scipy lm vs jaxpro on NumPy models (translated, host)",
    )
    parser.add_argument("--json", default=None, help="also write raw records to this file")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="budget per configuration; the child is killed after it (default 120)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=DEFAULT_QUIET_WAIT_SECONDS,
        help="before each child, wait up to this long for other processes to go idle (0: never)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.models = parse_list(args.models, tuple(MODELS), "model")
        args.engines = parse_list(args.engines, ALL_ENGINES, "engine")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    sizes = parse_sizes(args.sizes) if args.sizes else [int(n) for n in SIZES]
    if args.numpy_model and not args.child:
        args.engines = list(NUMPY_ENGINES)
        if not args.sizes:
            sizes = [n for n in sizes if n <= NUMPY_MAX_SIZE]
    if args.quick:
        sizes = [n for n in sizes if n <= QUICK_MAX_SIZE]
    args.sizes = sizes
    return args


def child_main(args: argparse.Namespace) -> None:
    """Entry point of a child: exactly one engine, model and size."""
    reference = [float(v) for v in args.reference.split(",")] if args.reference else None
    record = run_child(
        args.engines[0], MODELS[args.models[0]], args.sizes[0], reference, args.max_seconds
    )
    print(RESULT_PREFIX + json.dumps(record), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the matrix, print the tables, optionally write BENCHMARKS.md and JSON."""
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    machine = machine_info()
    print(
        f"fit_bench on {machine['cpu']} ({machine['cores']} cores), load {machine['loadavg_start']}"
    )

    def log(line):
        print(line, flush=True)

    records = run_matrix(
        args.models, args.sizes, args.engines, args.max_seconds, args.quiet_wait, log
    )
    if args.numpy_model:
        for model in args.models:
            print(f"\n{model} written with NumPy: {MODELS[model].formula}")
            print(text_table(NUMPY_HEADER, numpy_rows(records, model, args.sizes)))
        if args.write:
            write_section(
                numpy_markdown(records, args.models, args.sizes, machine), markers=NUMPY_MARKERS
            )
            print(f"\nwrote {BENCHMARKS_MD}")
        return
    for model in args.models:
        print(f"\n{model}: {MODELS[model].formula}")
        print(text_table(TABLE_HEADER, table_rows(records, model, args.sizes)))
    if noisy_note(records):
        print("\n" + noisy_note(records))
    print("\nTargets:")
    print("\n".join(target_lines(records, args.models, args.sizes)))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "records": records}, indent=1) + "\n"
        )
    if args.write:
        write_section(report_markdown(records, args.models, args.sizes, machine))
        print(f"\nwrote {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
