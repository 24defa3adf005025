"""``jaxpro.cfd.solver``: a flow simulation as a differentiable JAX function.

``f = solver("taylor_green", grid=32, t_end=1.0)`` gives ``f(velocity0,
viscosity)``, the cell-centred velocity at ``t_end``, a pure JAX function of the
start field and the viscosity: ``jax.grad``, ``jax.jacfwd`` and ``jax.vmap``
go through the solver. Reverse mode stores one state per step under
``jax.checkpoint`` (a step's internals are recomputed on the way back), so
memory grows with the steps times one field, not times a step's intermediates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxpro._result import Plan
from jaxpro.errors import InputError

__all__ = ["FlowFunction", "solver"]


@dataclass(frozen=True)
class FlowFunction:
    """A flow solve as a function ``(velocity0, viscosity) -> velocity at t_end``.

    Attributes:
        initial: the flow's own start field ``(2, nx, ny)`` (cell centres), or
            None for a walled flow (which starts at rest; pass ``velocity0=None``).
        x, y: the cell-centre coordinates.
        dt, steps: the fixed step and how many reach ``t_end``.
        viscous_limit: the largest viscosity the fixed dt is stable for (explicit
            diffusion; inf where diffusion is implicit).
        plan: the method and why.
    """

    initial: np.ndarray | None
    x: np.ndarray
    y: np.ndarray
    dt: float
    steps: int
    viscous_limit: float
    plan: Plan
    _run: Any
    _x64: bool
    _walled: bool

    def __call__(self, velocity0, viscosity):
        """The cell-centred velocity ``(2, nx, ny)`` at ``t_end``.

        Args:
            velocity0: the start field ``(2, nx, ny)`` at the cell centres (None for
                a walled flow); it is projected onto divergence-free fields.
            viscosity: the kinematic viscosity (a scalar; may be traced).
        """
        import jax
        import jax.numpy as jnp

        if isinstance(viscosity, int | float) and not viscosity > 0:
            raise InputError("must be positive", argument="viscosity", received=viscosity)
        if isinstance(viscosity, int | float) and viscosity > self.viscous_limit:
            raise InputError(
                f"exceeds {self.viscous_limit:.3g}, the largest viscosity this solver's fixed"
                " dt keeps stable (explicit diffusion); build it with a larger viscosity hint",
                argument="viscosity", received=viscosity,
            )  # fmt: skip
        with jax.enable_x64(self._x64):
            if self._walled:
                if velocity0 is not None:
                    raise InputError("a walled flow starts at rest: pass None",
                                     argument="velocity0", received=velocity0)  # fmt: skip
                return self._run(None, viscosity)
            return self._run(jnp.asarray(velocity0), viscosity)


def _compiled_solve(engine, dt: float, steps: int, walled: bool):
    """One jitted program per FlowFunction: eager calls reuse it, and under
    jax.grad / jacfwd / vmap it is traced once per transformation."""
    import jax

    @jax.jit
    def run(velocity0, viscosity):
        state = engine.state0 if walled else engine.init(velocity0)

        @jax.checkpoint
        def one(s, _):
            return engine.step(s, dt, viscosity), None

        state, _ = jax.lax.scan(one, state, None, length=steps)
        return engine.velocity(state)

    return run


def solver(
    flow="taylor_green",
    grid=None,
    t_end: float = 1.0,
    dt: float | str = "auto",
    method: str = "auto",
    *,
    viscosity: float | None = None,
    domain=None,
    seed: int = 0,
    precision: str = "float64",
) -> FlowFunction:
    """Build the differentiable solve of ``flow`` on ``grid`` up to ``t_end``.

    Args:
        flow, grid, method, domain, seed, precision: as in :func:`jaxpro.cfd.simulate`.
        t_end: flow time of the result.
        dt: a fixed step, or "auto": the CFL step of the start field (Courant 0.5,
            or 0.25 of the lid or channel speed's limit for a flow at rest), capped
            by the explicit viscous limit at ``viscosity``.
        viscosity: the largest viscosity the function will be called with (a hint
            for the viscous limit; default: the flow's default Reynolds number).

    Returns:
        A :class:`FlowFunction`.
    """
    import jax

    from jaxpro.cfd._simulate import _positive, _viscosity, build, setup

    spec, user, cells, domain, x, y = setup(flow, grid, domain, precision)
    t_end = _positive(t_end, "t_end")
    nu_hint, _ = _viscosity(viscosity, None, spec)
    reasons: list[str] = []
    with jax.enable_x64(precision == "float64"):
        engine, field = build(spec, user, cells, domain, x, y, seed, method, reasons)
        diag0 = jax.device_get(engine.diagnostics(engine.state0))
    rate = float(diag0["courant_rate"])
    if spec is not None and field is None:
        rate = max(rate, spec.velocity_scale * 2.0 / engine.spacing)
    if dt == "auto":
        step = engine.cfl / max(rate, 1e-12)
        if engine.viscous_factor is not None:
            step = min(step, engine.viscous_factor * engine.spacing**2 / nu_hint)
    else:
        step = _positive(dt, "dt")
    steps = max(1, int(np.ceil(t_end / step * (1 - 1e-12))))
    step = t_end / steps
    limit = (
        float("inf")
        if engine.viscous_factor is None
        else engine.viscous_factor * engine.spacing**2 / step
    )
    reasons.append(f"{steps} fixed steps of dt = {step:.3g} to t = {t_end:g}")
    reasons.append("reverse mode: one stored state per step, each step rematerialised")
    return FlowFunction(
        initial=field,
        x=x,
        y=y,
        dt=step,
        steps=steps,
        viscous_limit=limit,
        plan=Plan(
            method=engine.name,
            reasons=(*reasons, engine.scheme),
            settings={"grid": list(cells), "dt": step, "steps": steps},
        ),
        _run=_compiled_solve(engine, step, steps, field is None),
        _x64=precision == "float64",
        _walled=field is None,
    )
