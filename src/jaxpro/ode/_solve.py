"""``jaxpro.ode.solve``: an initial-value problem on Diffrax, the solver chosen for you.

Method choice (``method='auto'``), each step recorded in the plan:

1. the spectral radius ``rho`` of ``df/dy`` at the start: when an explicit
   solver's stability alone would force more steps over the span (``rho * T /
   3.5``) than ``stiff_steps(n)``, the count past which an implicit solve of the
   ``n`` states costs less (6,300 for 4 states, 22,000 for 64, 207,000 for 400;
   see ``_stiffness``), the problem is stiff: Kvaerno5 (L-stable ESDIRK, 5th order;
   a split pair ``f = (explicit, implicit)`` is solved as its sum, see
   :func:`_stiff_method` for why not KenCarp5);
2. otherwise an explicit solver, Tsit5 (Dopri8 when ``rtol < 1e-8``), is tried
   with a budget of :func:`explicit_budget` steps (at least ``EXPLICIT_BUDGET``,
   twice the crossover for large states, where explicit steps stay cheaper longer). It usually finishes, and that is
   the solution. When it does not, the spectral radius is measured again where it
   stopped; if stability explains the budget running out there, the problem is
   solved again with Kvaerno5 (stiffness that appears later: Robertson).

Programs are compiled once per (function, method, state shape, output times'
shape); ``rtol``, ``atol``, ``t_span``, ``t_eval``'s values, ``y0`` and ``args``
are traced values, so changing them does not compile again.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, NamedTuple

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.errors import InputError
from jaxpro.ode._batch import (
    BATCH_STEPS,
    _batch_outcome,
    _batch_reason,
    _check_batch,
    _members,
    _shared_program,
)
from jaxpro.ode._methods import (
    IMPLICIT_GAINS,
    METHODS,
    NEWTON_KAPPA,
    controller,
    make_solver,
    signature,
    split_parts,
    summed,
)
from jaxpro.ode._solution import ODESolution
from jaxpro.ode._stiffness import (
    largest_spectral_radius,
    spectral_radius,
    stability_steps,
    stiff_steps,
)

__all__ = ["METHODS", "make_solver", "solve"]

EXPLICIT_BUDGET = 20_000
MAX_STEPS = 200_000
TIGHT_RTOL = 1e-8  # below this, the 8th-order explicit solver
MAX_SAVED = 25_000_000  # numbers kept when every step is saved (t_eval=None): 200 MB


def explicit_budget(threshold: float) -> int:
    """Steps the explicit attempt may take when the crossover is ``threshold`` stability
    steps: enough to finish any problem below it (x 1.27 steps each, with room), so
    that running out still means stiffness; at most about two implicit solves' cost."""
    return max(EXPLICIT_BUDGET, int(2 * threshold))


def single_only(f, where: str) -> None:
    """Raise for a split pair where only one function is supported."""
    if split_parts(f) is not None:
        raise InputError(f"a split pair (explicit, implicit) is supported by solve() only; give"
                         f" {where} one function (their sum)", argument="f")  # fmt: skip


def check_settings(y0, method, rtol, atol, max_steps, methods=tuple(METHODS)) -> list:
    """Check ``y0`` (finite numbers), ``method`` (``'auto'`` or one of ``methods``), the
    tolerances and ``max_steps``; returns ``y0``'s leaves."""
    import jax

    leaves = jax.tree.leaves(y0)
    if not leaves:
        raise InputError("must hold at least one number", argument="y0", received=y0)
    if not all(np.all(np.isfinite(np.asarray(leaf, dtype=float))) for leaf in leaves):
        raise InputError("must be finite", argument="y0", received=y0)
    if method != "auto" and method not in methods:
        raise InputError(f"must be 'auto' or one of {tuple(methods)}", argument="method",
                         received=method)  # fmt: skip
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise InputError("must be a number in (0, 1)", argument=name, received=value)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise InputError("must be a positive integer", argument="max_steps", received=max_steps)
    return leaves


