"""``ODESolution``: what ``jaxpro.ode.solve`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table

__all__ = ["ODESolution"]


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
