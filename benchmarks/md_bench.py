"""Molecular-dynamics benchmarks (``--nist``: the LJ fluid against NIST's reference table;
``--fit``: the cost of a gradient through a simulation).

``--nist``: ``jaxpro.md.simulate`` of the Lennard-Jones fluid at NIST SRSW's
T* = 0.85 state points (N = 500, truncated at 3.0 sigma with long-range
corrections; NVT Nose-Hoover, dt = 0.0025: melted at T = 2, 4,000 steps of
equilibration, 40,000 of production), U/N and p with block-averaged standard
errors against the table, written between the ``md_bench_nist`` markers of
BENCHMARKS.md.

``--fit``: ``fit_potential``'s gradient through 1,000 NVT steps of 256 LJ
particles (all pairs) and of 2,048 (its neighbour list) (``gradient="trajectory"``,
rematerialised segments) against the forward run alone and, at 256, against a
plain ``lax.scan`` gradient: wall time (best of 3, compiled) and XLA's temporary
memory of each compiled program, written between the ``md_bench_fit`` markers.

``--speed``: steps per second of the 4,000-particle LJ fluid against raw JAX-MD,
OpenMM and LAMMPS, cold start, and the scaling to 32,000 particles (see
``md_speed.py``), written between the ``md_bench_speed`` markers.

Usage: ``python benchmarks/md_bench.py --nist [--densities 0.776,0.86] [--no-write]``,
``python benchmarks/md_bench.py --fit``, ``python benchmarks/md_bench.py --speed [--steps 2000]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fit_bench as fb

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "data" / "physics" / "nist_srsw_lj_T085.csv"
MARKERS = ("<!-- md_bench_nist:begin -->", "<!-- md_bench_nist:end -->")
FIT_MARKERS = ("<!-- md_bench_fit:begin -->", "<!-- md_bench_fit:end -->")
FIT_STEPS, FIT_EVERY = 1000, 10
DT = 0.0025


def reference() -> list[dict]:
    with open(TABLE) as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [{k: float(v) if v else None for k, v in row.items()} for row in rows]


def state_point(rho: float) -> dict:
    import jaxpro.md as md
    from jaxpro.md._reference import block_mean

    start = time.perf_counter()
    system = md.lennard_jones_fluid(500, rho, 0.85, cutoff=3.0, shift=False,
                                    long_range_correction=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        melted = md.simulate(system, "nvt", steps=2000, kT=2.0, dt=0.005, record_every=10)
        hot = dataclasses.replace(system, positions=melted.final_positions,
                                  velocities=melted.final_velocities)  # fmt: skip
        cool = md.simulate(hot, "nvt", steps=4000, dt=DT, record_every=10)
        ready = dataclasses.replace(system, positions=cool.final_positions,
                                    velocities=cool.final_velocities)  # fmt: skip
        run = md.simulate(ready, "nvt", steps=40000, dt=DT, record_every=20)
    u, u_err = block_mean(run.potential_energy / 500)
    p, p_err = block_mean(run.pressure)
    t, t_err = block_mean(run.temperature)
    return {"rho": rho, "u": u, "u_err": u_err, "p": p, "p_err": p_err, "T": t, "T_err": t_err,
            "seconds": time.perf_counter() - start}  # fmt: skip


def report(machine: dict, results: list[dict]) -> str:
    table = {round(r["rho"], 4): r for r in reference()}
    lines = [
        "## Molecular dynamics: the LJ fluid against NIST's reference table (`md_bench.py --nist`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']};"
        f" jax {machine['versions']['jax']}. Run {machine['date']}.",
        "",
        "NIST SRSW LJ NVT Monte Carlo, T* = 0.85, N = 500, truncated at 3.0 sigma with long-range"
        " corrections (`tests/data/physics`). jaxpro: `lennard_jones_fluid(500, rho, 0.85,"
        " cutoff=3.0, shift=False, long_range_correction=True)`, NVT Nose-Hoover, melted at"
        f" T = 2, then dt = {DT}: 4,000 steps of equilibration, 40,000 of production; errors are"
        " block-averaged standard errors (20 blocks). gap / σ = |jaxpro - NIST| over the combined error (the"
        " table's where it gives one).",
        "",
        "| rho | U/N jaxpro | U/N NIST | gap / σ | p jaxpro | p NIST | gap / σ | T (target 0.85) | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = table[round(r["rho"], 4)]
        su = math.hypot(r["u_err"], ref["U_std"] or 0.0)
        sp = math.hypot(r["p_err"], ref["p_std"] or 0.0)
        lines.append(
            f"| {r['rho']:g} | {r['u']:.4f} ± {r['u_err']:.4f} | {ref['U_per_N']:.4f} |"
            f" {abs(r['u'] - ref['U_per_N']) / su:.1f} | {r['p']:.4f} ± {r['p_err']:.4f} |"
            f" {ref['p']:.4f} | {abs(r['p'] - ref['p']) / sp:.1f} |"
            f" {r['T']:.4f} ± {r['T_err']:.4f} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


# fit_potential's systems: 256 particles on all pairs (every program, the plain
# lax.scan gradient included) and 2,048 on neighbour lists (above 300
# particles; the plain-scan gradient would hold every step's pair terms)
FIT_SYSTEMS = ((256, True), (2048, False))


def fit_cost() -> dict:
    """Time and temporary memory: forward run, checkpointed gradient, plain-scan gradient."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxpro.md as md
    from jaxpro.core import checkpointed_scan
    from jaxpro.md._fit_runs import Model

    out = {}
    with jax.enable_x64(True):
        for n, with_plain in FIT_SYSTEMS:
            system = md.lennard_jones_fluid(n, 0.8, 1.2, form="switched")
            model = Model(system, ("sigma", "epsilon"), {}, 1.2, 0.005, FIT_EVERY)
            carry = model.initial_state({"sigma": 1.0, "epsilon": 1.0}, 0)
            theta = model._theta({"sigma": 1.0, "epsilon": 1.0})
            frames = FIT_STEPS // FIT_EVERY
            pairs = "neighbour list" if model.lister is not None else "all pairs"

            def mean_energy(theta, scan, model=model, carry=carry, frames=frames):
                _, observed = model._frames(carry, theta, frames, scan, False)
                return jnp.mean(observed["potential_energy"])

            programs = {
                "forward run": jax.jit(lambda t, f=mean_energy: f(t, lax.scan)),
                "gradient, rematerialised segments": jax.jit(
                    jax.grad(lambda t, f=mean_energy: f(t, checkpointed_scan))),
            }  # fmt: skip
            if with_plain:
                programs["gradient, plain lax.scan"] = jax.jit(
                    jax.grad(lambda t, f=mean_energy: f(t, lax.scan)))  # fmt: skip
            for name, program in programs.items():
                start = time.perf_counter()
                compiled = program.lower(theta).compile()
                compile_s = time.perf_counter() - start
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    jax.block_until_ready(compiled(theta))
                    times.append(time.perf_counter() - start)
                out[(n, pairs, name)] = {
                    "compile_s": compile_s, "run_s": min(times),
                    "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
                }  # fmt: skip
    return out


