"""Core JAX benchmarks: ``pmap_batch`` scaling over devices, and ``jaxpro lint`` throughput.

1. ``pmap_batch`` of a compute-bound function (a small recurrent map iterated
   in a ``fori_loop``, per batch element) over 1, 2 and 4 CPU devices, against
   ``jax.jit(jax.vmap(fn))`` on one device in the same process. Each device
   count runs in its own process (JAX fixes the count at start-up). Speed-up =
   vmap time / pmap_batch time; efficiency = speed-up / devices (on a machine
   with fewer cores than devices, the extra devices share cores).
2. ``jaxpro lint`` over the installed numpyro, diffrax and jax_md sources
   against ``ruff check`` (its default rules, no cache) on the same files:
   lines per second, each tool's best of three wall times, both as a command
   (process start-up included) and, for jaxpro, in-process.

Usage: ``python benchmarks/core_bench.py [--quick] [--no-write]``; the section
between the ``core_bench`` markers of BENCHMARKS.md is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fit_bench as fb

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- core_bench:begin -->", "<!-- core_bench:end -->")
DEVICE_COUNTS = (1, 2, 4)
LINT_PACKAGES = ("numpyro", "diffrax", "jax_md")
WIDTH, STEPS = 32, 400  # per element: 400 steps of x <- tanh(W x + b) on 32 values


def child_pmap(devices: int, batch: int, repeats: int) -> dict:
    """Runs in a fresh process with ``devices`` CPU devices."""
    import jax

    jax.config.update("jax_num_cpu_devices", devices)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from jaxpro.core import pmap_batch

    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH))

    def fn(x0, bias):
        def body(_, x):
            return jnp.tanh(weights @ x + bias)

        return lax.fori_loop(0, STEPS, body, x0)

    xs = rng.normal(size=(batch, WIDTH))
    biases = rng.normal(size=(batch, WIDTH)) * 0.1

    def timed(call):
        start = time.perf_counter()
        jax.block_until_ready(call())
        return time.perf_counter() - start

    vmapped = jax.jit(jax.vmap(fn))
    vmap_cold = timed(lambda: vmapped(xs, biases))
    vmap_warm = [timed(lambda: vmapped(xs, biases)) for _ in range(repeats)]
    pmap_cold = timed(lambda: pmap_batch(fn, xs, biases).values)
    pmap_warm = [timed(lambda: pmap_batch(fn, xs, biases).values) for _ in range(repeats)]
    got = np.asarray(pmap_batch(fn, xs, biases).values)
    gap = float(np.max(np.abs(got - np.asarray(vmapped(xs, biases)))))
    return {
        "devices": jax.device_count(),
        "batch": batch,
        "vmap_cold": vmap_cold,
        "vmap_warm": statistics.median(vmap_warm),
        "pmap_cold": pmap_cold,
        "pmap_warm": statistics.median(pmap_warm),
        "max_gap": gap,
        "plan": pmap_batch(fn, xs, biases).plan.settings,
    }


def run_pmap(batch: int, repeats: int) -> list[dict]:
    records = []
    for devices in DEVICE_COUNTS:
        fb.wait_for_quiet(30.0)
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
        )
        env["JAXPRO_CACHE_DIR"] = "off"
        done = subprocess.run(
            [sys.executable, __file__, "--child-pmap", str(devices), str(batch), str(repeats)],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            records.append({"devices": devices, "error": done.stderr.strip().splitlines()[-1]})
        else:
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    return records


def best_of(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - start)
    return min(times)


def run_lint() -> dict:
    import jaxpro.core

    roots = []
    for name in LINT_PACKAGES:
        try:
            module = __import__(name)
        except ImportError as error:
            return {"error": f"{name} is not installed ({error})"}
        roots.append(str(Path(module.__file__).parent))
    report = jaxpro.core.lint(roots)
    in_process = min(jaxpro.core.lint(roots).seconds for _ in range(3))
    cli_seconds = best_of([sys.executable, "-m", "jaxpro", "lint", *roots])
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    ruff = ruff if Path(ruff).exists() else None
    out = {
        "files": report.files,
        "lines": report.lines,
        "findings": report.counts(),
        "jaxpro_in_process_s": in_process,
        "jaxpro_cli_s": cli_seconds,
    }
    if ruff is None:
        out["ruff_error"] = "ruff is not installed (pip install ruff)"
    else:
        out["ruff_version"] = subprocess.run(
            [ruff, "--version"], capture_output=True, text=True
        ).stdout.strip()
        out["ruff_s"] = best_of([ruff, "check", "--no-cache", "--exit-zero", "--quiet", *roots])
    return out


def report(machine: dict, pmap: list[dict], lint: dict) -> str:
    versions = machine["versions"]
    lines = [
        "## Core JAX: `pmap_batch` over devices, `jaxpro lint` throughput (`benchmarks/core_bench.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM;"
        f" Python {machine['python']}; jax {versions['jax']}, jaxlib {versions['jaxlib']}."
        f" Run {machine['date']} (1-min load average at start {machine['loadavg_start']}).",
        "",
        f"`pmap_batch(fn, xs, biases)` with `fn` = {STEPS} steps of `x <- tanh(W x + b)` on"
        f" {WIDTH} values (float64), against `jax.jit(jax.vmap(fn))` on one device in the same"
        " process; each device count in its own process, compile cache off. Warm = median of"
        " repeated calls; cold = the first call, compilation included.",
        "",
        "| CPU devices | batch | per device (padding) | vmap, 1 device: cold | warm |"
        " pmap_batch: cold | warm | speed-up (warm) | efficiency | max \\|Δ\\| vs vmap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in pmap:
        if "error" in record:
            lines.append(f"| {record['devices']} | failed: {record['error']} |||||||||")
            continue
        speedup = record["vmap_warm"] / record["pmap_warm"]
        plan = record["plan"]
        lines.append(
            f"| {record['devices']} | {record['batch']} | {plan['per_device']} ({plan['padding']})"
            f" | {fb.fmt_time(record['vmap_cold'])} | {fb.fmt_time(record['vmap_warm'])}"
            f" | {fb.fmt_time(record['pmap_cold'])} | {fb.fmt_time(record['pmap_warm'])}"
            f" | {speedup:.2f}× | {speedup / record['devices']:.0%} | {record['max_gap']:.1e} |"
        )
    lines += [
        "",
        f"On this machine the devices share {machine['cores']} cores, and XLA's CPU backend"
        " already spreads one device's large batched operations over its threads: the"
        " one-device vmap is not single-threaded, so extra CPU devices add less than their"
        " count (most for small batches, where one device leaves cores idle).",
        "",
    ]
    if "error" in lint:
        lines.append(f"Lint throughput: not measured: {lint['error']}.")
    else:
        rate = lint["lines"] / lint["jaxpro_in_process_s"]
        cli_rate = lint["lines"] / lint["jaxpro_cli_s"]
        lines += [
            f"`jaxpro lint` over the installed {', '.join(LINT_PACKAGES)} ({lint['files']} files,"
            f" {lint['lines']:,} lines; findings {lint['findings'] or 'none'}), best of 3:",
            "",
            "| tool | wall time | lines per second |",
            "|---|---|---|",
            f"| jaxpro lint, in-process | {fb.fmt_time(lint['jaxpro_in_process_s'])} | {rate:,.0f} |",
            f"| jaxpro lint, command (start-up included) | {fb.fmt_time(lint['jaxpro_cli_s'])}"
            f" | {cli_rate:,.0f} |",
        ]
        if "ruff_s" in lint:
            ruff_rate = lint["lines"] / lint["ruff_s"]
            lines.append(
                f"| {lint['ruff_version']} check --no-cache (default rules) |"
                f" {fb.fmt_time(lint['ruff_s'])} | {ruff_rate:,.0f} |"
            )
            lines += [
                "",
                f"- Target ≥ 20,000 lines/s: {'MET' if rate >= 20_000 else 'NOT MET'}"
                f" ({rate:,.0f} in-process, {cli_rate:,.0f} as a command). ruff, compiled Rust"
                f" with other rules, is {lint['jaxpro_cli_s'] / lint['ruff_s']:.1f}× faster as a"
                " command.",
            ]
        else:
            lines.append(f"| ruff | not measured: {lint['ruff_error']} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child-pmap", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small batch, fewer repeats")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.child_pmap:
        print(json.dumps(child_pmap(*args.child_pmap)))
        return
    machine = fb.machine_info()
    pmap = run_pmap(batch=1001 if args.quick else 8191, repeats=3 if args.quick else 7)
    lint = run_lint()
    print(json.dumps(lint), flush=True)
    text = report(machine, pmap, lint)
    print(text)
    if not args.no_write:
        fb.write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
