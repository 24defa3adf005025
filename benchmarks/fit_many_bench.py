"""Many-curve fitting benchmark: ``jaxpro.fit_many`` against a Python loop of scipy.

M curves of 200 points of ``a*exp(-b*x) + c`` (M = 1e3, 1e4, 1e5) fitted by one
``jaxpro.fit_many`` call, against ``scipy.optimize.curve_fit`` called once per
curve, timed on a 2,000-curve sample and scaled to M. Run
``python benchmarks/fit_many_bench.py`` for everything, ``--quick`` for M up to
1e4, ``--write`` to update the ``fit_many_bench`` section of ``BENCHMARKS.md``.
See ``benchmarks/README.md``.

As in ``fit_bench.py`` (whose helpers this script imports), every configuration
runs in its own child process (this same file with ``--child``) so that its
timings and peak RSS are its own, and the two-CPU-device configuration can set
``jax_num_cpu_devices`` before JAX starts. The child generates the data
deterministically, measures, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fit_bench as fb  # a script in the same folder (see sys.path above)

# ----------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------

SIZES = (1_000, 10_000, 20_000, 100_000)
QUICK_MAX_M = 10_000
SAMPLE = 2_000  # curves in the scipy loop (and in the accuracy comparison)
TWO_DEVICES = 2
N_POINTS = 200
X_RANGE = (0.0, 5.0)
TRUTH_LOW = (1.0, 0.5, -0.5)  # a, b, c ~ U(low, high), independently per curve
TRUTH_HIGH = (3.0, 2.0, 0.5)
P0 = (1.5, 1.0, 0.0)  # the same start for every curve, jaxpro and scipy alike
NOISE_SD = 0.05
SEED = 20240612
BLOCK_CURVES = 1_000  # curves per seeded block: curve i is the same whatever M

# The scipy loop is timed this many times and the best kept (like jaxpro's warm time).
SCIPY_LOOPS = 3
# Warm: the second call; while it and the following ones take under
# WARM_TARGET_SECONDS in all, up to WARM_MAX_CALLS calls are made and the best kept.
WARM_MAX_CALLS = 7
WARM_TARGET_SECONDS = 2.0

DEFAULT_MAX_SECONDS = 600.0

# Accuracy: curves on which jaxpro and scipy "agree".
AGREE_STDERR = 1e-4  # |Δ| in units of jaxpro's standard error

# Target from the issue, judged on the median of this many back-to-back
# scipy / jaxpro pairs (the first is the main run's).
TARGET_SPEEDUP = 50.0
TARGET_M = 100_000
ROUNDS = 3

RESULT_PREFIX = "FIT_MANY_BENCH_RESULT "
MARK_BEGIN = "<!-- fit_many_bench:begin -->"
MARK_END = "<!-- fit_many_bench:end -->"
BENCHMARKS_MD = fb.BENCHMARKS_MD
MB = fb.MB


# ----------------------------------------------------------------------------
# Model (module level, so that the compiled program is reused across calls)
# ----------------------------------------------------------------------------


def exp3_np(x, a, b, c):
    """``a*exp(-b*x) + c`` with NumPy (for scipy)."""
    return a * np.exp(-b * x) + c


def exp3_jax(x, a, b, c):
    """``a*exp(-b*x) + c`` with jax.numpy (for jaxpro)."""
    import jax.numpy as jnp  # imported here so that the scipy child never loads JAX

    return a * jnp.exp(-b * x) + c


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def generate_curves(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, Y, truth)``: ``Y[i] = a_i*exp(-b_i*x) + c_i + noise`` on a shared x.

    Curves come in blocks of ``BLOCK_CURVES``, each from its own seeded
    generator, so curve ``i`` is identical for every ``m > i``: the scipy
    sample (the first ``SAMPLE`` curves) is the head of every jaxpro data set.
    """
    x = np.linspace(*X_RANGE, N_POINTS)
    Y = np.empty((m, N_POINTS))
    truth = np.empty((m, 3))
    for block, start in enumerate(range(0, m, BLOCK_CURVES)):
        stop = min(start + BLOCK_CURVES, m)
        rng = np.random.default_rng((SEED, block))
        params = rng.uniform(TRUTH_LOW, TRUTH_HIGH, size=(BLOCK_CURVES, 3))[: stop - start]
        noise = rng.standard_normal((BLOCK_CURVES, N_POINTS))[: stop - start]
        truth[start:stop] = params
        a, b, c = (params[:, j, None] for j in range(3))
        Y[start:stop] = exp3_np(x, a, b, c) + NOISE_SD * noise
    return x, Y, truth


