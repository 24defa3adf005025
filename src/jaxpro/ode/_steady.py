"""Steady states: integrate ``dy/dt = f(t, y, args)`` until it stops changing.

:func:`steady_state` runs the solve to ``t = inf`` and stops where the vector
field is negligible, ``rms(f(t, y)) < atol + rtol * rms(y)`` (Diffrax's
``steady_state_event``), and returns a :class:`SteadyState`. The same program is
differentiable: gradients come from the implicit function theorem at
``f(y*, args) = 0`` (Diffrax's ``ImplicitAdjoint``: one linear solve with the
Jacobian, no stored steps), which is why ``solver(f, (t0, inf), ...)`` picks that
adjoint.

Method: an L-stable implicit solver (Kvaerno5). As the transients decay its steps
grow with the time scale still left, while an explicit solver's steps stay bound
by stability: on a three-species test (``tests/ode/test_steady.py``) Kvaerno5
settled in 351 steps at t = 16, and Tsit5 ran 10,000 steps to t = 6,219 without
meeting the test.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.errors import InputError
from jaxpro.ode._methods import METHODS, controller, make_solver
from jaxpro.ode._solve import MAX_STEPS, _check_rhs, check_settings, single_only

__all__ = ["SteadyState", "steady_program", "steady_state"]


@dataclass(frozen=True, repr=False)
class SteadyState(Result):
    """Where ``dy/dt = f(t, y, args)`` settles.

    Attributes:
        y: the steady state (the structure of ``y0``).
        t: the time at which the test passed (time units of ``f``).
        residual: ``max |f(t, y, args)|`` there (units of y per unit time).
        success: the test passed within ``max_steps``.
        message: how it ended, with advice when it did not settle.
        stats: steps, accepted, rejected, method.
        plan, timings: the method and adjoint and why; compile and run times.
    """

    y: Any
    t: float
    residual: float
    success: bool
    message: str
    stats: dict[str, Any]
    plan: Plan
    timings: Timings
    kind: str = "steady_state"
    extra: dict[str, Any] = field(default_factory=dict)

    def _flat(self) -> np.ndarray:
        import jax

        return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(self.y)])

    def summary(self) -> str:
        flat = self._flat()
        shown = ", ".join(f"{v:.8g}" for v in flat[:8]) + (" ..." if flat.size > 8 else "")
        lines = [
            f"steady state: {'success' if self.success else 'NOT REACHED'}: {self.message}",
            f"y* = [{shown}]",
            f"max |f(y*)| = {self.residual:.3g} at t = {self.t:.6g}",
            format_table(["statistic", "value"], [[k, v] for k, v in self.stats.items()]),
            self.plan.summary(),
            self.timings.summary(),
        ]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {"y": self.y, "t": self.t, "residual": self.residual, "success": self.success,
                "message": self.message, "stats": self.stats}  # fmt: skip

    def plot(self, **kwargs: Any):
        """The steady state's components as bars (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6, 3.5), layout="constrained")
        axes = figure.subplots()
        flat = self._flat()[:50]
        axes.bar(np.arange(flat.size), flat)
        axes.set_xlabel("component")
        axes.set_ylabel("y*")
        axes.set_title(f"steady state at t = {self.t:.4g} (max |f| {self.residual:.2g})",
                       fontsize="medium")  # fmt: skip
        return figure


@functools.lru_cache(maxsize=32)
def steady_program(f, method: str, max_steps: int, adjoint: str = "implicit"):
    """``run(y0, t0, args, rtol, atol) -> (y, t, code, stats)``, not jitted (the caller jits)."""
    import diffrax

    solver = make_solver(method)
    term = diffrax.ODETerm(f)
    adjoint_ = (diffrax.ImplicitAdjoint() if adjoint == "implicit"
                else diffrax.RecursiveCheckpointAdjoint())  # fmt: skip
    event = diffrax.Event(diffrax.steady_state_event())

    def run(y0, t0, args, rtol, atol):
        import jax

        solution = diffrax.diffeqsolve(
            term, solver, t0, float("inf"), None, y0, args,
            saveat=diffrax.SaveAt(t1=True), stepsize_controller=controller(method, rtol, atol),
            event=event, adjoint=adjoint_, max_steps=max_steps, throw=False,
        )  # fmt: skip
        y = jax.tree.map(lambda a: a[0], solution.ys)
        return y, solution.ts[0], solution.result._value, solution.stats

    return run


def check_steady(f, y0, method: str, rtol, atol, max_steps) -> None:
    single_only(f, "steady_state()")
    if not callable(f):
        raise InputError("must be a function f(t, y, args)", argument="f", received=f)
    # kencarp5 (IMEX) needs a split pair
    check_settings(y0, method, rtol, atol, max_steps, [m for m in METHODS if m != "kencarp5"])


METHOD_REASON = (
    "steady state: Kvaerno5 (L-stable, implicit): its steps grow as the transients"
    " decay, where an explicit solver's stay bound by stability and may never settle"
)


