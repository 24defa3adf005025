"""Molecular-dynamics benchmarks (``--nist``: the LJ fluid against NIST's reference table).

``--nist``: ``jaxpro.md.simulate`` of the Lennard-Jones fluid at NIST SRSW's
T* = 0.85 state points (N = 500, truncated at 3.0 sigma with long-range
corrections; NVT Nose-Hoover, dt = 0.0025: melted at T = 2, 4,000 steps of
equilibration, 40,000 of production), U/N and p with block-averaged standard
errors against the table, written between the ``md_bench_nist`` markers of
BENCHMARKS.md. (The steps-per-second comparison with raw JAX-MD, OpenMM and
LAMMPS of issue 16 is not written yet.)

Usage: ``python benchmarks/md_bench.py --nist [--densities 0.776,0.86] [--no-write]``.
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nist", action="store_true", help="the NIST state points")
    parser.add_argument("--densities", default="0.776,0.82,0.86,0.90")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not args.nist:
        parser.error("only --nist is implemented so far")
    machine = fb.machine_info()
    results = [state_point(float(rho)) for rho in args.densities.split(",")]
    text = report(machine, results)
    print(text)
    if not args.no_write:
        fb.write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