# ----------------------------------------------------------------------------
# Children: one configuration in one process
# ----------------------------------------------------------------------------


def child_jaxpro(m: int, devices: int) -> dict:
    """Cold and warm ``fit_many`` on M curves with ``devices`` CPU devices."""
    record: dict = {"engine": "jaxpro", "m": m, "devices": devices}
    t0 = time.perf_counter()
    x, Y, _ = generate_curves(m)
    record["datagen_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import jax

    if devices > 1:
        jax.config.update("jax_num_cpu_devices", devices)  # before any JAX use
    import jaxpro

    record["device_count"] = jax.device_count()
    record["import_s"] = time.perf_counter() - t0
    record["baseline_rss"] = fb.current_rss_bytes()
    p0 = np.asarray(P0)

    def call():
        start = time.perf_counter()
        result = jaxpro.fit_many(exp3_jax, x, Y, p0=p0)
        return result, time.perf_counter() - start

    result, record["cold_s"] = call()
    record["cold_timings"] = result.timings.to_dict()
    warm: list[float] = []
    while len(warm) < WARM_MAX_CALLS and (not warm or sum(warm) < WARM_TARGET_SECONDS):
        result, seconds = call()
        warm.append(seconds)
        if len(warm) == 1:
            record["warm_timings"] = result.timings.to_dict()  # of the second call
    record["warm_s"] = min(warm)
    record["warm_second_call_s"] = warm[0]
    record["warm_calls"] = len(warm)
    record["peak_rss"] = fb.peak_rss_bytes()
    record["converged"] = int(result.converged.sum())
    record["nfev_median"] = float(np.median(result.nfev))
    record["nfev_max"] = int(result.nfev.max())
    record["method"] = str(result.plan.settings.get("method"))
    record["curves_by_program"] = dict(result.plan.settings.get("curves_by_program", {}))
    record["batch_size"] = int(result.plan.settings.get("batch_size"))
    head = slice(0, min(m, SAMPLE))
    record["sample"] = {
        "values": result.values[head].tolist(),
        "stderr": result.stderr[head].tolist(),
        "converged": result.converged[head].tolist(),
    }
    record["status"] = "ok"
    return record


def child_scipy(m: int) -> dict:
    """A Python loop of ``scipy.optimize.curve_fit`` over the first ``m`` curves."""
    record: dict = {"engine": "scipy", "m": m, "devices": 1}
    x, Y, _ = generate_curves(m)
    t0 = time.perf_counter()
    from scipy.optimize import OptimizeWarning, curve_fit

    record["import_s"] = time.perf_counter() - t0
    record["baseline_rss"] = fb.current_rss_bytes()
    warnings.simplefilter("ignore", OptimizeWarning)  # e.g. covariance not estimable
    p0 = P0
    values = np.full((m, 3), np.nan)
    failed = np.zeros(m, dtype=bool)
    loops = []
    for _ in range(SCIPY_LOOPS):  # best of a few, as jaxpro's warm time is
        start = time.perf_counter()
        for i in range(m):
            try:
                values[i] = curve_fit(exp3_np, x, Y[i], p0=p0)[0]
            except RuntimeError:  # "Optimal parameters not found"
                failed[i] = True
        loops.append(time.perf_counter() - start)
    loop = min(loops)
    record |= {
        "loop_s": loop,
        "loops_s": loops,
        "per_curve_s": loop / m,
        "failures": int(failed.sum()),
        "peak_rss": fb.peak_rss_bytes(),
        "sample": {"values": values.tolist(), "failed": failed.tolist()},
        "status": "ok",
    }
    return record


# ----------------------------------------------------------------------------
# Parent: run the children
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One child run: ``engine`` "jaxpro" (with ``devices``) or "scipy", on ``m`` curves."""

    engine: str
    m: int
    devices: int = 1

    @property
    def label(self) -> str:
        """Short description for progress lines."""
        extra = f", {self.devices} CPU devices" if self.devices > 1 else ""
        return f"{self.engine:<6} M={self.m:>7,}{extra}"


def child_env() -> dict:
    """Environment for a child: no compilation cache on disk (an honest cold)."""
    env = {k: v for k, v in os.environ.items() if k not in fb.CACHE_ENV_VARS}
    env["JAXPRO_CACHE_DIR"] = "off"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_child_process(job: Job, max_seconds: float) -> dict:
    """Run one child; its record gains ``other_cpu``: cores used by other processes meanwhile."""
    base = {"engine": job.engine, "m": job.m, "devices": job.devices}
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child", job.engine,
        "--m", str(job.m),
        "--devices", str(job.devices),
    ]  # fmt: skip
    jiffies0, cpu0, start = fb.cpu_jiffies(), fb.children_cpu_seconds(), time.perf_counter()
    try:
        done = subprocess.run(
            command,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=max_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return base | {"status": "timeout", "reason": f"killed after {max_seconds:g} s"}
    wall = time.perf_counter() - start
    jiffies1, cpu1 = fb.cpu_jiffies(), fb.children_cpu_seconds()
    if jiffies0 is not None and jiffies1 is not None:
        busy_seconds = (jiffies1[1] - jiffies0[1]) / os.sysconf("SC_CLK_TCK")
        base["other_cpu"] = max(0.0, busy_seconds - (cpu1 - cpu0)) / wall
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return base | {"status": "error", "reason": f"exit {done.returncode}: {tail[:200]}"}
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) | base | {"child_wall_s": wall}


def launch(job: Job, max_seconds: float, quiet_wait: float) -> dict:
    """Run ``job`` once the machine is quiet; rerun (up to fit_bench's retries) if disturbed.

    The least disturbed run is kept, flagged ``noisy`` if even that one saw
    other processes use more than ``fit_bench.NOISY_CORES`` cores on average.
    """
    attempts = []
    for attempt in range(1 + fb.NOISY_RETRIES):
        busy = fb.wait_for_quiet(quiet_wait) if quiet_wait > 0 else None
        record = run_child_process(job, max_seconds)
        record |= {"cpu_busy_before": busy, "attempt": attempt + 1}
        attempts.append(record)
        if record.get("status") != "ok" or (record.get("other_cpu") or 0.0) <= fb.NOISY_CORES:
            break
    best = min(attempts, key=lambda r: r.get("other_cpu") or 0.0)
    best["noisy"] = (best.get("other_cpu") or 0.0) > fb.NOISY_CORES
    return best


def jobs_for(sizes: Sequence[int]) -> list[Job]:
    """scipy's sample first, then jaxpro per M, then two CPU devices at the largest M."""
    jobs = [Job("scipy", SAMPLE)]
    jobs += [Job("jaxpro", m) for m in sizes]
    jobs.append(Job("jaxpro", max(sizes), TWO_DEVICES))
    return jobs


def describe(record: dict) -> str:
    """One progress line for a record."""
    head = Job(record["engine"], record["m"], record["devices"]).label
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')}: {record.get('reason', '')}"
    others = (
        f"  [others: {fb.busy_text(record.get('other_cpu'))} cores, try {record.get('attempt')}"
        f"{', NOISY' if record.get('noisy') else ''}]"
    )
    if record["engine"] == "scipy":
        return (
            f"{head}: loop {fb.fmt_time(record['loop_s'])}"
            f" ({fb.fmt_time(record['per_curve_s'])}/curve), {record['failures']} failure(s),"
            f" peak {fb.fmt_mb(record['peak_rss'])}{others}"
        )
    return (
        f"{head}: cold {fb.fmt_time(record['cold_s'])}"
        f" (compile {fb.fmt_time(record['cold_timings']['compile_s'])}),"
        f" warm {fb.fmt_time(record['warm_s'])} (x{record['warm_calls']}),"
        f" peak {fb.fmt_mb(record['peak_rss'])}, converged {record['converged']:,}/{record['m']:,},"
        f" nfev median {record['nfev_median']:g} max {record['nfev_max']}{others}"
    )


# ----------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------


def find(records, engine: str, m: int | None = None, devices: int = 1) -> dict | None:
    """The successful record of one configuration (``m`` None: the scipy sample), first round."""
    for r in records:
        if (
            r.get("status") == "ok"
            and not r.get("round")
            and r["engine"] == engine
            and (m is None or r["m"] == m)
            and r["devices"] == devices
        ):
            return r
    return None


def scipy_scaled(records, m: int) -> float | None:
    """The scipy loop's time per curve times M."""
    sp = find(records, "scipy")
    return None if sp is None else sp["per_curve_s"] * m


def speedup(records, m: int, devices: int, which: str = "warm_s") -> float | None:
    """Scaled scipy loop / jaxpro warm (``which="cold_s"``: / jaxpro cold)."""
    ours = find(records, "jaxpro", m, devices)
    theirs = scipy_scaled(records, m)
    return None if ours is None or theirs is None else theirs / ours[which]


def sample_of(record: dict) -> dict[str, np.ndarray]:
    """A record's sample as arrays."""
    return {k: np.asarray(v) for k, v in record["sample"].items()}


def accuracy(records) -> dict | None:
    """jaxpro (largest M, one device) against scipy on the sample, in jaxpro's stderr units."""
    sp = find(records, "scipy")
    jps = [r for r in records if r.get("status") == "ok" and r["engine"] == "jaxpro"]
    jps = [r for r in jps if r["devices"] == 1 and r["m"] >= SAMPLE]
    if sp is None or not jps:
        return None
    jp = max(jps, key=lambda r: r["m"])
    ours, theirs = sample_of(jp), sample_of(sp)
    both = ours["converged"] & ~theirs["failed"] & np.all(np.isfinite(ours["stderr"]), axis=1)
    both &= np.all(ours["stderr"] > 0, axis=1)
    delta = np.abs(ours["values"] - theirs["values"]) / ours["stderr"]
    worst = delta[both].max(axis=1)
    return {
        "m": jp["m"],
        "compared": int(both.sum()),
        "sample": SAMPLE,
        "max_delta_stderr": float(worst.max()) if worst.size else None,
        "median_delta_stderr": float(np.median(worst)) if worst.size else None,
        "agree_fraction": float(np.mean(worst <= AGREE_STDERR)) if worst.size else None,
    }


def device_consistency(records) -> float | None:
    """Largest |Δ| (in stderr units) between one- and two-device values on the sample."""
    two = [r for r in records if r.get("status") == "ok" and r["devices"] == TWO_DEVICES]
    if not two:
        return None
    one = find(records, "jaxpro", two[0]["m"], 1)
    if one is None:
        return None
    a, b = sample_of(one), sample_of(two[0])
    ok = a["converged"] & b["converged"] & np.all(a["stderr"] > 0, axis=1)
    if not ok.any():
        return None
    return float(np.max(np.abs(a["values"][ok] - b["values"][ok]) / a["stderr"][ok]))


# ----------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------


def fmt_ratio(ratio: float | None) -> str:
    """'12.3×' or '—'."""
    return "—" if ratio is None else f"{ratio:.1f}×"


def flag(record: dict | None) -> str:
    """' †' for a measurement disturbed by other processes."""
    return " †" if record is not None and record.get("noisy") else ""


def header(sizes: Sequence[int]) -> tuple[str, ...]:
    """Column names (the two-device column names the M it was measured at)."""
    return (
        "M",
        "jaxpro cold",
        "jaxpro warm",
        f"jaxpro warm, {TWO_DEVICES} CPU devices (M = {max(sizes):,} only)",
        f"scipy loop (scaled from {SAMPLE:,} curves)",
        "speed-up (warm, 1 device)",
        f"speed-up ({TWO_DEVICES} devices)",
        "speed-up (cold, 1 device)",
        "peak RSS jaxpro",
        "converged",
        "max nfev (median)",
    )


def table_rows(records, sizes: Sequence[int]) -> list[list[str]]:
    """One row per M."""
    rows = []
    for m in sizes:
        jp = find(records, "jaxpro", m)
        two = find(records, "jaxpro", m, TWO_DEVICES)
        scaled = scipy_scaled(records, m)
        sp = find(records, "scipy")
        if jp is None:
            missing = next((r for r in records if r["engine"] == "jaxpro" and r["m"] == m), {}).get(
                "status", "—"
            )
            rows.append([f"{m:,}", missing, missing, "—", "—", "—", "—", "—", "—", "—", "—"])
            continue
        growth = jp["peak_rss"] - jp["baseline_rss"]
        rows.append(
            [
                f"{m:,}",
                fb.fmt_time(jp["cold_s"]) + flag(jp),
                fb.fmt_time(jp["warm_s"]) + flag(jp),
                "—" if two is None else fb.fmt_time(two["warm_s"]) + flag(two),
                "—" if scaled is None else fb.fmt_time(scaled) + flag(sp),
                fmt_ratio(speedup(records, m, 1)),
                "—" if two is None else fmt_ratio(speedup(records, m, TWO_DEVICES)),
                fmt_ratio(speedup(records, m, 1, "cold_s")),
                f"{jp['peak_rss'] / MB:.0f} (+{growth / MB:.0f}) MB",
                f"{jp['converged']:,}/{m:,}",
                f"{jp['nfev_max']} ({jp['nfev_median']:g})",
            ]
        )
    return rows


def accuracy_line(records) -> str:
    """Agreement with scipy on the sample, in jaxpro's standard errors."""
    acc = accuracy(records)
    sp = find(records, "scipy")
    if acc is None or acc["max_delta_stderr"] is None:
        return "Accuracy: not measured."
    line = (
        f"Accuracy vs scipy on the first {SAMPLE:,} curves (jaxpro from the M = {acc['m']:,} run;"
        f" {acc['compared']:,} curves converged in both): max |Δ| ="
        f" {acc['max_delta_stderr']:.2g} standard errors (median over curves"
        f" {acc['median_delta_stderr']:.2g}); {100 * acc['agree_fraction']:.2f} % of curves agree"
        f" within {AGREE_STDERR:g} standard errors."
    )
    if sp is not None:
        line += f" scipy failures (RuntimeError): {sp['failures']} of {SAMPLE:,}."
    consistency = device_consistency(records)
    if consistency is not None:
        line += (
            f" {TWO_DEVICES} CPU devices vs 1: max |Δ| = {consistency:.2g} standard errors"
            " on the same curves."
        )
    return line


def paired_ratios(records) -> list[float]:
    """Speed-ups at TARGET_M (one device) of each round: its scipy loop against its jaxpro run.

    The first round is the main run's pair; later rounds repeat the pair back
    to back, so that each ratio compares the two on the machine in one state
    (on a shared host, scipy's time per curve drifts by tens of percent).
    """
    ratios = []
    rounds = sorted({r.get("round") or 0 for r in records})
    for k in rounds:
        mine = [r for r in records if (r.get("round") or 0) == k and r.get("status") == "ok"]
        sp = next((r for r in mine if r["engine"] == "scipy"), None)
        jp = next(
            (
                r
                for r in mine
                if r["engine"] == "jaxpro" and r["m"] == TARGET_M and r["devices"] == 1
            ),
            None,
        )
        if sp is not None and jp is not None:
            ratios.append(sp["per_curve_s"] * TARGET_M / jp["warm_s"])
    return ratios


def target_line(records) -> str:
    """The issue's target: >= 50x the scaled scipy loop at M = 100,000 (median of the rounds)."""
    one = speedup(records, TARGET_M, 1)
    two = speedup(records, TARGET_M, TWO_DEVICES)
    head = f"Target: speed-up ≥ {TARGET_SPEEDUP:g}× at M = {TARGET_M:,}: "
    if one is None:
        return head + "not measured (M = 100,000 not run)."
    ratios = paired_ratios(records)
    median = float(np.median(ratios))
    text = head + (
        f"{fb.yes_no(median >= TARGET_SPEEDUP)} (median of {len(ratios)} paired rounds on 1 CPU"
        f" device {median:.1f}×, range {min(ratios):.1f}–{max(ratios):.1f}×: "
        + ", ".join(f"{r:.1f}×" for r in ratios)
        + ")"
    )
    if two is not None:
        text += f"; with {TWO_DEVICES} CPU devices (first round) {two:.1f}×"
    return text + "."


# Issue 20's first-call targets: the cold call against the scaled scipy loop.
COLD_TARGETS = ((20_000, 3.0), (100_000, 10.0))


def cold_target_line(records) -> str:
    """Cold speed-up targets (one device): >= 3x at M = 20,000 and >= 10x at 100,000."""
    parts = []
    for m, target in COLD_TARGETS:
        ratio = speedup(records, m, 1, "cold_s")
        parts.append(
            f"≥ {target:g}× at M = {m:,}: "
            + ("not measured" if ratio is None else f"{fb.yes_no(ratio >= target)} ({ratio:.1f}×)")
        )
    return "Cold target (first call, compilation included): " + "; ".join(parts) + "."


def timing_note(records, sizes: Sequence[int]) -> str:
    """Where the warm and cold time went at the largest M (from ``result.timings``)."""
    jp = find(records, "jaxpro", max(sizes))
    sp = find(records, "scipy")
    parts = []
    if jp is not None:
        cold, warm = jp["cold_timings"], jp["warm_timings"]
        parts.append(
            f"At M = {jp['m']:,} (1 device): cold = compile {fb.fmt_time(cold['compile_s'])}"
            f" + run {fb.fmt_time(cold['run_s'])} + host work"
            f" {fb.fmt_time(cold['total_s'] - cold['compile_s'] - cold['run_s'])};"
            f" the second call = run {fb.fmt_time(warm['run_s'])} + host work"
            f" {fb.fmt_time(warm['total_s'] - warm['run_s'])}"
            f" ({fb.fmt_time(jp['warm_s'] / jp['m'])} per curve warm; method {jp['method']},"
            f" {jp['batch_size']:,} curves in flight). Curves by program:"
            + ", ".join(f" {k} {v:,}" for k, v in jp.get("curves_by_program", {}).items())
            + "; compiled: "
            + ", ".join(
                f"{entry['program']} {fb.fmt_time(entry['compile_s'])}"
                for entry in cold.get("programs", [])
            )
            + "."
        )
    if sp is not None:
        parts.append(
            f"scipy: {fb.fmt_time(sp['per_curve_s'])} per curve"
            f" ({fb.fmt_time(sp['loop_s'])} for the {SAMPLE:,}-curve loop, the best of"
            f" {', '.join(fb.fmt_time(t) for t in sp.get('loops_s', [sp['loop_s']]))})."
        )
    return " ".join(parts)


def machine_line(machine: dict, records) -> str:
    """CPU, versions, date, and how busy the machine was."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if k != "nlsq")
    return (
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM,"
        f" {machine['os']}; Python {machine['python']}; {versions}. Run {machine['date']}"
        f" (1-min load average at start {machine['loadavg_start']})."
        f"{fb.interference_note(records)}"
    )


def report_markdown(records, sizes: Sequence[int], machine: dict) -> str:
    """The whole fit_many_bench section (without the markers)."""
    out = [
        "## Many small fits (`benchmarks/fit_many_bench.py`)",
        "",
        machine_line(machine, records),
        "",
        f"M curves of {N_POINTS} points of `a*exp(-b*x) + c` on a shared `x = linspace(0, 5,"
        f" {N_POINTS})`, per-curve a ~ U(1, 3), b ~ U(0.5, 2), c ~ U(-0.5, 0.5), noise sd"
        f" {NOISE_SD}, fixed seed; p0 = {P0} for every curve. jaxpro: one"
        " `jaxpro.fit_many(f, x, Y, p0=p0)` call; *cold* = the first call in a fresh process"
        " (compilation included, imports excluded, `JAXPRO_CACHE_DIR=off`), *warm* = the second"
        f" call (best of up to {WARM_MAX_CALLS} while they take under"
        f" {WARM_TARGET_SECONDS:g} s in all). On JAX's default single CPU device jaxpro shares"
        " its calls between one host thread per core (at least 256 curves each), so both columns use"
        f" every core; the {TWO_DEVICES}-device column runs in a process that sets"
        f" `jax_num_cpu_devices = {TWO_DEVICES}` before using JAX. scipy: a Python loop"
        f" of `scipy.optimize.curve_fit(f, x, Y[i], p0=p0)` (method lm) over the first"
        f" {SAMPLE:,} curves (best of {SCIPY_LOOPS} loops), its time per curve scaled to M. Each configuration runs in its own"
        " process; peak RSS is its `ru_maxrss`, in parentheses the growth above the RSS after"
        " data generation and imports (the data alone are 1.6 kB per curve). MB = 10⁶ bytes.",
        "",
        fb.markdown_table(header(sizes), table_rows(records, sizes)),
        "",
        timing_note(records, sizes),
        "",
        accuracy_line(records),
        "",
    ]
    if any(r.get("noisy") for r in records):
        out += [
            f"† other processes used more than {fb.NOISY_CORES} cores on average during this"
            " measurement, even in the quietest of its runs; treat it as an upper bound.",
            "",
        ]
    out += [target_line(records), "", cold_target_line(records), ""]
    failed = [describe(r) for r in records if r.get("status") != "ok"]
    if failed:
        out += ["Not measured:", "", *(f"- {line}" for line in failed), ""]
    return "\n".join(out)


def write_section(section: str, path: Path = fb.BENCHMARKS_MD) -> None:
    """Replace this benchmark's section of ``path`` (BENCHMARKS.md by default)."""
    fb.write_section(section, path, markers=(MARK_BEGIN, MARK_END))


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"M up to {QUICK_MAX_M:,} only")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--json", default=None, help="also write raw records to this file")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help=f"budget per child process; it is killed after it (default {DEFAULT_MAX_SECONDS:g})",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=fb.DEFAULT_QUIET_WAIT_SECONDS,
        help="before each child, wait up to this long for other processes to go idle (0: never)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"scipy / jaxpro pairs at M = {TARGET_M:,} for the target (default {ROUNDS})",
    )
    parser.add_argument("--child", choices=("jaxpro", "scipy"), help=argparse.SUPPRESS)
    parser.add_argument("--m", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [m for m in SIZES if not args.quick or m <= QUICK_MAX_M]
    return args


def child_main(args: argparse.Namespace) -> None:
    """Entry point of a child: one configuration, one JSON line on stdout."""
    base = {"engine": args.child, "m": args.m, "devices": args.devices}
    try:
        record = (
            child_jaxpro(args.m, args.devices) if args.child == "jaxpro" else child_scipy(args.m)
        )
    except Exception as exc:  # reported in the table, not fatal to the run
        record = base | {"status": "error", "reason": fb.one_line(exc)}
    print(RESULT_PREFIX + json.dumps(record), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration, print the table, optionally write BENCHMARKS.md and JSON."""
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    machine = fb.machine_info()
    print(
        f"fit_many_bench on {machine['cpu']} ({machine['cores']} cores),"
        f" load {machine['loadavg_start']}",
        flush=True,
    )
    records = []
    for job in jobs_for(args.sizes):
        record = launch(job, args.max_seconds, args.quiet_wait)
        records.append(record)
        print(describe(record), flush=True)
    if TARGET_M in args.sizes:
        for k in range(1, args.rounds):
            for job in (Job("scipy", SAMPLE), Job("jaxpro", TARGET_M)):
                record = launch(job, args.max_seconds, args.quiet_wait) | {"round": k}
                records.append(record)
                print(f"round {k + 1}: " + describe(record), flush=True)
    print()
    print(fb.text_table(header(args.sizes), table_rows(records, args.sizes)))
    print()
    print(timing_note(records, args.sizes))
    print(accuracy_line(records))
    print(target_line(records))
    print(cold_target_line(records))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "records": records}, indent=1) + "\n"
        )
    if args.write:
        write_section(report_markdown(records, args.sizes, machine))
        print(f"\nwrote {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
