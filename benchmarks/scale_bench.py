"""Scale benchmark: one large fit, N = 1e6 … 1e8 in memory and 1e8, 1e9 streamed from .npy files.

Run ``python benchmarks/scale_bench.py`` for the whole table, ``--write`` to
update the ``scale_bench`` section of ``BENCHMARKS.md``. See
``benchmarks/README.md``.

The data (``a*exp(-b*x) + c`` on ``x`` in [0, 5], truth (2.5, 1.3, 0.5), noise
sd 0.05, fixed seed) are generated block by block into ``.npy`` files under a
work directory (default ``/tmp/jaxpro_scale``) and reused by every
configuration and every later run; the N = 1e9 files (16 GB) are deleted at the
end unless ``--keep``. As in ``fit_bench.py`` (whose helpers this script
imports), every configuration runs in its own child process (this same file
with ``--child``): its peak RSS is its own, and the two-CPU-device
configuration can call ``jaxpro.use_cpu_cores(2)`` before JAX starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fit_bench as fb  # a script in the same folder (see sys.path above)

# ----------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------

MEMORY_SIZES = (1_000_000, 10_000_000, 30_000_000, 100_000_000)  # in memory: jaxpro and scipy
STREAM_SIZES = (100_000_000, 1_000_000_000)  # streamed from the .npy files
SCIPY_EXTRA_SIZES = (1_000_000_000,)  # listed so that the skip (and why) is reported
TWO_DEVICES = 2

TRUTH = (2.5, 1.3, 0.5)
P0 = (1.0, 1.0, 1.0)
NOISE_SD = 0.05
X_RANGE = (0.0, 5.0)
SEED = 20261125
BLOCK = 1 << 22  # points per generated block (also the seeding granularity)
BYTES_PER_POINT = 16  # float64 x and y

DEFAULT_WORKDIR = "/tmp/jaxpro_scale"
# Data sets this large (16 GB at 1e9) are deleted at the end unless --keep, and
# their streamed fit is called once (no warm call).
DELETE_MIN_N = 1_000_000_000
DEFAULT_MAX_SECONDS = 1800.0  # per child; the streamed N = 1e9 fit is the long one

# Memory guard: a child is killed when its RSS passes --max-rss (default below)
# or when the machine has less than MIN_AVAILABLE_BYTES available.
DEFAULT_MAX_RSS_BYTES = 20e9
MIN_AVAILABLE_BYTES = 1.5e9
MEMORY_POLL_SECONDS = 0.2

# scipy runs only where its predicted time and memory fit these.
SCIPY_MAX_SECONDS = 600.0
SCIPY_MAX_BYTES = 20e9

# A child during which other processes used more than fb.NOISY_CORES cores on
# average is run again (at most this many times) and the quietest run is kept.
NOISY_RETRIES = 2
# Before each child, wait up to this long for the machine to go quiet: the large
# configurations are long and memory-hungry, so waiting is worth it.
DEFAULT_QUIET_WAIT_SECONDS = 900.0

# Agreement (as in fit_bench): relative, vs scipy lm on the same data, else vs truth.
REL_TOL_VS_SCIPY = fb.REL_TOL_VS_SCIPY
REL_TOL_VS_TRUTH = fb.REL_TOL_VS_TRUTH

# Targets from the issue.
TARGET_RSS_N = 100_000_000
TARGET_RSS_BYTES = 2.5e9
CONSTANT_N = 1_000_000_000
# "constant": the peak at 1e9 no more than 10 % above the peak at 1e8 (memory
# that does not grow with N; a lower peak, from run-to-run variation, passes)
CONSTANT_SLACK = 0.10

RESULT_PREFIX = "SCALE_BENCH_RESULT "
MARK_BEGIN = "<!-- scale_bench:begin -->"
MARK_END = "<!-- scale_bench:end -->"
BENCHMARKS_MD = fb.BENCHMARKS_MD
MB = fb.MB

PATHS = {  # engine -> label in the table, in table order
    "memory-1": "in memory, 1 device",
    "memory-2": f"in memory, {TWO_DEVICES} devices",
    "stream": "streamed .npy",
    "scipy": "scipy lm",
}


# ----------------------------------------------------------------------------
# Model (module level, so that compiled programs are reused across calls)
# ----------------------------------------------------------------------------


def exp3_np(x, a, b, c):
    """``a*exp(-b*x) + c`` with NumPy (for scipy and data generation)."""
    return a * np.exp(-b * x) + c


def exp3_jax(x, a, b, c):
    """``a*exp(-b*x) + c`` with jax.numpy (for jaxpro)."""
    import jax.numpy as jnp  # imported here so that the scipy child never loads JAX

    return a * jnp.exp(-b * x) + c


# ----------------------------------------------------------------------------
# Data files
# ----------------------------------------------------------------------------


def data_paths(workdir: Path, n: int) -> tuple[Path, Path, Path]:
    """``(x.npy, y.npy, meta.json)`` of the data set with ``n`` points."""
    stem = f"exp3_{fb.fmt_n(n)}"
    return workdir / f"{stem}_x.npy", workdir / f"{stem}_y.npy", workdir / f"{stem}.json"


def data_meta(n: int) -> dict:
    """What a data file pair was generated from (files are reused only if it matches)."""
    return {
        "n": n,
        "model": "a*exp(-b*x) + c",
        "truth": list(TRUTH),
        "noise_sd": NOISE_SD,
        "x_range": list(X_RANGE),
        "seed": SEED,
        "block": BLOCK,
    }


def data_ready(workdir: Path, n: int) -> bool:
    """The files exist, have the right size, and were made with the current settings."""
    x_path, y_path, meta_path = data_paths(workdir, n)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    if meta != data_meta(n):
        return False
    for path in (x_path, y_path):
        try:
            if np.load(path, mmap_mode="r").shape != (n,):
                return False
        except (OSError, ValueError):
            return False
    return True


def ensure_data(workdir: Path, n: int, log) -> float:
    """Generate the ``n``-point files unless already there; return the seconds spent.

    ``x = linspace(0, 5, n)`` and ``y = truth model + NOISE_SD * N(0, 1)`` are
    written block by block (``BLOCK`` points, one seeded generator drawn in
    order), so the generating process never holds more than a block, and the
    files are fsynced so that no write-back runs during the measurements.
    """
    if data_ready(workdir, n):
        return 0.0
    workdir.mkdir(parents=True, exist_ok=True)
    x_path, y_path, meta_path = data_paths(workdir, n)
    meta_path.unlink(missing_ok=True)
    log(f"generating N={fb.fmt_n(n)} ({BYTES_PER_POINT * n / 1e9:.3g} GB) under {workdir} ...")
    start = time.perf_counter()
    header = {"descr": "<f8", "fortran_order": False, "shape": (n,)}
    step = (X_RANGE[1] - X_RANGE[0]) / (n - 1)
    rng = np.random.default_rng(SEED)
    tmp_x, tmp_y = x_path.with_suffix(".npy.part"), y_path.with_suffix(".npy.part")
    with open(tmp_x, "wb") as fx, open(tmp_y, "wb") as fy:
        np.lib.format.write_array_header_1_0(fx, header)
        np.lib.format.write_array_header_1_0(fy, header)
        for lo in range(0, n, BLOCK):
            hi = min(lo + BLOCK, n)
            x = X_RANGE[0] + np.arange(lo, hi, dtype=np.float64) * step
            if hi == n:
                x[-1] = X_RANGE[1]
            y = exp3_np(x, *TRUTH)
            y += NOISE_SD * rng.standard_normal(hi - lo)
            fx.write(x.tobytes())
            fy.write(y.tobytes())
        for handle in (fx, fy):
            handle.flush()
            os.fsync(handle.fileno())
    tmp_x.replace(x_path)
    tmp_y.replace(y_path)
    meta_path.write_text(json.dumps(data_meta(n)) + "\n")
    seconds = time.perf_counter() - start
    log(f"  done in {seconds:.0f} s")
    return seconds


def delete_data(workdir: Path, n: int) -> None:
    """Remove the ``n``-point files."""
    for path in data_paths(workdir, n):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------
# Children: one configuration in one process
# ----------------------------------------------------------------------------


def child_jaxpro(engine: str, n: int, workdir: Path) -> dict:
    """Fit with jaxpro: in memory (1 or 2 CPU devices, data np.load-ed whole) or streamed."""
    devices = TWO_DEVICES if engine == "memory-2" else 1
    t0 = time.perf_counter()
    import jaxpro

    if devices > 1:
        jaxpro.use_cpu_cores(devices)  # before any JAX computation in this process
    import jax

    import jaxpro.fit  # imports the engine now, so the cold call does not

    record = {"import_s": time.perf_counter() - t0, "jax_devices": len(jax.devices())}
    x_path, y_path, _ = data_paths(workdir, n)
    t0 = time.perf_counter()
    if engine == "stream":

        def data():
            return {"x": jaxpro.io.stream(x=str(x_path), y=str(y_path))}

        kwargs = {"progress": False}
    else:
        x, y = np.load(x_path), np.load(y_path)

        def data():
            return {"x": x, "y": y}

        kwargs = {}
    record["load_s"] = time.perf_counter() - t0
    record["rss_before"] = fb.current_rss_bytes()
    record["peak_before"] = fb.peak_rss_bytes()

    def call():
        start = time.perf_counter()
        result = jaxpro.fit(exp3_jax, **data(), p0=P0, **kwargs)
        return time.perf_counter() - start, result

    cold, result = call()
    record |= {"cold_s": cold, "peak_after_cold": fb.peak_rss_bytes()}
    record |= describe_result(result, "cold")
    one_call = engine == "stream" and n >= DELETE_MIN_N
    if not one_call:
        warm, result = call()
        record |= {"warm_s": warm}
        record |= describe_result(result, "warm")
    record["peak_rss"] = fb.peak_rss_bytes()
    record["popt"] = [float(v) for v in result.values]
    return record


def describe_result(result, prefix: str) -> dict:
    """nfev, passes, convergence, timings and plan of a FitResult."""
    settings = dict(result.plan.settings)
    return {
        f"{prefix}_nfev": int(result.nfev),
        f"{prefix}_passes": settings.get("passes"),
        f"{prefix}_converged": bool(result.converged),
        f"{prefix}_compile_s": float(result.timings.compile),
        f"{prefix}_run_s": float(result.timings.run),
        f"{prefix}_plan": {
            k: settings[k] for k in ("path", "layout", "chunk_rows", "warm_start") if k in settings
        },
    }


def child_scipy(n: int, workdir: Path) -> dict:
    """``scipy.optimize.curve_fit(..., method="lm")`` on the whole data in memory."""
    t0 = time.perf_counter()
    from scipy.optimize import curve_fit

    record = {"import_s": time.perf_counter() - t0}
    x_path, y_path, _ = data_paths(workdir, n)
    t0 = time.perf_counter()
    x, y = np.load(x_path), np.load(y_path)
    record["load_s"] = time.perf_counter() - t0
    record["rss_before"] = fb.current_rss_bytes()
    record["peak_before"] = fb.peak_rss_bytes()

    def call():
        start = time.perf_counter()
        popt, _, info, _, ier = curve_fit(exp3_np, x, y, p0=P0, method="lm", full_output=True)
        return time.perf_counter() - start, popt, int(info["nfev"]), ier

    cold, popt, nfev, ier = call()
    record |= {"cold_s": cold, "peak_after_cold": fb.peak_rss_bytes(), "cold_nfev": nfev}
    warm, popt, nfev, ier = call()
    record |= {"warm_s": warm, "warm_nfev": nfev, "ier": ier}
    record["peak_rss"] = fb.peak_rss_bytes()
    record["popt"] = [float(v) for v in popt]
    return record


def check(popt, reference) -> dict:
    """Largest relative deviation from scipy's answer (if given) or the truth (loose)."""
    if reference is not None:
        dev = fb.relative_deviation(popt, reference)
        return {"dev_ref": "scipy-lm", "dev": dev, "ok": dev <= REL_TOL_VS_SCIPY}
    dev = fb.relative_deviation(popt, TRUTH)
    return {"dev_ref": "truth", "dev": dev, "ok": dev <= REL_TOL_VS_TRUTH}


