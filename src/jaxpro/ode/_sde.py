"""``jaxpro.ode.solve_sde``: Ito SDEs on Diffrax, path ensembles by vmap.

``dy = drift(t, y, args) dt + diffusion(t, y, args) dW`` (Ito), with a
``VirtualBrownianTree`` per path (so a path is reproducible from its key and any
step size samples the same Brownian motion). Method choice (``method='auto'``):

- additive noise (the diffusion does not depend on ``y``: its Jacobian at ``y0``
  is zero): ShARK, strong order 1.5 for additive noise, with space-time Levy area;
- diagonal multiplicative noise: Ito-Milstein, strong order 1;
- general (matrix) multiplicative noise: Euler-Maruyama, strong order 0.5.

``method='heun'`` is the Stratonovich Heun scheme: it solves the Stratonovich
SDE, which differs from the Ito one for multiplicative noise (the plan says so).
Steps are constant (``dt``, default 1/1000 of the span).
"""

from __future__ import annotations

import math
import time

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.errors import InputError
from jaxpro.ode._solution import ODESolution

__all__ = ["SDE_METHODS", "solve_sde"]

SDE_METHODS = ("auto", "euler", "milstein", "shark", "heun")
NOISES = ("diagonal", "general")
DEFAULT_STEPS = 1000


def _diffusion_term(diffusion, noise: str, brownian):
    import diffrax
    import lineax

    if noise == "diagonal":
        return diffrax.ControlTerm(
            lambda t, y, args: lineax.DiagonalLinearOperator(diffusion(t, y, args)), brownian
        )
    return diffrax.ControlTerm(diffusion, brownian)


def _is_additive(diffusion, t0, y0, args) -> bool:
    import jax
    import jax.numpy as jnp

    jacobian = jax.jacfwd(lambda y: diffusion(t0, y, args))(y0)
    return bool(jnp.all(jacobian == 0))


