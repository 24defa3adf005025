"""``jaxpro.plan("cfd", ...)``: the flow run's decisions, taken by ``simulate`` itself.

The advice runs :func:`jaxpro.cfd.simulate` with the same arguments for one
record: method, dt, steps per record and the compiled program are exactly the
real run's (the same code decides), its compile time and the size XLA reports
for the program are measured, and the time of one record scales to the run.
"""

from __future__ import annotations

import math
import time
import warnings

from jaxpro._result import Plan, Timings
from jaxpro.advisor._advice import Advice

__all__ = ["plan_cfd"]

_VALIDATION = {
    "divergence": "incompressibility: max |div u| h / max|u| at rounding level (1000 eps)",
    "cfl": "CFL: the Courant number re-checked every record (dt halves, or the run stops)",
    "analytic": "the exact Taylor-Green solution at the end (1% of its peak)",
    "steady": "steady state: max |du/dt| below steady_tol",
    "resolution": "resolution: cell Reynolds number U h / nu <= 16 (wall layers resolved)",
}


def plan_cfd(flow: str = "decaying_turbulence", grid=256, reynolds=None, viscosity=None,
             t_end=None, method: str = "auto", precision: str = "float64") -> Advice:  # fmt: skip
    """The flow simulation jaxpro would run (see :func:`jaxpro.cfd.simulate`)."""
    import jax

    import jaxpro.cfd as cfd
    from jaxpro.errors import SimulationWarning

    started = time.perf_counter()
    kwargs = dict(grid=grid, reynolds=reynolds, viscosity=viscosity, t_end=t_end,
                  method=method, precision=precision)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulationWarning)
        # the first record compiles (and warms the diagnostics); the second call of
        # the same record times execution alone
        first = cfd.simulate(flow, **kwargs, progress=False, _max_records=1)
        probe = cfd.simulate(flow, **kwargs, progress=False, _max_records=1)
    interval = float(probe.times[1] - probe.times[0])
    per_record = probe.timings.run
    if t_end is None and probe.steady is not None:
        horizon = None
        seconds = None
        note = (
            f"runs until steady: {per_record / interval:.3g} s per unit of flow time"
            " (the cavity at Re = 100 settles near t = 23), measured on one record"
        )
    else:
        horizon = interval * round(float(t_end or probe.plan.settings["t_end"]) / interval)
        records = max(1, round(horizon / interval))
        # the first call's set-up (start field, engine) and compile, then the records
        setup = first.timings.total - first.timings.run - first.timings.compile
        seconds = setup + first.timings.compile + records * per_record
        note = (
            f"set-up {setup:.3g} s + compile {first.timings.compile:.3g} s + {records} records"
            f" x {per_record:.3g} s, measured on the first record (run twice)"
        )
    memory = probe.plan.settings.get("program_bytes")
    args = ", ".join(
        f"{k}={v!r}" for k, v in kwargs.items() if v is not None and not (k == "method"
                                                                          and v == "auto")
    )  # fmt: skip
    devices = jax.devices()
    return Advice(
        domain="cfd",
        method=f"{probe.method} ({probe.flow}, {probe.grid[0]} x {probe.grid[1]})",
        call=f"jaxpro.cfd.simulate({flow!r}, {args})",
        memory_bytes=memory,
        memory_note="XLA's size of the compiled record program (arguments, outputs, temporaries)"
        if memory is not None
        else "not reported by this backend",
        seconds=seconds,
        seconds_note=note,
        validation=tuple(_VALIDATION[c.name] for c in probe.checks if c.name in _VALIDATION),
        devices=f"{len(devices)} x {devices[0].platform}",
        plan=Plan(
            method=probe.method,
            reasons=probe.plan.reasons,
            settings={
                **probe.plan.settings,
                "steps_per_record": probe.steps,
                "record_every": interval,
                "t_end": horizon,
            },
        ),
        timings=Timings(first.timings.compile, probe.timings.run, time.perf_counter() - started),
        extra={
            "dt": probe.dt,
            "reynolds": probe.reynolds,
            "steps": None if horizon is None else math.ceil(horizon / probe.dt - 1e-9),
        },
    )