def _check(f, t_span, y0, t_eval, method, rtol, atol, max_steps):
    if not callable(f) and split_parts(f) is None:
        raise InputError("must be a function f(t, y, args), or a pair (explicit, implicit) of"
                         " them", argument="f", received=f)  # fmt: skip
    if method == "kencarp5" and split_parts(f) is None:
        raise InputError("'kencarp5' (IMEX) needs f as a pair (explicit part, implicit part)",
                         argument="method", received=method)  # fmt: skip
    try:
        t0, t1 = (float(t) for t in t_span)
    except (TypeError, ValueError):
        raise InputError("must be two numbers (t0, t1)", argument="t_span",
                         received=t_span) from None  # fmt: skip
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise InputError("must be two different finite times", argument="t_span",
                         received=t_span)  # fmt: skip
    leaves = check_settings(y0, method, rtol, atol, max_steps)
    size = sum(int(np.size(leaf)) for leaf in leaves)
    if t_eval is None and size * max_steps > MAX_SAVED:
        raise InputError(
            f"is needed for a state of {size} numbers: saving every step (up to max_steps ="
            f" {max_steps}) could take {8 * size * max_steps / 1e9:.1f} GB; give the output"
            " times, or a smaller max_steps",
            argument="t_eval",
        )
    if t_eval is not None:
        times = np.asarray(t_eval, dtype=float)
        lo, hi = min(t0, t1), max(t0, t1)
        if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
            raise InputError("must be a 1-D array of finite times", argument="t_eval",
                             received=t_eval)  # fmt: skip
        steps = np.diff(times) * np.sign(t1 - t0)
        if np.any(steps < 0) or times.min() < lo or times.max() > hi:
            raise InputError(f"must run from t0 to t1 in order, inside [{lo:g}, {hi:g}]",
                             argument="t_eval", received=t_eval)  # fmt: skip
    return t0, t1


# per state number and step, the most any method keeps: Dopri8's 14 stages and y0, plus one
DENSE_NUMBERS_PER_STEP = 16
MAX_DENSE = 100_000_000  # numbers kept for the interpolant: 800 MB


def _check_dense(dense, y0, max_steps: int) -> None:
    import jax

    if not isinstance(dense, bool):
        raise InputError("must be True or False", argument="dense", received=dense)
    size = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(y0))
    if dense and size * max_steps * DENSE_NUMBERS_PER_STEP > MAX_DENSE:
        raise InputError(
            f"=True keeps every step's stages for a state of {size} numbers: up to max_steps ="
            f" {max_steps} steps that could take"
            f" {8 * size * max_steps * DENSE_NUMBERS_PER_STEP / 1e9:.1f} GB; give a smaller"
            " max_steps, or output times (t_eval) instead",
            argument="dense",
        )


# (function, state shapes, batching) -> where an explicit attempt found it stiff. An
# expert remembers that a model is stiff: Robertson's second call skips the explicit
# attempt that ran 20,000 Tsit5 steps (about half of its 18 ms). Bounded, oldest out.
_STIFF_BEFORE: dict = {}
_STIFF_MEMORY = 64


def _memo_key(f, y0, batched):
    import jax

    return (f, jax.tree.structure(y0), tuple(np.shape(x) for x in jax.tree.leaves(y0)), batched)


def _remember_stiff(key, t_stop: float) -> None:
    _STIFF_BEFORE.pop(key, None)
    _STIFF_BEFORE[key] = t_stop
    while len(_STIFF_BEFORE) > _STIFF_MEMORY:
        _STIFF_BEFORE.pop(next(iter(_STIFF_BEFORE)))


# (f, y0's and args' structure, shapes and dtypes) already found to return y0's shape:
# tracing f again (~0.2 ms for a small model) tells nothing new. Bounded, oldest out.
_RHS_CHECKED: dict = {}
_RHS_MEMORY = 64


def _check_rhs(f, t0, y0, args) -> None:
    import jax

    leaves, treedef = jax.tree.flatten((y0, args))
    key = (f, treedef, signature(leaves))
    if key in _RHS_CHECKED:
        return
    try:
        out = jax.eval_shape(f, t0, y0, args)
    except Exception as error:  # the user's function failed on the initial state
        raise InputError(f"failed on (t0, y0, args): {type(error).__name__}: {error}",
                         argument="f") from error  # fmt: skip
    want = jax.tree.map(lambda x: x.shape, y0)
    got = jax.tree.map(lambda x: x.shape, out)
    if jax.tree.structure(out) != jax.tree.structure(y0) or want != got:
        raise InputError(f"must return dy/dt shaped like y0 {want}; it returned {got}",
                         argument="f")  # fmt: skip
    _RHS_CHECKED[key] = True
    while len(_RHS_CHECKED) > _RHS_MEMORY:
        _RHS_CHECKED.pop(next(iter(_RHS_CHECKED)))