def solve_sde(
    drift,
    diffusion,
    t_span,
    y0,
    key,
    t_eval,
    args=None,
    *,
    noise: str = "diagonal",
    method: str = "auto",
    dt: float | None = None,
    paths: int | None = None,
) -> ODESolution:
    """Solve the Ito SDE ``dy = drift dt + diffusion dW`` on one path or an ensemble.

    Args:
        drift: ``drift(t, y, args)``, shaped like ``y``.
        diffusion: ``diffusion(t, y, args)``: shaped like ``y`` for diagonal noise
            (one independent Brownian motion per component), or an ``(n, m)``
            matrix for general noise (``m`` Brownian motions).
        t_span: ``(t0, t1)``, ``t1 > t0``.
        y0: the initial state, a 1-D array.
        key: a JAX PRNG key (``jax.random.key(0)`` or ``PRNGKey(0)``).
        t_eval: output times, increasing, inside ``t_span``.
        args: anything ``drift`` and ``diffusion`` need.
        noise: "diagonal" or "general".
        method: "auto" (see the module notes), "euler", "milstein", "shark" or "heun".
        dt: the constant step (default the span / 1000).
        paths: None for one path (``ys`` is ``(len(ts), n)``), or the number of
            independent paths (``ys`` is ``(paths, len(ts), n)``, one key each).

    Returns:
        An :class:`ODESolution` (``stats`` has the steps per path and the method).

    Raises:
        InputError: bad arguments, a method that does not fit the noise.
    """
    import diffrax
    import jax
    import jax.numpy as jnp

    started = time.perf_counter()
    for name, fn in (("drift", drift), ("diffusion", diffusion)):
        if not callable(fn):
            raise InputError("must be a function (t, y, args)", argument=name, received=fn)
    try:
        t0, t1 = (float(t) for t in t_span)
    except (TypeError, ValueError):
        raise InputError("must be two numbers (t0, t1)", argument="t_span",
                         received=t_span) from None  # fmt: skip
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
        raise InputError("must be two finite times with t1 > t0", argument="t_span",
                         received=t_span)  # fmt: skip
    if noise not in NOISES:
        raise InputError(f"must be one of {NOISES}", argument="noise", received=noise)
    if method not in SDE_METHODS:
        raise InputError(f"must be one of {SDE_METHODS}", argument="method", received=method)
    if paths is not None and (isinstance(paths, bool) or not isinstance(paths, int) or paths < 1):
        raise InputError("must be a positive integer or None", argument="paths", received=paths)
    times = np.asarray(t_eval, dtype=float)
    if times.ndim != 1 or times.size == 0 or np.any(np.diff(times) < 0) or times[0] < t0 \
            or times[-1] > t1:  # fmt: skip
        raise InputError(f"must be increasing times inside [{t0:g}, {t1:g}]",
                         argument="t_eval", received=t_eval)  # fmt: skip
    step = (t1 - t0) / DEFAULT_STEPS if dt is None else dt
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= t1 - t0:
        raise InputError("must be a positive step no longer than the span", argument="dt",
                         received=dt)  # fmt: skip
    reasons: list[str] = []
    with jax.enable_x64(True):
        y0 = jnp.asarray(y0, dtype=jnp.float64)
        if y0.ndim != 1 or not bool(jnp.all(jnp.isfinite(y0))):
            raise InputError("must be a finite 1-D state", argument="y0", received=y0)
        g = jax.eval_shape(diffusion, t0, y0, args)
        if noise == "diagonal" and g.shape != y0.shape:
            raise InputError(f"must return the shape of y0 {y0.shape} for diagonal noise; it"
                             f" returned {g.shape}", argument="diffusion")  # fmt: skip
        if noise == "general" and (len(g.shape) != 2 or g.shape[0] != y0.shape[0]):
            raise InputError(f"must return an ({y0.shape[0]}, m) matrix for general noise; it"
                             f" returned {g.shape}", argument="diffusion")  # fmt: skip
        brownian_shape = y0.shape if noise == "diagonal" else (g.shape[1],)
        additive = _is_additive(diffusion, t0, y0, args)
        chosen = method
        if method == "auto":
            if additive:
                chosen = "shark"
                reasons.append("additive noise (the diffusion's Jacobian in y is zero at y0):"
                               " ShARK, strong order 1.5 with space-time Levy area")  # fmt: skip
            elif noise == "diagonal":
                chosen = "milstein"
                reasons.append("diagonal multiplicative noise: Ito-Milstein, strong order 1")
            else:
                chosen = "euler"
                reasons.append("general multiplicative noise: Euler-Maruyama, strong order 0.5")
        else:
            reasons.append(f"method={method!r} as given")
        if chosen == "shark" and not additive:
            raise InputError("'shark' needs additive noise (a diffusion that does not depend on"
                             " y); use 'milstein' or 'euler'", argument="method",
                             received=method)  # fmt: skip
        if chosen == "milstein" and noise != "diagonal":
            raise InputError("'milstein' needs diagonal noise here; use 'euler'",
                             argument="method", received=method)  # fmt: skip
        if chosen == "heun":
            reasons.append("Heun solves the Stratonovich SDE"
                           + ("" if additive else ": for this multiplicative noise it differs"
                              " from the Ito SDE the other methods solve"))  # fmt: skip
        solver = {"euler": diffrax.Euler, "milstein": diffrax.ItoMilstein,
                  "shark": diffrax.ShARK, "heun": diffrax.Heun}[chosen]()  # fmt: skip
        levy = diffrax.SpaceTimeLevyArea if chosen == "shark" else diffrax.BrownianIncrement
        reasons.append(f"constant steps dt = {step:g} ({math.ceil((t1 - t0) / step)} per path);"
                       " a VirtualBrownianTree per path (reproducible from its key)")  # fmt: skip

        def one_path(path_key):
            brownian = diffrax.VirtualBrownianTree(t0, t1, tol=step / 2, shape=brownian_shape,
                                                   key=path_key, levy_area=levy)  # fmt: skip
            terms = diffrax.MultiTerm(diffrax.ODETerm(drift),
                                      _diffusion_term(diffusion, noise, brownian))  # fmt: skip
            solution = diffrax.diffeqsolve(
                terms, solver, t0, t1, step, y0, args, saveat=diffrax.SaveAt(ts=times),
                stepsize_controller=diffrax.ConstantStepSize(),
                max_steps=math.ceil((t1 - t0) / step) + 2,
            )  # fmt: skip
            return solution.ys, solution.stats["num_steps"]

        keys = jax.random.split(key, paths) if paths is not None else key
        program = jax.jit(jax.vmap(one_path) if paths is not None else one_path)
        start = time.perf_counter()
        compiled = program.lower(keys).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        ys, steps = jax.block_until_ready(compiled(keys))
        run_s = time.perf_counter() - start
    ys = np.asarray(ys)
    count = int(np.max(np.asarray(steps)))
    stats = {"method": chosen, "paths": paths or 1, "steps_per_path": count,
             "drift_evaluations": count * (paths or 1)}  # fmt: skip
    success = bool(np.all(np.isfinite(ys)))
    message = ("reached the end of t_span" if success else
               "non-finite values: the steps are too long for this SDE; try a smaller dt")  # fmt: skip
    plan = Plan(method=chosen, reasons=tuple(reasons),
                settings={"dt": step, "noise": noise, "paths": paths or 1, "t0": t0, "t1": t1,
                          "additive": additive})  # fmt: skip
    return ODESolution(ts=times, ys=ys, stats=stats, success=success, message=message, plan=plan,
                       timings=Timings(compile_s, run_s, time.perf_counter() - started),
                       kind="sde_solution", members=paths)  # fmt: skip
