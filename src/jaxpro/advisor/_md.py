"""``jaxpro.plan("md", ...)``: a Lennard-Jones run's decisions, taken by ``simulate`` itself.

The advice builds the system as :func:`jaxpro.md.lennard_jones_fluid` does and
calls :func:`jaxpro.md.simulate` with the same arguments, stopping after its
first two compiled chunks: the ensemble, dt (with its NVE trial), neighbour
list, skin and chunking are exactly the run's; the time of those chunks, the
set-up and the compile scale to the whole run.
"""

from __future__ import annotations

import time

from jaxpro._result import Plan, Timings
from jaxpro.advisor._advice import Advice

__all__ = ["plan_md"]

_VALIDATION = {
    "nve": "energy drift: max |dE/E| <= 1e-4 (advice when exceeded: smaller dt, float64)",
    "momentum": "total momentum conserved",
    "nvt": "temperature: the second half's mean within tolerance of kT",
    "npt": "pressure: the second half's mean within 3 standard errors of its target",
}


def plan_md(n: int = 4000, density: float = 0.8442, temperature: float = 0.72,
            ensemble: str = "nve", steps: int = 10_000, cutoff: float = 2.5,
            pressure: float | None = None, precision: str = "float64") -> Advice:  # fmt: skip
    """The Lennard-Jones simulation jaxpro would run (see :func:`jaxpro.md.simulate`)."""
    import jax

    import jaxpro.md as md

    started = time.perf_counter()
    system = md.lennard_jones_fluid(n, density, temperature, cutoff=cutoff)
    probe = md.simulate(system, ensemble, steps, pressure=pressure, precision=precision,
                        progress=False, _calibrate=2)  # fmt: skip
    seconds = probe["setup_s"] + probe["compile_s"] + probe["chunks"] * probe["chunk_s"]
    rate = probe["chunk_steps"] / max(probe["chunk_s"], 1e-12)
    # the state: positions, velocities, forces (and the list: about 60 neighbours each)
    memory = 8.0 * n * 3 * 4 + (4.0 * n * 80 if probe["neighbor_list"] else 0.0)
    if precision == "float32":
        memory /= 2
    checks = [_VALIDATION["momentum"]]
    checks.insert(0, _VALIDATION["nve"] if ensemble == "nve" else _VALIDATION[ensemble])
    if ensemble == "npt":
        checks.append(_VALIDATION["nvt"])
    devices = jax.devices()
    extra_args = f", pressure={pressure!r}" if pressure is not None else ""
    return Advice(
        domain="md",
        method=probe["method"],
        call=f"jaxpro.md.simulate(jaxpro.md.lennard_jones_fluid({n}, {density!r},"
        f" {temperature!r}, cutoff={cutoff!r}), {ensemble!r}, {steps}{extra_args})",
        memory_bytes=memory,
        memory_note="the particle state (positions, velocities, forces, thermostat) and the"
        " neighbour list's rows, estimated from N",
        seconds=seconds,
        seconds_note=f"set-up {probe['setup_s']:.3g} s (dt trial included) + compile"
        f" {probe['compile_s']:.3g} s + {probe['chunks']} chunks x {probe['chunk_s']:.3g} s"
        f" ({rate:.0f} steps/s), measured on the first {probe['timed_chunks']} chunks",
        validation=tuple(checks),
        devices=f"1 of {len(devices)} x {devices[0].platform}",
        plan=Plan(
            method=probe["method"],
            reasons=probe["reasons"],
            settings={
                k: probe[k]
                for k in ("dt", "record_every", "chunk_steps", "chunks", "neighbor_list", "skin")
            },
        ),
        timings=Timings(
            probe["compile_s"],
            probe["chunk_s"] * probe["timed_chunks"],
            time.perf_counter() - started,
        ),
    )