@functools.lru_cache(maxsize=32)
def _program(f, method: str, max_steps: int, with_times: bool, event, batched: str | None,
             dense: bool = False, shared: bool = False):  # fmt: skip
    """The jitted solve: ``run(y0, t0, t1, t_eval, args, rtol, atol)``; ``batched``:
    None, "y0" (a leading member axis on y0) or "y0+args" (on args too), by vmap;
    ``dense``: the solver's interpolant (every step's stages) comes back too;
    ``shared``: the members as one system sharing steps (:func:`_shared_program`)."""
    import diffrax
    import jax
    import optimistix as optx

    if shared:
        return _shared_program(f, method, max_steps, batched)
    solver = make_solver(method)
    parts = split_parts(f)
    if method == "kencarp5":  # the explicit part explicitly, the stiff part implicitly
        term = diffrax.MultiTerm(diffrax.ODETerm(parts[0]), diffrax.ODETerm(parts[1]))
    else:
        term = diffrax.ODETerm(summed(*parts) if parts is not None else f)
    event_obj = None
    if event is not None:

        def cond(t, y, args, **_):
            return event(t, y, args)

        event_obj = diffrax.Event(cond, root_finder=optx.Newton(rtol=1e-12, atol=1e-12))

    def run(y0, t0, t1, t_eval, args, rtol, atol):
        output = diffrax.SubSaveAt(ts=t_eval) if with_times else diffrax.SubSaveAt(steps=True)
        saveat = diffrax.SaveAt(subs=[output, diffrax.SubSaveAt(t1=True)], dense=dense)
        solution = diffrax.diffeqsolve(
            term, solver, t0, t1, None, y0, args, saveat=saveat,
            stepsize_controller=controller(method, rtol, atol, t_eval if with_times else None),
            max_steps=max_steps, throw=False, event=event_obj,
        )  # fmt: skip
        triggered = (jax.numpy.any(jax.numpy.asarray(jax.tree.leaves(solution.event_mask)))
                     if event is not None else False)  # fmt: skip
        return (solution.ts, solution.ys, solution.result._value, solution.stats,
                triggered, solution.interpolation if dense else None)  # fmt: skip

    if batched is not None:
        run = jax.vmap(run, in_axes=(0, None, None, None, 0 if batched == "y0+args" else None,
                                     None, None))  # fmt: skip
    return jax.jit(run)


def _compiled(program, inputs) -> tuple[Any, float]:
    """``program`` compiled for ``inputs`` and the seconds spent (0 when jaxpro's
    executable cache has it). ``program.lower(...).compile()`` on every call had
    retraced and re-lowered the solve (~0.2 ms of a 3 ms warm Robertson solve) only
    to find the executable JAX had already compiled."""
    import jax

    from jaxpro import _cache

    leaves, treedef = jax.tree.flatten(inputs)
    key = ("ode", program, treedef, signature(leaves))
    return _cache.compiled(key, lambda: program.lower(*inputs).compile())


def _attempt(f, method, max_steps, y0, t0, t1, t_eval, args, rtol, atol, event, clock, batched,
             dense=False, shared=False):  # fmt: skip
    import jax

    program = _program(f, method, max_steps, t_eval is not None, event, batched, dense, shared)
    # NumPy float64 scalars and arrays (x64 is on here): jnp.float64(x) would be an
    # eager device conversion each, ~40 us apiece on a warm call
    times = np.asarray(t_eval if t_eval is not None else [t0], dtype=np.float64)
    inputs = (y0, np.float64(t0), np.float64(t1), times, args, np.float64(rtol),
              np.float64(atol))  # fmt: skip
    compiled, compile_s = _compiled(program, inputs)
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*inputs))
    clock["compile"] += compile_s
    clock["run"] += time.perf_counter() - start
    return out


class _Outcome(NamedTuple):
    """One solve's results on the host."""

    ts: np.ndarray
    ys: Any
    success: bool
    message: str
    stats: dict
    event_time: float | None
    y_end: Any  # the state where the solver stopped (a failed member's, for a batch)
    t_end: float
    extra: dict
    interpolation: Any = None  # Diffrax's dense interpolant (dense=True), on the device