def child_main(args: argparse.Namespace) -> None:
    """Entry point of a child: one configuration, one JSON line on stdout."""
    record = {"engine": args.child, "n": args.n, "loadavg": os.getloadavg()[0]}
    workdir = Path(args.workdir)
    try:
        if args.child == "scipy":
            record |= child_scipy(args.n, workdir)
        else:
            record |= child_jaxpro(args.child, args.n, workdir)
        if args.child != "scipy":
            reference = [float(v) for v in args.reference.split(",")] if args.reference else None
            record |= check(record["popt"], reference)
        record["status"] = "ok"
    except Exception as exc:  # reported in the table, not fatal to the run
        record |= {"status": "error", "reason": fb.one_line(exc)}
    print(RESULT_PREFIX + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One configuration: ``engine`` is a key of PATHS."""

    engine: str
    n: int

    @property
    def label(self) -> str:
        return f"N={fb.fmt_n(self.n):>4} {PATHS[self.engine]}"


def jobs_for(memory_sizes: Sequence[int], stream_sizes: Sequence[int]) -> list[Job]:
    """Per N, ascending: scipy first (the reference), then jaxpro in memory, then streamed."""
    jobs = []
    scipy_sizes = [*memory_sizes, *(n for n in SCIPY_EXTRA_SIZES if n in stream_sizes)]
    for n in sorted({*memory_sizes, *stream_sizes}):
        if n in scipy_sizes:
            jobs.append(Job("scipy", n))
        if n in memory_sizes:
            jobs += [Job("memory-1", n), Job("memory-2", n)]
        if n in stream_sizes:
            jobs.append(Job("stream", n))
    return jobs


def child_env() -> dict:
    """No persistent compilation cache: the cold call compiles."""
    env = {k: v for k, v in os.environ.items() if k not in fb.CACHE_ENV_VARS}
    env["JAXPRO_CACHE_DIR"] = "off"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def proc_kib(path: str, key: str) -> int | None:
    """A ``key: <n> kB`` field of a /proc file, in KiB (None if unreadable)."""
    return proc_fields(path).get(key)


def proc_fields(path: str) -> dict[str, int]:
    """The ``key: <n> kB`` fields of a /proc file, in KiB ({} if unreadable)."""
    fields = {}
    try:
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
    except (OSError, ValueError):
        pass
    return fields


def run_child_process(
    job: Job, reference, workdir: Path, max_seconds: float, max_rss: float
) -> dict:
    """Run one child under a memory guard; its record gains ``other_cpu`` and ``watched_*``.

    Every ``MEMORY_POLL_SECONDS`` the parent reads the child's RSS; it kills the
    child when the RSS passes ``max_rss`` bytes or the machine's available
    memory falls under ``MIN_AVAILABLE_BYTES`` (a runaway fit must not push the
    machine into the OOM killer). ``other_cpu`` is the number of cores other
    processes used meanwhile (from /proc/stat minus the child's own CPU time).
    ``watched_rss`` is the largest RSS seen by these polls, ``watched_anon`` and
    ``watched_file`` its anonymous and file-backed (memory-mapped files) parts.
    """
    base = {"engine": job.engine, "n": job.n}
    command = [
        sys.executable, os.path.abspath(__file__), "--child", job.engine,
        "--n", str(job.n), "--workdir", str(workdir),
    ]  # fmt: skip
    if reference is not None:
        command += ["--reference", ",".join(repr(float(p)) for p in reference)]
    jiffies0, cpu0, start = fb.cpu_jiffies(), fb.children_cpu_seconds(), time.perf_counter()
    proc = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watched, watched_parts, killed = 0, (0, 0), None
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=MEMORY_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass  # retrying communicate() loses no output
        fields = proc_fields(f"/proc/{proc.pid}/status")
        rss = fields.get("VmRSS", 0) * 1024
        if rss > watched:
            watched = rss
            watched_parts = (fields.get("RssAnon", 0) * 1024, fields.get("RssFile", 0) * 1024)
        available = proc_kib("/proc/meminfo", "MemAvailable")
        if killed is None:
            if time.perf_counter() - start > max_seconds:
                killed = f"killed after {max_seconds:g} s"
            elif rss > max_rss:
                killed = f"killed at RSS {fmt_bytes(rss)} > limit {fmt_bytes(max_rss)}"
            elif available is not None and available * 1024 < MIN_AVAILABLE_BYTES:
                killed = (
                    f"killed at RSS {fmt_bytes(rss)}: the machine had under"
                    f" {fmt_bytes(MIN_AVAILABLE_BYTES)} available"
                )
            if killed is not None:
                proc.kill()
    wall = time.perf_counter() - start
    base |= {"watched_rss": watched, "watched_anon": watched_parts[0]}
    base["watched_file"] = watched_parts[1]
    if killed is not None:
        status = "timeout" if killed.startswith("killed after") else "killed"
        return base | {"status": status, "reason": killed}
    jiffies1, cpu1 = fb.cpu_jiffies(), fb.children_cpu_seconds()
    if jiffies0 is not None and jiffies1 is not None:
        busy_seconds = (jiffies1[1] - jiffies0[1]) / os.sysconf("SC_CLK_TCK")
        base["other_cpu"] = max(0.0, busy_seconds - (cpu1 - cpu0)) / wall
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        reason = f"exit {proc.returncode}: {tail[:200]}"
        if proc.returncode == -9:
            reason += " (killed from outside: out of memory?)"
        return base | {"status": "error", "reason": reason}
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) | base | {"child_wall_s": wall}


def launch(
    job: Job, reference, workdir: Path, max_seconds: float, max_rss: float, quiet_wait: float
) -> dict:
    """Run ``job`` once the machine is quiet; again (up to NOISY_RETRIES times) if disturbed."""
    attempts = []
    for attempt in range(1 + NOISY_RETRIES):
        busy = fb.wait_for_quiet(quiet_wait) if quiet_wait > 0 else None
        record = run_child_process(job, reference, workdir, max_seconds, max_rss)
        record |= {"cpu_busy_before": busy, "attempt": attempt + 1}
        attempts.append(record)
        other = record.get("other_cpu") or 0.0
        if record.get("status") != "ok" or other <= fb.NOISY_CORES:
            break
    best = min(attempts, key=lambda r: r.get("other_cpu") or 0.0)
    best["noisy"] = (best.get("other_cpu") or 0.0) > fb.NOISY_CORES
    return best


def scipy_prediction(previous: dict | None, n: int) -> tuple[float, float] | None:
    """scipy's (seconds, peak bytes) at ``n``, scaled linearly from a smaller N."""
    if previous is None or previous.get("status") != "ok":
        return None
    ratio = n / previous["n"]
    seconds = (previous["cold_s"] + previous["warm_s"] + previous["load_s"]) * ratio
    return seconds, previous["peak_rss"] * ratio


def save_json(path: str, machine: dict, records: list[dict], generated=None) -> None:
    """The raw records (and the machine, and data-generation times) as JSON."""
    payload = {"machine": machine, "records": records, "generated": generated or {}}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def run_all(args: argparse.Namespace, machine: dict, log) -> tuple[list[dict], dict[int, float]]:
    """Every configuration, one child at a time; returns the records and data-generation times."""
    workdir = Path(args.workdir)
    records: list[dict] = []
    generated: dict[int, float] = {}
    last_scipy: dict | None = None
    references: dict[int, list[float]] = {}
    for job in jobs_for(args.sizes, args.stream_sizes):
        if job.engine == "scipy":
            guess = scipy_prediction(last_scipy, job.n)
            if guess is not None and (guess[0] > SCIPY_MAX_SECONDS or guess[1] > SCIPY_MAX_BYTES):
                record = {
                    "engine": "scipy",
                    "n": job.n,
                    "status": "skipped",
                    "reason": f"predicted ~{guess[0]:.0f} s and ~{guess[1] / 1e9:.0f} GB"
                    f" (limits {SCIPY_MAX_SECONDS:g} s, {SCIPY_MAX_BYTES / 1e9:g} GB)",
                }
                records.append(record)
                log(describe(record))
                continue
        if job.n not in generated:
            generated[job.n] = ensure_data(workdir, job.n, log)
        record = launch(
            job, references.get(job.n), workdir, args.max_seconds, args.max_rss, args.quiet_wait
        )
        records.append(record)
        log(describe(record))
        if args.json:  # after every child, so that an interrupted run keeps what it measured
            save_json(args.json, machine, records)
        if job.engine == "scipy" and record.get("status") == "ok":
            last_scipy = record
            references[job.n] = record["popt"]
    return records, generated


def rerun(args: argparse.Namespace, machine: dict, records: list[dict], log) -> list[dict]:
    """Run configurations of a saved run again (``--rerun``) and update their records.

    ``--rerun noisy`` reruns the disturbed (†) rows and keeps the quieter of the
    two measurements; ``--rerun stream,memory-1`` reruns every measured row of
    those paths and keeps the new one unless it was disturbed and the old one not.
    """
    wanted = {w.strip() for w in args.rerun.split(",") if w.strip()}
    unknown = wanted - {"noisy", *PATHS}
    if unknown:
        raise SystemExit(
            f"--rerun: unknown {', '.join(sorted(unknown))} (noisy or {', '.join(PATHS)})"
        )
    workdir = Path(args.workdir)
    references = {
        r["n"]: r["popt"] for r in records if r["engine"] == "scipy" and r.get("status") == "ok"
    }
    made = []
    try:
        for i, old in enumerate(records):
            chosen = old["engine"] in wanted or ("noisy" in wanted and old.get("noisy"))
            if not chosen or old.get("status") != "ok":
                continue
            made += [old["n"]] if ensure_data(workdir, old["n"], log) > 0 else []
            job = Job(old["engine"], old["n"])
            reference = None if old["engine"] == "scipy" else references.get(old["n"])
            new = launch(job, reference, workdir, args.max_seconds, args.max_rss, args.quiet_wait)
            log("rerun: " + describe(new))
            if new.get("status") != "ok":
                continue
            if old["engine"] in wanted:
                better = not new.get("noisy") or old.get("noisy")
            else:
                better = (new.get("other_cpu") or 0.0) < (old.get("other_cpu") or 0.0)
            if better:
                records[i] = new | {"rerun": machine["date"]}
    finally:
        if not args.keep:
            for n in made:
                if n >= DELETE_MIN_N:
                    delete_data(workdir, n)
    return records


def describe(record: dict) -> str:
    """One progress line for a record."""
    head = Job(record["engine"], record["n"]).label
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')}: {record.get('reason', '')}"
    dev = ""
    if "dev" in record:
        dev = f"  dev {record['dev']:.1e} vs {record['dev_ref']}{'' if record['ok'] else ' WRONG'}"
    return (
        f"{head}: cold {fb.fmt_time(record['cold_s'])}, warm {fb.fmt_time(record.get('warm_s'))},"
        f" peak {fmt_bytes(record['peak_rss'])}, before fit {fmt_bytes(record['rss_before'])},"
        f" {passes_cell(record)}{dev}"
        f"  [others: {fb.busy_text(record.get('other_cpu'))} cores, try {record.get('attempt')}"
        f"{', NOISY' if record.get('noisy') else ''}]"
    )


# ----------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------


def fmt_bytes(nbytes: float | None) -> str:
    """MB below 1 GB, GB (3 significant figures) above; 10**6 and 10**9 bytes."""
    if nbytes is None:
        return "—"
    if nbytes < 1e9:
        return f"{nbytes / MB:.0f} MB"
    return f"{nbytes / 1e9:.2f} GB"


def find(records, engine: str, n: int) -> dict | None:
    """The record of one configuration, if it was run (or skipped)."""
    for record in records:
        if record["engine"] == engine and record["n"] == n:
            return record
    return None


def passes_cell(record: dict) -> str:
    """Streamed: 'P passes (nfev F)'; otherwise 'nfev F' (of the cold call)."""
    nfev = record.get("cold_nfev")
    passes = record.get("cold_passes")
    if passes is not None:
        return f"{passes} passes (nfev {nfev})"
    return f"nfev {nfev}"


def dev_cell(record: dict) -> str:
    """Relative deviation from scipy's answer (or from the truth), flagged outside tolerance."""
    if record["engine"] == "scipy":
        return "(reference)"
    if "dev" not in record:
        return "—"
    text = f"{record['dev']:.1e}" + ("" if record["dev_ref"] == "scipy-lm" else " (vs truth)")
    return text if record["ok"] else f"{text} ✗"


HEADER = (
    "N",
    "path",
    "cold",
    "warm",
    "peak RSS",
    "RSS before fit",
    "data bytes",
    "passes",
    "Δ vs scipy",
)


def table_rows(records) -> list[list[str]]:
    """One row per configuration, by N then path."""
    rows = []
    for n in sorted({r["n"] for r in records}):
        for engine, label in PATHS.items():
            record = find(records, engine, n)
            if record is None:
                continue
            head = [fb.fmt_n(n), label]
            if record.get("status") != "ok":
                status = str(record.get("status"))
                watched = record.get("watched_rss")
                peak = f"> {fmt_bytes(watched)} (killed)" if status == "killed" else "—"
                rows.append(
                    [*head, status, "—", peak, "—", fmt_bytes(BYTES_PER_POINT * n), "—", "—"]
                )
                continue
            mark = " †" if record.get("noisy") else ""
            rows.append(
                [
                    *head,
                    fb.fmt_time(record["cold_s"]) + mark,
                    fb.fmt_time(record.get("warm_s")),
                    fmt_bytes(record["peak_rss"]),
                    fmt_bytes(record["rss_before"]),
                    fmt_bytes(BYTES_PER_POINT * n),
                    passes_cell(record),
                    dev_cell(record),
                ]
            )
    return rows


# ----------------------------------------------------------------------------
# Targets and notes
# ----------------------------------------------------------------------------


def ok_record(records, engine: str, n: int) -> dict | None:
    record = find(records, engine, n)
    return record if record is not None and record.get("status") == "ok" else None


def target_lines(records) -> list[str]:
    """The issue's two memory targets, evaluated from the numbers."""
    lines = []
    parts = []
    for engine in ("memory-1", "memory-2", "stream"):
        record = ok_record(records, engine, TARGET_RSS_N)
        if record is None:
            continue
        verdict = fb.yes_no(record["peak_rss"] <= TARGET_RSS_BYTES)
        parts.append(f"{PATHS[engine]}: {verdict} ({fmt_bytes(record['peak_rss'])})")
    if parts:
        lines.append(
            f"- N = 1e8: peak RSS ≤ {TARGET_RSS_BYTES / 1e9:g} GB (in memory and streamed) — "
            + "; ".join(parts)
        )
    big = ok_record(records, "stream", CONSTANT_N)
    small = ok_record(records, "stream", TARGET_RSS_N)
    if big is not None:
        text = f"- N = 1e9 streamed: peak RSS {fmt_bytes(big['peak_rss'])}"
        if small is not None:
            change = big["peak_rss"] - small["peak_rss"]
            constant = change <= CONSTANT_SLACK * small["peak_rss"]
            text += (
                f" vs {fmt_bytes(small['peak_rss'])} at N = 1e8 streamed"
                f" ({'+' if change >= 0 else '−'}{abs(change) / MB:.0f} MB for 10× the data)"
                f" — constant: {fb.yes_no(constant)} (at most {CONSTANT_SLACK:.0%} above)"
            )
        lines.append(text)
    elif find(records, "stream", CONSTANT_N) is not None:
        lines.append(f"- N = 1e9 streamed: {find(records, 'stream', CONSTANT_N)['status']}")
    return lines


def agreement_notes(records) -> list[str]:
    """Streamed vs in memory and 2 devices vs 1, at every N where both ran."""
    parts = []
    for n in sorted({r["n"] for r in records}):
        one = ok_record(records, "memory-1", n)
        for engine in ("memory-2", "stream"):
            other = ok_record(records, engine, n)
            if one is not None and other is not None:
                dev = fb.relative_deviation(other["popt"], one["popt"])
                parts.append(f"{PATHS[engine]} vs 1 device at N = {fb.fmt_n(n)}: {dev:.1e}")
    if not parts:
        return []
    return ["Largest relative parameter difference between jaxpro paths: " + "; ".join(parts) + "."]


def layout_notes(records) -> list[str]:
    """How the in-memory fits laid out their data (jaxpro's plan), per N."""
    parts = []
    for record in records:
        plan = record.get("cold_plan") or {}
        if record.get("status") == "ok" and record["engine"].startswith("memory") and plan:
            parts.append(
                f"{PATHS[record['engine']]} N = {fb.fmt_n(record['n'])}:"
                f" {plan.get('path')}, {plan.get('layout', '?')}"
            )
    if not parts:
        return []
    return ["In-memory layouts (`result.plan`): " + "; ".join(parts) + "."]


def rss_parts_notes(records) -> list[str]:
    """Anonymous vs file-backed memory at the largest RSS the parent saw (N >= 1e8, jaxpro)."""
    parts = []
    for record in records:
        if (
            record["engine"] == "scipy"
            or record.get("status") != "ok"
            or record["n"] < TARGET_RSS_N
            or "watched_anon" not in record
        ):
            continue
        parts.append(
            f"{PATHS[record['engine']]} N = {fb.fmt_n(record['n'])}:"
            f" {fmt_bytes(record['watched_rss'])} = {fmt_bytes(record['watched_anon'])} anonymous"
            f" + {fmt_bytes(record['watched_file'])} file-backed"
        )
    if not parts:
        return []
    return [
        f"Largest RSS seen by the parent's polls (every {MEMORY_POLL_SECONDS:g} s; `ru_maxrss`"
        " can be higher), split into anonymous memory and file-backed pages (the memory-mapped"
        " `.npy` files; they count in RSS and `ru_maxrss` although the kernel can drop them): "
        + "; ".join(parts)
        + "."
    ]


def split_notes(records) -> list[str]:
    """Where the cold time went (jaxpro's own timings) and the warm-start sample."""
    parts = []
    for record in records:
        if record["engine"] == "scipy" or record.get("status") != "ok":
            continue
        compile_s = record.get("cold_compile_s") or 0.0
        if compile_s > 0:
            parts.append(
                f"{PATHS[record['engine']]} N = {fb.fmt_n(record['n'])}:"
                f" compile {fb.fmt_time(compile_s)}"
            )
    if not parts:
        return []
    return [
        "Compilation inside *cold* (from `result.timings`; the streamed path compiles its"
        " per-chunk kernels on the fly and reports none): " + "; ".join(parts) + "."
    ]


def scipy_growth_note(records) -> list[str]:
    parts = [
        f"N = {fb.fmt_n(r['n'])}: {fmt_bytes(r['peak_rss'] - r['rss_before'])}"
        for r in records
        if r["engine"] == "scipy" and r.get("status") == "ok"
    ]
    if not parts:
        return []
    return [
        "scipy's growth above the loaded data (peak RSS − RSS before fit): "
        + "; ".join(parts)
        + "."
    ]


def report_markdown(records, machine: dict, generated: dict[int, float], workdir: str) -> str:
    """The whole scale_bench section (without the markers)."""
    versions = ", ".join(
        f"{k} {v}"
        for k, v in machine["versions"].items()
        if k in ("jaxpro", "jax", "numpy", "scipy")
    )
    others = [r["other_cpu"] for r in records if r.get("other_cpu") is not None]
    reruns = sorted({r["rerun"] for r in records if r.get("rerun")})
    interference = (
        f" Other processes used at most {max(others):.2f} cores on average during any kept"
        " measurement."
        if others
        else ""
    )
    gen = [f"{fb.fmt_n(n)} {s:.0f} s" for n, s in sorted(generated.items()) if s > 0]
    gen_text = (
        f" Files generated in this run: {', '.join(gen)}; the others were reused." if gen else ""
    )
    out = [
        "## Scale: one fit, 1e6 to 1e9 points (`benchmarks/scale_bench.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM,"
        f" {machine['os']}; Python {machine['python']}; {versions}. Run {machine['date']}"
        f" (1-min load average at start {machine['loadavg_start']})"
        + (f"; some rows rerun {', '.join(reruns)}" if reruns else "")
        + f".{interference}",
        "",
        f"`a*exp(-b*x) + c` on x = linspace(0, 5, N), truth {TRUTH}, noise sd {NOISE_SD},"
        f" p0 = {P0}; data written block by block (fixed seed) to float64 `.npy` files under"
        f" `{workdir}` and fsynced before any measurement.{gen_text} Each configuration runs in"
        " its own process with `JAXPRO_CACHE_DIR=off`. *In memory*: `np.load` of both files,"
        " then `jaxpro.fit(f, x, y, p0=p0)`, on one CPU device or after"
        f" `jaxpro.use_cpu_cores({TWO_DEVICES})`. *Streamed*: `jaxpro.fit(f,"
        " jaxpro.io.stream(x='x.npy', y='y.npy'), p0=p0)` (memory-mapped, read in chunks each"
        " pass; the files may sit partly in the page cache, which is not in RSS). *scipy lm*:"
        " `scipy.optimize.curve_fit(f, x, y, p0=p0, method='lm')` on the loaded arrays."
        " *cold* = first call in the process (compilation included, imports and loading"
        " excluded), *warm* = the second call (not made for the streamed N = 1e9 fit)."
        " *peak RSS* = the process's `ru_maxrss`; *RSS before fit* = its RSS after imports and"
        " loading the data. *passes*: solver passes over the file for streamed fits (the result"
        " statistics read it once more), else full-data evaluations (`result.nfev`; scipy:"
        " `infodict['nfev']`, finite-difference Jacobian calls included). *Δ vs scipy* = largest"
        " relative parameter difference from scipy lm's answer on the same data (tolerance"
        f" {REL_TOL_VS_SCIPY:g}), or from the truth where scipy did not run (loose,"
        f" {REL_TOL_VS_TRUTH:g}). MB = 10⁶ bytes, GB = 10⁹ bytes.",
        "",
        fb.markdown_table(HEADER, table_rows(records)),
        "",
    ]
    for lines in (
        agreement_notes(records),
        layout_notes(records),
        rss_parts_notes(records),
        split_notes(records),
        scipy_growth_note(records),
    ):
        if lines:
            out += [*lines, ""]
    if any(r.get("noisy") for r in records):
        out += [
            f"† other processes used more than {fb.NOISY_CORES} cores on average during this"
            " measurement; treat it as an upper bound.",
            "",
        ]
    out += ["### Targets", "", *target_lines(records), ""]
    missing = [
        f"- N = {fb.fmt_n(r['n'])} {PATHS[r['engine']]}: {r['status']} — {r.get('reason', '')}"
        for r in records
        if r.get("status") != "ok"
    ]
    if missing:
        out += ["### Not measured", "", *missing, ""]
    return "\n".join(out)


def write_section(section: str, path: Path = fb.BENCHMARKS_MD) -> None:
    """Replace this benchmark's section of ``path`` (BENCHMARKS.md by default)."""
    fb.write_section(section, path, markers=(MARK_BEGIN, MARK_END))


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """'1e6,1e8' -> [1000000, 100000000]; '' -> []."""
    return [int(float(t)) for t in text.split(",") if t.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--json", default=None, help="also write raw records to this file")
    parser.add_argument(
        "--workdir", default=DEFAULT_WORKDIR, help=f"data files (default {DEFAULT_WORKDIR})"
    )
    parser.add_argument("--keep", action="store_true", help="keep the N = 1e9 files at the end")
    parser.add_argument(
        "--sizes",
        default=",".join(f"{n:.0e}" for n in MEMORY_SIZES),
        help="N for the in-memory and scipy configurations (default 1e6,1e7,3e7,1e8)",
    )
    parser.add_argument(
        "--stream-sizes",
        default=",".join(f"{n:.0e}" for n in STREAM_SIZES),
        help="N for the streamed configurations (default 1e8,1e9; '' for none)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help=f"budget per child process; it is killed after it (default {DEFAULT_MAX_SECONDS:g})",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=DEFAULT_QUIET_WAIT_SECONDS,
        help="before each child, wait up to this long for other processes to go idle (0: never)",
    )
    parser.add_argument(
        "--max-rss",
        type=float,
        default=DEFAULT_MAX_RSS_BYTES,
        help="kill a child whose RSS passes this many bytes (default 20e9); a child is also"
        f" killed when the machine has under {MIN_AVAILABLE_BYTES / 1e9:g} GB available",
    )
    parser.add_argument(
        "--from-json",
        default=None,
        help="run nothing: print (and with --write, write) the report of a --json file",
    )
    parser.add_argument(
        "--rerun",
        default=None,
        help="with --from-json: 'noisy' (the rows marked †) or paths such as 'stream,memory-1':"
        " run those configurations again, update their records and save them back (to --json"
        " if given)",
    )
    parser.add_argument("--child", choices=tuple(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        args.sizes = parse_sizes(args.sizes)
        args.stream_sizes = parse_sizes(args.stream_sizes)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration, print the table, optionally write BENCHMARKS.md and JSON."""
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    machine = machine_now = fb.machine_info()
    print(
        f"scale_bench on {machine['cpu']} ({machine['cores']} cores),"
        f" load {machine['loadavg_start']}",
        flush=True,
    )

    def log(line):
        print(line, flush=True)

    workdir = Path(args.workdir)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        machine, records = saved["machine"], saved["records"]
        generated = {int(n): s for n, s in saved.get("generated", {}).items()}
        if args.rerun:
            records = rerun(args, machine_now, records, log)
            save_json(args.json or args.from_json, machine, records, generated)
    else:
        try:
            records, generated = run_all(args, machine, log)
        finally:
            if not args.keep:
                for n in (n for n in args.stream_sizes if n >= DELETE_MIN_N):
                    delete_data(workdir, n)
        if args.json:
            save_json(args.json, machine, records, generated)
    print()
    print(fb.text_table(HEADER, table_rows(records)))
    print()
    notes = agreement_notes(records) + layout_notes(records) + rss_parts_notes(records)
    for line in notes + split_notes(records):
        print(line)
    for line in target_lines(records):
        print(line)
    if args.write:
        write_section(report_markdown(records, machine, generated, str(workdir)))
        print(f"\nwrote {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