def steady_state(
    f,
    y0,
    args=None,
    *,
    t0: float = 0.0,
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = MAX_STEPS,
) -> SteadyState:
    """Integrate ``dy/dt = f(t, y, args)`` from ``y(t0) = y0`` until it settles.

    Args:
        f: the right-hand side ``f(t, y, args)`` (``jax.numpy``); autonomous in
            practice: a steady state of a time-dependent field is not one.
        y0: the initial state (an array or a pytree), in the basin of the steady
            state wanted.
        args: anything ``f`` needs (traced: new values do not compile again).
        t0: the start time.
        method: "auto" (Kvaerno5) or one of :func:`solve`'s methods.
        rtol, atol: the step controller's tolerances, and the test
            ``rms(f) < atol + rtol * rms(y)``.
        max_steps: the most steps before giving up.

    Returns:
        A :class:`SteadyState`; ``success`` is False when the test never passed
        (an oscillation, a drift, or a slow approach: ``message`` says which to
        suspect). For gradients of ``y*`` use ``solver(f, (t0, inf), None, y0, args)``.

    Raises:
        InputError: bad arguments, a non-finite ``y0``, or an ``f`` that fails or
            returns the wrong shape.
    """
    import jax
    import jax.numpy as jnp

    from jaxpro._cache import enable_persistent_cache

    started = time.perf_counter()
    check_steady(f, y0, method, rtol, atol, max_steps)
    enable_persistent_cache()
    chosen = "kvaerno5" if method == "auto" else method
    reasons = [METHOD_REASON if method == "auto" else f"method={method!r} as given"]
    with jax.enable_x64(True):
        y0 = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.float64), y0)
        _check_rhs(f, float(t0), y0, args)
        program = jax.jit(steady_program(f, chosen, max_steps))
        inputs = (y0, jnp.float64(t0), args, jnp.float64(rtol), jnp.float64(atol))
        start = time.perf_counter()
        compiled = program.lower(*inputs).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        y, t_end, code, stats = jax.block_until_ready(compiled(*inputs))
        run_s = time.perf_counter() - start
        rate = f(t_end, y, args)
        residual = max(float(jnp.max(jnp.abs(r))) for r in jax.tree.leaves(rate))
        y = jax.tree.map(np.asarray, y)
    return _result(y, float(t_end), int(code), stats, residual, chosen, reasons, rtol, atol,
                   Timings(compile_s, run_s, time.perf_counter() - started))  # fmt: skip


def _result(y, t_end, code, stats, residual, chosen, reasons, rtol, atol, timings):
    import diffrax

    steps = int(stats["num_steps"])
    success = code == int(diffrax.RESULTS.event_occurred._value)
    if success:
        message = f"settled at t = {t_end:.6g}"
    elif code == int(diffrax.RESULTS.max_steps_reached._value):
        message = (
            f"not settled after max_steps ({steps}) at t = {t_end:.6g}, where max |f| ="
            f" {residual:.3g}: the system may oscillate or drift (no stable equilibrium"
            " from this y0), or approach it slowly: raise max_steps or loosen rtol/atol"
        )
        if METHODS[chosen][2]:
            message += "; an explicit solver's steps stay small: try method='kvaerno5'"
    else:
        message = f"stopped at t = {t_end:.6g}: {diffrax.RESULTS[code]}"  # fmt: skip
    table = {"method": chosen, "steps": steps, "accepted": int(stats["num_accepted_steps"]),
             "rejected": int(stats["num_rejected_steps"])}  # fmt: skip
    plan = Plan(method=chosen, reasons=tuple(reasons),
                settings={"rtol": rtol, "atol": atol,
                          "test": "rms(f) < atol + rtol * rms(y)"})  # fmt: skip
    return SteadyState(y=y, t=t_end, residual=residual, success=success, message=message,
                       stats=table, plan=plan, timings=timings)  # fmt: skip


def steady_function(f, t0: float, t_eval, y0, args, method, adjoint, rtol, atol, max_steps):
    """``solver(f, (t0, inf), None, y0, args, ...)``: ``y* = fn(y0, args)``, differentiable."""
    import jax

    from jaxpro.ode._function import ODEFunction

    if t_eval is not None:
        raise InputError("must be None with t_span = (t0, inf): the function returns the"
                         " steady state", argument="t_eval", received=t_eval)  # fmt: skip
    if adjoint == "backsolve":
        raise InputError("must be 'auto', 'implicit' or 'recursive' for a steady state (a"
                         " backward solve from t = inf has no start)", argument="adjoint",
                         received=adjoint)  # fmt: skip
    probe = steady_state(f, y0, args, t0=t0, method=method, rtol=rtol, atol=atol,
                         max_steps=max_steps)  # fmt: skip
    if not probe.success:
        raise InputError(f"the example does not settle: {probe.message}", argument="y0")
    reasons = list(probe.plan.reasons)
    if adjoint == "auto":
        adjoint = "implicit"
        reasons.append(
            "adjoint: implicit: the gradient of y* from the implicit function theorem at"
            " f(y*, args) = 0 (one linear solve with the Jacobian; no steps stored or"
            f" replayed, where the forward solve took {probe.stats['steps']} steps)"
        )
    else:
        reasons.append(f"adjoint={adjoint!r} as given")
    run = steady_program(f, probe.plan.method, max_steps, adjoint)

    @jax.jit
    def function(y0, args):
        return run(y0, t0, args, rtol, atol)[0]

    plan = Plan(method=probe.plan.method, reasons=tuple(reasons),
                settings={"adjoint": adjoint, "rtol": rtol, "atol": atol, "t0": t0,
                          "t1": float("inf"), "max_steps": max_steps})  # fmt: skip
    return ODEFunction(function, np.array([float("inf")]), plan)