def _outcome(out, method: str, t_eval, y0, t0: float, batched, shared=False) -> _Outcome:
    """The host-side results of a compiled solve."""
    import diffrax
    import jax

    if batched is not None:
        return _batch_outcome(out, method, shared)
    ts_list, ys_list, code, stats, triggered, interpolation = out
    ts, ys = np.asarray(ts_list[0]), jax.tree.map(np.asarray, ys_list[0])
    t_end = float(np.asarray(ts_list[1])[0])
    y_end = jax.tree.map(lambda a: np.asarray(a)[0], ys_list[1])
    if t_eval is None:  # steps: padded with inf after the last one; t0 first, as SciPy
        keep = np.isfinite(ts)
        ts = np.concatenate([[t0], ts[keep]])
        ys = jax.tree.map(lambda a, a0: np.concatenate([np.asarray(a0)[None], a[keep]]), ys, y0)
    success_code = int(diffrax.RESULTS.successful._value)
    event_code = int(diffrax.RESULTS.event_occurred._value)
    code = int(code)
    triggered = bool(triggered)
    success = code in (success_code, event_code)
    steps = int(stats["num_steps"])
    if success:
        message = "terminating event" if triggered else "reached the end of t_span"
    elif code == int(diffrax.RESULTS.max_steps_reached._value):
        message = f"stopped at t = {t_end:.6g}: max_steps ({steps}) reached"
        if METHODS[method][2]:
            message += ("; the problem may be stiff: try method='kvaerno5' (or 'auto'), or"
                        " raise max_steps")  # fmt: skip
    else:
        message = f"stopped at t = {t_end:.6g}: {diffrax.RESULTS[code].__str__()}"
    table = {
        "method": method,
        "steps": steps,
        "accepted": int(stats["num_accepted_steps"]),
        "rejected": int(stats["num_rejected_steps"]),
        "function_evaluations": steps * METHODS[method][1],
    }
    return _Outcome(ts, ys, success, message, table, t_end if triggered else None, y_end, t_end,
                    {}, interpolation)  # fmt: skip


def _ok(codes: np.ndarray) -> np.ndarray:
    import diffrax

    return np.isin(codes, [int(diffrax.RESULTS.successful._value),
                           int(diffrax.RESULTS.event_occurred._value)])  # fmt: skip


