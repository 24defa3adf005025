"""``ODESolution``: what ``jaxpro.ode.solve`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table

__all__ = ["ODESolution"]


def _evaluate(interpolation, times, batched: bool):
    """The interpolant at ``times`` (one compiled program per interpolant structure)."""
    global _EVALUATE
    if _EVALUATE is None:
        import jax

        def at_times(interp, ts):
            return jax.vmap(interp.evaluate)(ts)

        def run(interp, ts, batched):
            if batched:  # the interpolant's leaves carry the member axis
                return jax.vmap(at_times, in_axes=(0, None))(interp, ts)
            return at_times(interp, ts)

        _EVALUATE = jax.jit(run, static_argnums=2)
    return _EVALUATE(interpolation, times, batched)


_EVALUATE = None


@dataclass(frozen=True, repr=False)
class ODESolution(Result):
    """The solution of an initial-value problem.

    Attributes:
        ts: the output times ``(len(ts),)`` (``t_eval``, or the solver's accepted steps).
        ys: the states at ``ts``, ``(len(ts), *y0.shape)`` (a pytree of such arrays
            for a pytree state).
        stats: ``steps`` (accepted plus rejected), ``accepted``, ``rejected``,
            ``function_evaluations`` (stages times steps: an estimate for implicit
            solvers, whose Newton iterations are not counted), ``method``.
        success: the integration reached the end of ``t_span`` (or a terminating event).
        message: how it ended, with advice when it failed.
        event_time: the time a terminating event fired, or None.
        plan, timings: the method chosen and why; compile and run times.

    With ``solve(..., dense=True)``, :meth:`evaluate` gives the state at any time.
    """

    ts: np.ndarray
    ys: Any
    stats: dict[str, Any]
    success: bool
    message: str
    plan: Plan
    timings: Timings
    event_time: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "ode_solution"
    members: int | None = None  # a batch or path ensemble: ys has a leading member axis
    # Diffrax's dense interpolant (solve(..., dense=True)); not saved: it lives on the device
    interpolation: Any = field(default=None, compare=False)

    def evaluate(self, t) -> Any:
        """The state at time(s) ``t`` from the solver's interpolant (``dense=True``).

        Args:
            t: a time or a 1-D array of times inside the integrated span (from t0 to
                where the solve ended: ``ts[-1]``, or the event time).

        Returns:
            States shaped like ``ys`` at those times: ``(len(t), *y0.shape)`` for an
            array of times, ``y0.shape`` for one time; a batch keeps its leading
            member axis.

        Raises:
            InputError: the solve was not dense, or a time lies outside the span.
        """
        import jax
        import jax.numpy as jnp

        from jaxpro.errors import InputError

        if self.interpolation is None:
            raise InputError("needs a dense solution: solve(..., dense=True)", argument="t")
        times = np.asarray(t, dtype=float)
        if times.ndim > 1 or not np.all(np.isfinite(times)):
            raise InputError("must be a finite time or a 1-D array of times", argument="t",
                             received=t)  # fmt: skip
        start = float(self.plan.settings["t0"])
        end = float(self.event_time) if self.event_time is not None else float(self.ts[-1])
        lo, hi = min(start, end), max(start, end)
        span = max(abs(hi - lo), 1e-300)
        if times.size and (times.min() < lo - 1e-12 * span or times.max() > hi + 1e-12 * span):
            raise InputError(f"must lie inside the integrated span [{lo:g}, {hi:g}]",
                             argument="t", received=t)  # fmt: skip
        flat = np.clip(np.atleast_1d(times), lo, hi)
        with jax.enable_x64(True):
            out = _evaluate(self.interpolation, jnp.asarray(flat, dtype=jnp.float64),
                            self.members is not None)  # fmt: skip
            out = jax.tree.map(np.asarray, out)
        if times.ndim == 0:
            axis = 1 if self.members is not None else 0
            out = jax.tree.map(lambda a: np.take(a, 0, axis=axis), out)
        return out

    def _flat(self) -> np.ndarray:
        """``(len(ts), n)``: every state component (pytree leaves side by side)."""
        import jax

        leaves = [np.asarray(x) for x in jax.tree.leaves(self.ys)]
        if self.members is not None:  # the mean over the members or paths
            leaves = [x.mean(axis=0) for x in leaves]
        return np.concatenate([np.reshape(x, (len(self.ts), -1)) for x in leaves], axis=1)

    def summary(self) -> str:
        final = self._flat()[-1] if len(self.ts) else np.array([])
        shown = ", ".join(f"{v:.6g}" for v in final[:8]) + (" ..." if final.size > 8 else "")
        rows = [[k, v] for k, v in self.stats.items()]
        lines = [
            f"ODE solution: t = {self.ts[0]:g} -> {self.ts[-1]:g}, {len(self.ts)} output times;"
            f" {'success' if self.success else 'FAILED'}: {self.message}",
            ("mean " if self.members is not None else "")
            + f"y(t_end) = [{shown}]"
            + (f" over {self.members} members" if self.members is not None else ""),
        ]
        if self.event_time is not None:
            lines.append(f"terminating event at t = {self.event_time:.10g}")
        lines += [format_table(["statistic", "value"], rows), self.plan.summary(),
                  self.timings.summary()]  # fmt: skip
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {"ts": self.ts, "ys": self.ys, "stats": self.stats, "success": self.success,
                "message": self.message, "event_time": self.event_time, **self.extra}  # fmt: skip

    def plot(self, **kwargs: Any):
        """Each component against time, as a matplotlib Figure (log time when it spans decades)."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7, 4), layout="constrained")
        axes = figure.subplots()
        flat = self._flat()
        for i in range(min(flat.shape[1], 10)):
            axes.plot(self.ts, flat[:, i], label=f"y[{i}]")
        if self.ts[0] > 0 and self.ts[-1] / self.ts[0] > 1e3:
            axes.set_xscale("log")
        axes.set_xlabel("t")
        axes.set_ylabel("y")
        axes.legend(fontsize="small")
        axes.set_title(f"{self.plan.method}: {self.message}", fontsize="medium")
        return figure