def fit_report(machine: dict, costs: dict) -> str:
    lines = [
        "## Molecular dynamics: a gradient through the simulation (`md_bench.py --fit`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; jax {machine['versions']['jax']}."
        f" Run {machine['date']}. Mean potential energy over {FIT_STEPS} NVT steps of an LJ"
        " fluid (rho 0.8, switched at 2.5, float64; pairs as `fit_potential` evaluates them:"
        " all pairs up to 300 particles, its neighbour list above), its gradient with respect"
        " to sigma and epsilon as `fit_potential(gradient='trajectory')` computes it. Time:"
        " best of 3 compiled calls; memory: XLA's temporary allocation of the compiled program.",
        "",
        "| particles | pairs | program | run | vs forward | compile | temporary memory |"
        " vs forward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (n, pairs, name), cost in costs.items():
        forward = costs[(n, pairs, "forward run")]
        lines.append(
            f"| {n:,} | {pairs} | {name} | {fb.fmt_time(cost['run_s'])} |"
            f" {cost['run_s'] / forward['run_s']:.1f}× | {fb.fmt_time(cost['compile_s'])} |"
            f" {cost['temp_bytes'] / 1e6:.1f} MB |"
            f" {cost['temp_bytes'] / max(forward['temp_bytes'], 1):.1f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nist", action="store_true", help="the NIST state points")
    parser.add_argument("--fit", action="store_true", help="the cost of a simulation gradient")
    parser.add_argument(
        "--speed", action="store_true", help="steps/s against JAX-MD, OpenMM, LAMMPS"
    )
    parser.add_argument("--steps", type=int, default=2000, help="warm steps per engine (--speed)")
    parser.add_argument("--densities", default="0.776,0.82,0.86,0.90")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (args.nist or args.fit or args.speed):
        parser.error("choose --nist, --fit and/or --speed")
    machine = fb.machine_info()
    if args.speed:
        import md_speed

        text = md_speed.report(machine, md_speed.run_all(args.steps))
        print(text)
        if not args.no_write:
            fb.write_section(text, markers=md_speed.MARKERS)
        if not (args.nist or args.fit):
            return
    if args.fit:
        text = fit_report(machine, fit_cost())
        print(text)
        if not args.no_write:
            fb.write_section(text, markers=FIT_MARKERS)
        if not args.nist:
            return
    results = [state_point(float(rho)) for rho in args.densities.split(",")]
    text = report(machine, results)
    print(text)
    if not args.no_write:
        fb.write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