def solve(
    f,
    t_span,
    y0,
    t_eval=None,
    args=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    events=None,
    dense: bool = False,
    *,
    batch: bool = False,
    batch_args: bool = False,
    batch_steps: str = "auto",
    max_steps: int = MAX_STEPS,
) -> ODESolution:
    """Solve ``dy/dt = f(t, y, args)`` from ``y(t0) = y0`` over ``t_span = (t0, t1)``.

    Args:
        f: the right-hand side ``f(t, y, args)``, written with ``jax.numpy``; ``y``
            has the structure of ``y0`` (an array or a pytree of arrays). Or a
            split pair ``(explicit, implicit)`` whose sum is the right-hand side,
            the stiff part (diffusion, fast kinetics) second: ``method='kencarp5'``
            (IMEX) treats only that part implicitly; "auto" solves the sum.
        t_span: ``(t0, t1)``; ``t1 < t0`` integrates backwards.
        y0: the initial state.
        t_eval: times to report the solution at (in order, inside ``t_span``);
            default: every accepted step.
        args: anything ``f`` needs (a pytree; traced, so new values do not compile again).
        method: "auto" (see the module notes), "tsit5", "dopri5", "dopri8", "kvaerno5"
            or "kencarp5" (IMEX, for a split ``f``).
        rtol, atol: relative and absolute tolerances of the local error.
        events: ``event(t, y, args) -> scalar``: the solve stops where it crosses
            zero (located by Newton's method), and ``event_time`` says when.
        dense: keep the solver's own interpolant (each step's stages), so that
            ``solution.evaluate(t)`` gives the state at any time inside the
            integrated span to the solver's order of accuracy (``solve_ivp``'s
            ``dense_output``). It costs memory for every step up to ``max_steps``.
        batch: ``y0``'s leaves carry a leading axis of B members, solved at once
            (``jax.vmap``); needs ``t_eval``; ``ys`` is ``(B, len(ts), ...)``,
            ``extra["member_success"]`` says which members finished.
        batch_args: ``args``' leaves carry the same member axis (one parameter set
            per member); otherwise all members share ``args``.
        batch_steps: "auto", "shared" or "own". "shared": the members are one
            system and share steps; a step is accepted only when every member's
            error (its RMS over its state) is within tolerance, so each member's
            local error is held to its tolerance at every step. About 3x faster than solving each member
            with its own steps (a ``jax.vmap``) and quicker to compile; explicit
            methods only. "own": each member takes its own steps (vmap; members'
            answers then equal their solves one by one). "auto": shared for an
            explicit method without ``events`` or ``dense``, else own.
        max_steps: the most steps the solver may take.

    Returns:
        An :class:`ODESolution`; ``success`` is False (and ``message`` says why and
        what to try) when the solver stopped early.

    Raises:
        InputError: bad arguments, a non-finite ``y0``, or an ``f`` that fails or
            returns the wrong shape.
    """
    import jax
    import jax.numpy as jnp

    from jaxpro._cache import enable_persistent_cache

    started = time.perf_counter()
    t0, t1 = _check(f, t_span, y0, t_eval, method, rtol, atol, max_steps)
    _check_dense(dense, y0, max_steps)
    batched = _check_batch(y0, args, t_eval, batch, batch_args)
    if batch_steps not in BATCH_STEPS:
        raise InputError(f"must be one of {BATCH_STEPS}", argument="batch_steps",
                         received=batch_steps)  # fmt: skip
    if batch_steps == "shared" and (
        events is not None
        or dense
        or batched is None
        or (method in METHODS and not METHODS[method][2])
    ):
        raise InputError("'shared' needs batch=True and an explicit method, without events"
                         " or dense output", argument="batch_steps",
                         received=batch_steps)  # fmt: skip
    enable_persistent_cache()
    if events is not None and not callable(events):
        raise InputError("must be a function event(t, y, args)", argument="events",
                         received=events)  # fmt: skip
    parts = split_parts(f)  # a tuple: hashable, for the compiled-program cache
    whole = summed(*parts) if parts is not None else f
    clock = {"compile": 0.0, "run": 0.0}
    reasons: list[str] = []
    with jax.enable_x64(True):
        y0 = jax.tree.map(_float64, y0)
        members = _members(y0, args, batched)
        for part in parts if parts is not None else (f,):
            _check_rhs(part, t0, *members[0])
        span = t1 - t0
        chosen = method
        # members share steps (one system) with an explicit method, unless asked
        # otherwise or events/dense output need each member's own solve
        sharing = (batched is not None and batch_steps != "own" and events is None
                   and not dense)  # fmt: skip
        if batched is not None:
            reasons.append(_batch_reason(len(jax.tree.leaves(y0)[0]), batch_steps, events, dense))
        if method == "auto":
            explicit = "dopri8" if rtol < TIGHT_RTOL else "tsit5"
            radius = largest_spectral_radius(whole, t0, members)
            needed = stability_steps(radius, span)
            size = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(members[0][0]))
            threshold = stiff_steps(size)
            budget = explicit_budget(threshold)
            memo = _STIFF_BEFORE.get(_memo_key(whole, y0, batched))
            if needed <= threshold and memo is not None:
                chosen = _stiff_method(parts, reasons)
                reasons.insert(
                    len(reasons) - 1,
                    f"stiff: an earlier call of this function in this process turned stiff at"
                    f" t = {memo:.4g} (its explicit attempt ran out of steps), so no explicit"
                    " attempt this time (method='tsit5' forces the explicit solver)",
                )
            elif needed > threshold:
                reasons.append(
                    f"stiff: the Jacobian's spectral radius at t0 is {radius:.3g}"
                    + (f" (the largest of {len(members)} members sampled)" if batched else "")
                    + ", so an explicit"
                    f" solver's stability alone needs ~{needed:.3g} steps (> {threshold:.3g},"
                    f" where an implicit solve of {size} states costs less): an implicit solver"
                )
                chosen = _stiff_method(parts, reasons)
            else:
                reasons.append(
                    f"non-stiff at t0 (spectral radius {radius:.3g}: stability needs"
                    f" ~{needed:.3g} explicit steps, under the {threshold:.3g} where an implicit"
                    f" solve of {size} states would cost less): {explicit} with a budget of"
                    f" {budget} steps"
                    + (f" (8th order: rtol {rtol:g} < {TIGHT_RTOL:g})" if explicit == "dopri8"
                       else "")
                )  # fmt: skip
                out = _attempt(whole, explicit, min(budget, max_steps), y0, t0, t1, t_eval,
                               args, rtol, atol, events, clock, batched, dense, sharing)  # fmt: skip
                result = _outcome(out, explicit, t_eval, y0, t0, batched, sharing)
                chosen = explicit
                if not result.success:
                    t_stop, y_stop = result.t_end, jax.tree.map(jnp.asarray, result.y_end)
                    stopped_args = args
                    if batched == "y0+args":
                        which = result.extra["first_failed"]
                        stopped_args = jax.tree.map(lambda a: a[which], args)
                    late = spectral_radius(whole, t_stop, y_stop, stopped_args)
                    if "y_end_all" in result.extra:  # shared steps: any member may be stiff
                        stopped = _members(result.extra["y_end_all"], args, batched)
                        late = max(late, largest_spectral_radius(whole, t_stop, stopped))
                    later = stability_steps(late, t1 - t_stop)
                    reasons.append(
                        f"{explicit} stopped at t = {t_stop:.4g} after {result.stats['steps']}"
                        f" steps; there the spectral radius is {late:.3g} (stability needs"
                        f" ~{later:.3g} more explicit steps)"
                    )
                    if later > budget / 10 or not math.isfinite(later):
                        _remember_stiff(_memo_key(whole, y0, batched), t_stop)
                        reasons.append("stiff after all: solved again from t0 with an implicit"
                                       " solver")  # fmt: skip
                        chosen = _stiff_method(parts, reasons)
                    else:
                        reasons.append(f"not stiff there: solved again with {explicit} and"
                                       f" max_steps = {max_steps}")  # fmt: skip
                    result = None
                if result is not None:
                    return _finish(result, chosen, reasons, rtol, atol, started, clock, t0, t1)
        else:
            reasons.append(f"method={method!r} as given")
        program_f = parts if chosen == "kencarp5" else whole
        # an implicit solve's Jacobian and LU would cover every member at once (B n)^3:
        # implicit methods solve members one by one (vmap)
        shared = sharing and METHODS[chosen][2]
        if batch_steps == "shared" and not shared:
            reasons.append(f"batch_steps='shared' does not apply to {chosen} (implicit): the"
                           " members were solved one by one (vmap)")  # fmt: skip
        out = _attempt(program_f, chosen, max_steps, y0, t0, t1, t_eval, args, rtol, atol, events,
                       clock, batched, dense, shared)  # fmt: skip
        result = _outcome(out, chosen, t_eval, y0, t0, batched, shared)
    return _finish(result, chosen, reasons, rtol, atol, started, clock, t0, t1)


