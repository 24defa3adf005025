"""``jaxpro.plan("ode", ...)``: the solver ``jaxpro.ode.solve`` picks, by solving a stand-in.

The decision of ``method='auto'`` depends on the right-hand side's Jacobian
(its spectral radius over the span) and on rtol. The advice builds a linear
stand-in ``y' = -A y`` with the user's state size, span, tolerances, output
times and batch, whose spectral radius is the one given (``radius``), a stiff
one (``stiff=True``: 1e6 / span) or a non-stiff one (eigenvalues in [0.1, 1]),
and runs ``jaxpro.ode.solve`` on it: the method, the reasons and the time
(compile and run of that first call) are solve's own.
"""

from __future__ import annotations

import time

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.advisor._advice import Advice
from jaxpro.errors import InputError

__all__ = ["plan_ode"]

VALIDATION = (
    "the solver's own error control at rtol/atol; success and message say where it stopped",
    "a stiffness check when the explicit attempt runs out of steps (then an implicit solver)",
    "statistics: steps, rejected steps, function and Jacobian evaluations",
)


def plan_ode(n: int = 3, stiff: bool | None = None, radius: float | None = None,
             span: float = 1.0, rtol: float = 1e-6, atol: float = 1e-9, points: int = 201,
             batch: int = 1) -> Advice:  # fmt: skip
    """The ODE solve jaxpro would run for ``n`` states over ``span`` (see :func:`jaxpro.ode.solve`)."""
    import jax
    import jax.numpy as jnp

    import jaxpro.ode as ode

    started = time.perf_counter()
    for value, name in ((n, "n"), (points, "points"), (batch, "batch")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError("must be a positive whole number", argument=name, received=value)
    for value, name in ((span, "span"), (rtol, "rtol"), (atol, "atol")):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < np.inf:
            raise InputError("must be a positive number", argument=name, received=value)
    if radius is not None and (isinstance(radius, bool) or not 0 < float(radius) < np.inf):
        raise InputError("must be a positive number", argument="radius", received=radius)
    if radius is not None:
        top, what = float(radius), f"spectral radius {float(radius):g} (given)"
    elif stiff:
        top, what = 1e6 / span, f"a stiff spectral radius {1e6 / span:g} (stiff=True)"
    else:
        top, what = 1.0, "a non-stiff spectrum in [0.1, 1]"
    rates = np.geomspace(min(0.1, top), top, n) if n > 1 else np.array([top])
    rates_j = jnp.asarray(rates)

    def stand_in(t, y, args):
        return -rates_j * y

    y0 = np.ones((batch, n)) if batch > 1 else np.ones(n)
    t_eval = np.linspace(0.0, span, points)
    solution = ode.solve(stand_in, (0.0, span), y0, t_eval=t_eval, rtol=rtol, atol=atol,
                         batch=batch > 1)  # fmt: skip
    stored = 8.0 * points * n * batch * 2  # ts/ys on the device and their host copy
    devices = jax.devices()
    plan = solution.plan
    return Advice(
        domain="ode",
        method=plan.method,
        call=f"jaxpro.ode.solve(f, (t0, t0 + {span:g}), y0, t_eval=..., rtol={rtol:g},"
        f" atol={atol:g}" + (", batch=True)" if batch > 1 else ")"),
        memory_bytes=stored,
        memory_note=f"{points} output times x {n} states x {batch} member(s), on the device"
        " and on the host",
        seconds=solution.timings.total,
        seconds_note=f"a linear stand-in with {what}: compile {solution.timings.compile or 0:.3g}"
        f" s + run {solution.timings.run:.3g} s ({solution.stats['steps']} steps); your"
        " right-hand side's cost per evaluation scales the run part",
        validation=VALIDATION,
        devices=f"1 of {len(devices)} x {devices[0].platform}",
        plan=Plan(
            method=plan.method,
            reasons=(f"stand-in: {what}", *plan.reasons),
            settings=dict(plan.settings),
        ),
        timings=Timings(
            solution.timings.compile, solution.timings.run, time.perf_counter() - started
        ),
        extra={"steps": int(solution.stats["steps"])},
    )
