"""``jaxpro.ode.solver``: a solve as a JAX function of ``(y0, args)``, with the adjoint chosen.

:func:`solve` returns host arrays for a person to read; a loss that fits an ODE
needs the solution inside JAX, differentiable. ``solver(...)`` fixes the problem's
shape (the function, ``t_span``, ``t_eval``, tolerances), chooses the method as
``solve(method='auto')`` does (it runs that once on the example ``y0`` and
``args``) and the adjoint, and returns an :class:`ODEFunction`: ``ys =
fn(y0, args)``, jitted, for ``jax.grad``, ``jax.jacrev`` and ``jax.vmap``.

Adjoint choice (``adjoint='auto'``), recorded in the plan:

- ``RecursiveCheckpointAdjoint`` (Diffrax's default): gradients of the discrete
  solve itself, exact to rounding, with the forward states checkpointed;
- ``ImplicitAdjoint`` for a steady state (``t_span = (t0, inf)``): the solve runs
  until it settles and the gradient of ``y*`` comes from the implicit function
  theorem at ``f(y*, args) = 0`` (see ``_steady.py``);
- ``BacksolveAdjoint`` when the forward states would pass ``BACKSOLVE_BYTES``
  (accepted steps times state size, 8 bytes each): it integrates the adjoint
  backwards in constant memory, and its gradients are those of the continuous
  problem, close to the discrete ones for non-chaotic dynamics (a chaotic
  problem's backward solve diverges: check against ``adjoint='recursive'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxpro._result import Plan
from jaxpro.errors import InputError
from jaxpro.ode._methods import controller, make_solver
from jaxpro.ode._solve import MAX_STEPS, _check, single_only, solve
from jaxpro.ode._steady import steady_function

__all__ = ["ADJOINTS", "ODEFunction", "solver"]

ADJOINTS = ("auto", "recursive", "backsolve", "implicit")
BACKSOLVE_BYTES = 2e9


def _to_infinity(t_span) -> bool:
    """``t_span = (t0, inf)``: the function returns the steady state."""
    try:
        t0, t1 = (float(t) for t in t_span)
    except (TypeError, ValueError):
        return False  # _check says what is wrong with it
    return t1 == float("inf") and np.isfinite(t0)


@dataclass(frozen=True)
class ODEFunction:
    """``ys = fn(y0, args)``: the solution at ``ts`` as a differentiable JAX function.

    Attributes:
        ts: the output times.
        plan: the method and adjoint chosen, and why.
    """

    function: Any
    ts: np.ndarray
    plan: Plan

    def __call__(self, y0, args=None):
        return self.function(y0, args)


def solver(
    f,
    t_span,
    t_eval,
    y0,
    args=None,
    *,
    method: str = "auto",
    adjoint: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = MAX_STEPS,
) -> ODEFunction:
    """The solve of ``dy/dt = f(t, y, args)`` at ``t_eval`` as a function of ``(y0, args)``.

    Args:
        f, t_span, t_eval, rtol, atol, max_steps: as in :func:`solve` (``t_eval``
            is required: the outputs need a fixed shape). ``t_span = (t0, inf)``
            with ``t_eval=None``: the function returns the steady state ``y*``
            (see :func:`steady_state`).
        y0, args: an example state and example arguments: the method is chosen on
            them (``method='auto'``), and later calls must have their shapes.
        method: "auto" or one of :func:`solve`'s methods.
        adjoint: "auto", "recursive" (checkpointed reverse mode through the solver),
            "backsolve" (the continuous adjoint, constant memory) or "implicit"
            (steady states only; their default).

    Returns:
        An :class:`ODEFunction`. It runs in the caller's precision: enable float64
        (``jax.config.update("jax_enable_x64", True)``) for tight tolerances.

    Raises:
        InputError: bad arguments (as :func:`solve`), no ``t_eval``, an unknown
            adjoint, or an example the solver cannot finish.
    """
    import diffrax
    import jax

    single_only(f, "solver()")
    if adjoint not in ADJOINTS:
        raise InputError(f"must be one of {ADJOINTS}", argument="adjoint", received=adjoint)
    if _to_infinity(t_span):
        return steady_function(f, float(t_span[0]), t_eval, y0, args, method, adjoint, rtol,
                               atol, max_steps)  # fmt: skip
    if adjoint == "implicit":
        raise InputError("'implicit' needs a steady state: t_span = (t0, inf)",
                         argument="adjoint", received=adjoint)  # fmt: skip
    if t_eval is None:
        raise InputError("is needed: the function's outputs need fixed times",
                         argument="t_eval")  # fmt: skip
    t0, t1 = _check(f, t_span, y0, t_eval, method, rtol, atol, max_steps)
    probe = solve(f, (t0, t1), y0, t_eval=t_eval, args=args, method=method, rtol=rtol,
                  atol=atol, max_steps=max_steps)  # fmt: skip
    if not probe.success:
        raise InputError(f"the example cannot be solved: {probe.message}", argument="y0")
    chosen = probe.plan.method
    reasons = list(probe.plan.reasons)
    size = sum(int(np.size(x)) for x in jax.tree.leaves(y0))
    stored = probe.stats["accepted"] * size * 8
    if adjoint == "auto":
        adjoint = "backsolve" if stored > BACKSOLVE_BYTES else "recursive"
        reasons.append(
            f"adjoint: {adjoint}: the forward solve keeps ~{stored / 1e6:.3g} MB of states"
            f" ({probe.stats['accepted']} steps x {size} numbers)"
            + (f" > {BACKSOLVE_BYTES / 1e9:g} GB: the backward solve needs constant memory"
               " (continuous adjoint: check it against adjoint='recursive' if the dynamics"
               " are chaotic)" if adjoint == "backsolve" else
               f" <= {BACKSOLVE_BYTES / 1e9:g} GB: checkpointed reverse mode through the"
               " solver (the discrete solve's exact gradient)")
        )  # fmt: skip
    else:
        reasons.append(f"adjoint={adjoint!r} as given")
    solver_ = make_solver(chosen)
    adjoint_ = (diffrax.BacksolveAdjoint() if adjoint == "backsolve"
                else diffrax.RecursiveCheckpointAdjoint())  # fmt: skip
    term = diffrax.ODETerm(f)
    ts = np.asarray(t_eval, dtype=float)

    @jax.jit
    def function(y0, args):
        solution = diffrax.diffeqsolve(
            term, solver_, t0, t1, None, y0, args, saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller(chosen, rtol, atol, ts),
            max_steps=max_steps, adjoint=adjoint_,
        )  # fmt: skip
        return solution.ys

    plan = Plan(method=chosen, reasons=tuple(reasons),
                settings={"adjoint": adjoint, "rtol": rtol, "atol": atol, "t0": t0, "t1": t1,
                          "max_steps": max_steps})  # fmt: skip
    return ODEFunction(function, ts, plan)