def _float64(a):
    """``a`` as float64: a JAX float64 array as it is, anything else through NumPy (a
    ``jnp.asarray`` conversion is an eager XLA op, compiled on its first use in a
    process: ~30 ms of a cold solve)."""
    import jax

    if isinstance(a, jax.Array) and a.dtype == np.float64:
        return a
    return np.asarray(a, dtype=np.float64)


def _stiff_method(parts, reasons: list[str]) -> str:
    """The implicit solver for a stiff problem (its reason appended): Kvaerno5, a split
    pair included. Diffrax's KenCarp5 (IMEX) is not chosen for a stiff pair: on a
    stiff reaction-diffusion problem (Fisher-KPP, 50 cells, D = 0.5) it took 3,000
    steps to reach t = 5e-5 where Kvaerno5 on the sum took 142 steps to t = 5 (the
    other KenCarp orders and either term order alike, and with Newton kappa 0.01 or
    0.1); method='kencarp5' runs it. (Prothero-Robinson, L = 1e5, once
    counted against Kvaerno5 at 1.2e-3 off at rtol 1e-6: that was its interpolant
    between steps, not its steps; it now steps onto the output times, see
    ``_methods.controller``.)"""
    reasons.append("Kvaerno5 (implicit, L-stable, 5th order)" + (
        " on the sum of the split pair (Diffrax's IMEX KenCarp5 stalled on stiff"
        " reaction-diffusion in our tests: method='kencarp5' forces it)" if parts else ""))  # fmt: skip
    return "kvaerno5"


def _finish(result, chosen, reasons, rtol, atol, started, clock, t0, t1) -> ODESolution:
    ts, ys, success, message, stats, event_time = result[:6]
    extra = {k: v for k, v in result.extra.items() if k != "first_failed"}
    plan = Plan(method=chosen, reasons=tuple(reasons),
                settings={"rtol": rtol, "atol": atol, "t0": t0, "t1": t1,
                          "controller": "PID (Diffrax)" if METHODS[chosen][2]
                          else f"PI (Diffrax, pcoeff {IMPLICIT_GAINS['pcoeff']}, icoeff"
                               f" {IMPLICIT_GAINS['icoeff']}); Newton kappa {NEWTON_KAPPA}"})  # fmt: skip
    timings = Timings(clock["compile"], clock["run"], time.perf_counter() - started)
    return ODESolution(ts=ts, ys=ys, stats=stats, success=success, message=message, plan=plan,
                       timings=timings, event_time=event_time, extra=extra,
                       members=stats.get("members"),
                       interpolation=result.interpolation)  # fmt: skip
