"""What curve_fit, least_squares and fit share: data, settings, stages and the solve.

:func:`prepare_curve_data` validates and lays out x, y and sigma (SciPy's
conventions included), :func:`resolve_settings` turns the keyword arguments
into :class:`Settings`, and :func:`run_curve` takes a model through the whole
run: how it can be run (as written, translated from NumPy or on the host,
``_numpy_model``), the data layout (direct, chunked, sharded or split across
processes), the warm start on a subsample, the compiled solve and LM's
fallback to TRF. The SciPy-signature wrappers live in ``_api``; the named-
parameter entry point in ``_fit``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from jaxpro import errors
from jaxpro.errors import InputError, ModelError, NumPyModelWarning
from jaxpro.fit import _checks, _data, _engine, _host_loop, _numpy_model
from jaxpro.fit._engine import Outcome, Solved
from jaxpro.fit._losses import check_loss
from jaxpro.fit._model import curve_residual, trace_check
from jaxpro.io import as_array

__all__ = [
    "MESSAGES",
    "CurveData",
    "CurveRun",
    "Settings",
    "prepare_curve_data",
    "resolve_settings",
    "run_curve",
    "scaled_covariance",
]

MESSAGES = {
    -3: "The model returned non-finite values at the starting point.",
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}


@dataclass(frozen=True)
class CurveData:
    """Validated curve-fitting data (float64, NaN rows removed if asked)."""

    x: np.ndarray  # (n,) or (k, n)
    y: np.ndarray  # (n,)
    weights: np.ndarray | None  # 1/sigma, (n,)
    chol: np.ndarray | None  # lower Cholesky factor of a 2-D sigma
    kept: np.ndarray | None  # indices of rows kept by nan_policy='omit'
    x_lead: tuple | None = None  # curve_fit's x of 3 or more dimensions: its leading shape

    @property
    def n(self) -> int:
        return self.y.shape[0]


def prepare_curve_data(
    xdata,
    ydata,
    sigma,
    *,
    nan_policy=None,
    x_name="xdata",
    y_name="ydata",
    scipy_shapes: bool = False,
) -> CurveData:
    """Validate x, y and sigma; apply ``nan_policy`` (None/'raise' rejects NaN/Inf, 'omit' drops them).

    Args:
        x_name, y_name: the caller's names for x and y, quoted in errors.
        scipy_shapes: curve_fit's conventions too: x of any number of
            dimensions (points on the last axis; the model sees that shape),
            ``xdata=None`` (the model then gets the point index 0..n-1 and is
            expected to ignore it, as SciPy passes None), and a scalar or
            one-element ``ydata`` broadcast against the points.
    """
    if nan_policy not in (None, "raise", "omit", "propagate"):
        # SciPy's wording after jaxpro's prefix (SciPy's tests match on it)
        raise InputError(
            "nan_policy must be one of {None, 'raise', 'omit'}",
            argument="nan_policy",
            received=nan_policy,
        )
    if nan_policy == "propagate":
        raise InputError(
            "`nan_policy='propagate'` is not supported by this function: it would return NaN"
            " parameters; use 'omit' to drop incomplete rows",
            argument="nan_policy",
        )
    omit = nan_policy == "omit"
    x_lead = None
    try:
        y = as_array(
            ydata, argument=y_name, ndim=(0, 1) if scipy_shapes else 1, allow_nonfinite=omit
        )
        if scipy_shapes and xdata is None:
            x = np.arange(max(y.size, 1), dtype=np.float64)
        else:
            x_ndim = None if scipy_shapes else (1, 2)
            x = as_array(xdata, argument=x_name, ndim=x_ndim, allow_nonfinite=omit)
            if x.ndim == 0:
                raise InputError(
                    "must have at least one dimension", argument=x_name, received=xdata
                )
        if x.ndim > 2:  # points on the last axis: rows for the engine, the shape for the model
            x_lead = x.shape[:-1]
            x = x.reshape(-1, x.shape[-1])
        if scipy_shapes and y.size == 1 and x.shape[-1] != 1:
            y = np.full(x.shape[-1], y.reshape(-1)[0])  # SciPy broadcasts ydata
    except InputError as error:
        if nan_policy == "raise" and "non-finite" in str(error):
            raise InputError(
                f"The input contains nan values: {error}", argument=error.argument
            ) from None
        raise
    if x.shape[-1] != y.shape[0]:
        raise InputError(
            f"{x_name} has {x.shape[-1]} points along its last axis but {y_name} has {y.shape[0]}",
            argument=x_name,
            received=xdata,
        )
    weights = chol = None
    sig = None
    if sigma is not None:
        sig = as_array(sigma, argument="sigma", ndim=(0, 1, 2), allow_nonfinite=omit)
        if sig.size == 1:
            # SciPy: one value is every point's standard deviation.
            sig = np.full(y.shape[0], sig.item())
        if sig.shape not in ((y.shape[0],), (y.shape[0], y.shape[0])):
            raise InputError(
                f"must have shape ({y.shape[0]},) or ({y.shape[0]}, {y.shape[0]})",
                argument="sigma",
                received=sigma,
            )
    kept = None
    if omit:
        good = np.isfinite(y) & np.all(np.isfinite(np.atleast_2d(x)), axis=0)
        if sig is not None and sig.ndim == 1:
            good &= np.isfinite(sig)
        if not np.all(good):
            kept = np.flatnonzero(good)
            y, x = y[kept], x[..., kept]
            if sig is not None:
                sig = sig[kept] if sig.ndim == 1 else sig[np.ix_(kept, kept)]
    if y.shape[0] == 0:
        raise InputError("no finite data points left", argument=y_name)
    if sig is not None:
        if sig.ndim == 1:
            bad = np.flatnonzero(~(sig > 0))
            if bad.size:
                raise InputError(
                    f"must be > 0 everywhere; index {int(bad[0])} has {sig[bad[0]]:g}",
                    argument="sigma",
                )
            weights = 1.0 / sig
        else:
            try:
                chol = np.linalg.cholesky(sig)
            except np.linalg.LinAlgError:
                raise InputError(
                    "a 2-D sigma must be a symmetric positive-definite covariance matrix",
                    argument="sigma",
                ) from None
    return CurveData(np.ascontiguousarray(x), np.ascontiguousarray(y), weights, chol, kept, x_lead)


@dataclass(frozen=True)
class Settings:
    """Resolved solver settings (after defaults and checks)."""

    method: str
    loss: Any
    f_scale: float
    ftol: float
    xtol: float
    gtol: float
    max_nfev: int
    jac_scale: bool
    x_scale: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    # which of ftol, xtol, gtol took jaxpro's default (not given by the caller):
    # SciPy's own loop on the host (_host_loop) uses SciPy's defaults there
    defaulted: tuple[bool, bool, bool] = (False, False, False)

    @property
    def bounded(self) -> bool:
        return bool(np.any(np.isfinite(self.lb)) or np.any(np.isfinite(self.ub)))


def resolve_settings(n_params, **options) -> Settings:
    """Check and complete the solver options (see :func:`_resolve_settings`).

    The common calls (scalar or no bounds, named loss, default scales, plain
    numbers) are remembered: a warm 1,000-point fit takes ~300 us, of which
    resolving afresh took ~13. The remembered Settings' arrays are read-only.
    """
    # dogbox warns on every call; arrays and other objects may not compare by value
    if options.get("method") == "dogbox" or not all(map(_plain, options.values())):
        return _resolve_settings(n_params, **options)
    # types are part of the key: 100 and 100.0 (or True) are checked differently
    key = (n_params, *sorted((name, _typed(value)) for name, value in options.items()))
    return _remembered_settings(key, tuple(sorted(options.items())))


_PLAIN = (str, int, float, type(None))


def _plain(value) -> bool:
    if type(value) is tuple:
        return all(type(v) in _PLAIN for v in value)
    return type(value) in _PLAIN


def _typed(value):
    if type(value) is tuple:
        return tuple((type(v), v) for v in value)
    return type(value), value


@functools.lru_cache(maxsize=256)
def _remembered_settings(key, options) -> Settings:
    settings = _resolve_settings(key[0], **dict(options))
    for array in (settings.x_scale, settings.lb, settings.ub):
        array.setflags(write=False)
    return settings


def _resolve_settings(
    n_params,
    *,
    method=None,
    bounds=(-np.inf, np.inf),
    loss="linear",
    f_scale=1.0,
    ftol=None,
    xtol=None,
    gtol=None,
    max_nfev=None,
    x_scale=None,
) -> Settings:
    loss = check_loss(loss, f_scale)
    lb, ub = _checks.check_bounds(bounds, n_params)
    bounded = bool(np.any(np.isfinite(lb)) or np.any(np.isfinite(ub)))
    method = _checks.check_method(method, bounded, loss != "linear")
    jac_scale, scales = _checks.check_x_scale(x_scale, n_params, method)
    defaulted = (ftol is None, xtol is None, gtol is None)
    ftol = _checks.check_tolerance(_checks.FTOL if ftol is None else ftol, "ftol")
    xtol = _checks.check_tolerance(_checks.XTOL if xtol is None else xtol, "xtol")
    gtol = _checks.check_tolerance(_checks.GTOL if gtol is None else gtol, "gtol")
    _checks.check_tolerances(method, ftol, xtol, gtol)
    return Settings(
        method=method,
        loss=loss,
        f_scale=float(f_scale),
        ftol=ftol,
        xtol=xtol,
        gtol=gtol,
        max_nfev=_checks.check_max_nfev(max_nfev, n_params),
        jac_scale=jac_scale,
        x_scale=scales,
        lb=lb,
        ub=ub,
        defaulted=defaulted,
    )


def _start(theta0: np.ndarray, settings: Settings) -> np.ndarray:
    """TRF needs a strictly feasible start: nudge points sitting on a bound inside."""
    if settings.method != "trf":
        return theta0
    lb, ub = settings.lb, settings.ub
    start = theta0.copy()
    on_lower = start <= lb
    on_upper = start >= ub
    start[on_lower] = np.nextafter(lb[on_lower], ub[on_lower])
    start[on_upper] = np.nextafter(ub[on_upper], lb[on_upper])
    return start


# Long data start from a fit to a random subsample: the subsample's optimum
# is within a few standard errors of the full one, so the full-data solver
# needs about three passes (Gauss-Newton converges quadratically from there)
# instead of the seven to twelve it needs from a rough p0, and the
# subsample's R preconditions the first chunked pass.
WARM_START_MIN = 1 << 16
SUBSAMPLE = _data.DIRECT_MAX  # small enough for the exact, cheap-to-compile direct path
REDESCENDING = ("cauchy", "arctan")


@dataclass(frozen=True)
class CurveRun:
    """What :func:`run_curve` did: the solve and how it got there."""

    solved: Solved
    layout: _data.Layout
    settings: Settings  # as finally used (TRF after a fallback)
    fallback: str | None = None
    warm_start: dict | None = None
    first_method: str | None = None  # the method chosen before any fallback
    n: int = 0  # points in the fit (all processes together)
    processes: int = 1
    route: _numpy_model.ModelPath | None = None  # how the model ran (JAX, translated, host)
    host_loop: str | None = None  # SciPy's driver that iterated on the host (_host_loop), if any
    fvec: np.ndarray | None = None  # the weighted residuals at the answer, where already known
    compact: str | None = None  # what the compact LM did, where it ran first (for the plan)
    compact_finished: bool = False  # the compact LM produced the answer


@functools.lru_cache(maxsize=64)
def _x_shaped(function: Callable, lead: tuple) -> Callable:
    """``function(x, *p)`` given x as ``(prod(lead), n)`` rows, called with x of shape ``lead + (n,)``."""

    def shaped(x, *params):  # x: an array (curve_residual stacks row tuples first)
        return function(x.reshape(*lead, x.shape[-1]), *params)

    return shaped


HOST_CHUNK_MAX = 1 << 16  # points per host evaluation, at most: measured fastest (L2-sized arrays)


def _host_chunk(n: int) -> int:
    """Chunk size for a model run on the host: a power of two, one chunk up to HOST_CHUNK_MAX."""
    return min(HOST_CHUNK_MAX, 1 << max(12, (n - 1).bit_length()))


def _lead(sample: CurveData):
    """A subsample's ``(x, y, w)`` for :func:`jaxpro.fit._data.build`'s ``lead``."""
    return sample.x, sample.y, sample.weights


def _subsample(data: CurveData, size: int) -> CurveData:
    """One random point from each of ``size`` equal strata of the data (deterministic)."""
    n = data.n
    rng = np.random.default_rng(20261125)
    edges = (np.arange(size + 1) * n) // size
    index = edges[:-1] + (rng.random(size) * (edges[1:] - edges[:-1])).astype(np.int64)
    weights = None if data.weights is None else data.weights[index]
    return CurveData(data.x[..., index], data.y[index], weights, None, None)


def run_curve(
    model: Callable,
    data: CurveData,
    theta0: np.ndarray,
    settings: Settings,
    jac=None,
    *,
    auto_method: bool = False,
    what: str = "model",
) -> CurveRun:
    """Lay out the data, check the model, compile (cached) and solve. Call inside float64().

    Args:
        auto_method: the method was chosen by jaxpro, so a failed LM may be
            retried with TRF.
    """
    processes = _process_count()
    distributed = processes > 1
    if data.x_lead is not None:
        model = _x_shaped(model, data.x_lead)
        jac = None if jac is None else _x_shaped(jac, data.x_lead)
    known = _numpy_model.known_curve(model, jac, data.n)
    if known is not None and _host_loop.used_for(known, data.n, settings, distributed):
        # a function already found host-only, on small data: SciPy's loop
        # needs none of the compiled path's layout (40 us at 1e4 points)
        return _host_loop.run_curve(model, jac, data, theta0, settings, known, auto_method, what)
    if distributed:
        layout, arrays, n_total, warm_sample = _distributed_layout(data)
    else:
        n_total = data.n
        warm_sample = _subsample(data, SUBSAMPLE) if data.n >= WARM_START_MIN else None
        # the warm start's points also lead the padded region, for the compact
        # LM's one shared loop (_compact_single._shared_stages_fn); the full engine
        # reads the same arrays without them (views)
        lead_layout, lead_arrays = _data.build(
            data.x,
            data.y,
            data.weights,
            data.chol,
            shards=_shards(data.n),
            lead=None if warm_sample is None else _lead(warm_sample),
        )
        layout, arrays = _data.without_lead(lead_layout, lead_arrays)
    sample = arrays["block"] if layout.kind == "direct" else _first_chunk(arrays["regions"][0])
    x_user = data.x if data.x_lead is None else data.x.reshape(*data.x_lead, -1)
    route = _numpy_model.curve_model(model, jac, x_user, data.n, theta0, sample, what)
    if _host_loop.used_for(route, n_total, settings, distributed):
        return _host_loop.run_curve(model, jac, data, theta0, settings, route, auto_method, what)
    if route.path == _numpy_model.HOST and layout.kind == "chunked" and not distributed:
        # each chunk is a host round trip: few large chunks, as SciPy evaluates
        # the whole array (padding is evaluated too, so no bigger than needed)
        layout, arrays = _data.build(
            data.x,
            data.y,
            data.weights,
            data.chol,
            shards=_shards(data.n),
            chunk=_host_chunk(data.n),
        )
    residual = curve_residual(route.model, route.jac)
    shape = route.shape or trace_check(residual, theta0, sample, what=what)
    expected = sample["y"].shape
    if shape != expected:
        raise ModelError(
            f"{what} returned shape {shape} for {expected[0]} points; expected {expected}"
        )
    main = (_engine.StageSpec(layout, settings.loss), _stage_run(arrays, n_total, settings))
    # Cauchy and arctan are redescending (non-convex): from a rough start every
    # point looks like an outlier and the fit can settle anywhere. Experts
    # start them from a Huber fit; jaxpro does the same.
    pre_loss = "huber" if settings.loss in REDESCENDING else settings.loss
    first = None
    if layout.kind == "chunked" and warm_sample is not None:
        small = warm_sample
        small_layout, small_arrays = _data.build(small.x, small.y, small.weights)
        first = (
            _engine.StageSpec(small_layout, pre_loss),
            _stage_run(small_arrays, small.n, settings),
        )
    elif pre_loss != settings.loss:
        first = (_engine.StageSpec(layout, pre_loss), _stage_run(arrays, n_total, settings))
    stages = (main,) if first is None else (first, main)
    compact_stages = stages
    if first is not None and not distributed and lead_layout.lead:
        compact_stages = (
            (first[0], replace(first[1], data={})),  # its points lead the main stage's data
            (
                _engine.StageSpec(lead_layout, settings.loss),
                _stage_run(lead_arrays, n_total, settings),
            ),
        )
    start = _start(theta0, settings)
    use_compact = auto_method and not distributed and _compact_first(settings, layout, route, data)
    solved, compact = _solve_compact_first(
        residual, settings, stages, start, use_compact, compact_stages
    )
    out = solved.outcome
    if out.status == -3:
        raise ModelError(_nonfinite_message(route.model, data, theta0, route.jac, what))
    warm_info = None
    if first is not None:
        warm_info = {
            "points": first[1].n_rows,
            "loss": pre_loss if isinstance(pre_loss, str) else "custom",
            "nfev": out.first_nfev,
            "status": out.first_status,
            "used": out.first_status > 0,
        }
    fallback = None
    first_method = settings.method
    trouble = _lm_trouble(out, n_total) if auto_method and settings.method == "lm" else None
    if trouble is not None:
        # LM can wander off on saturating models (NIST BoxBOD from its far
        # start: b2 -> 27, the model flat); TRF's reflective steps and scaling
        # recover. Only when the method was left to jaxpro: an explicit
        # method='lm' is respected. The better of the two answers is kept.
        trf = replace(settings, method="trf")
        retry = _solve(residual, trf, stages, _start(theta0, trf))
        better = retry.outcome.status > 0 and (out.status <= 0 or retry.outcome.cost <= out.cost)
        if better:
            settings = trf
            fallback = f"LM {trouble}; TRF was run instead and found a better fit"
        else:
            fallback = f"LM {trouble}; TRF was tried too and did no better"
        solved = _merged(solved, retry, retry if better else solved)
    if needs_interior_opinion(out, settings, auto_method):
        free = unbounded_lm(settings)
        use_compact = not distributed and _compact_first(free, layout, route, data)
        retry, _ = _solve_compact_first(residual, free, stages, theta0, use_compact, compact_stages)
        kept = interior_answer(retry.outcome, settings, out)
        fallback = interior_reason(out, retry.outcome, kept)
        if kept:
            settings = replace(settings, method="lm")
        solved = _merged(solved, retry, retry if kept else solved)
    if route.path == _numpy_model.HOST:
        warn_host(what, route, solved.run_seconds)
    return CurveRun(
        solved,
        layout,
        settings,
        fallback,
        warm_info,
        first_method,
        n_total,
        processes,
        route,
        compact=None if compact is None else _compact_reason(compact, settings.method),
        compact_finished=compact is not None and compact[1],
    )


def _compact_first(settings: Settings, layout: _data.Layout, route, data: CurveData) -> bool:
    """Whether a single fit goes first through the compact LM (:mod:`jaxpro.fit._compact`).

    Its program compiles in a third to two thirds of the full LM's time
    (first call of a 1,000-point decay 0.26 against 0.78 s, of a million
    points 0.7 against 1.1 s, on 2 cores), takes less memory to compile, and
    runs as fast or faster (0.64x the time at 4,000 points, two Gaussians;
    0.96-0.99x on chunks). Only where it is the same problem LM would solve
    (unbounded least squares with ``x_scale='jac'``, p <= 8), in one process on one device,
    with a diagonal or no sigma and a model JAX runs (not through host
    callbacks). Above ``WARM_START_MIN`` points it has its own warm start on
    the same subsample.
    """
    from jaxpro.fit import _compact

    bounded = bool(np.isfinite(settings.lb).any() or np.isfinite(settings.ub).any())
    p = np.shape(settings.lb)[0]
    return (
        _compact.eligible(settings.method, settings.loss, settings.jac_scale, bounded, p)
        and not bounded
        and layout.shards == 1
        and data.chol is None
        and route.path != _numpy_model.HOST
    )


def _solve_compact_first(
    residual, settings: Settings, stages, start, use_compact: bool, compact_stages=None
) -> tuple[Solved, tuple[Solved, bool] | None]:
    """Solve, through the compact LM first where ``use_compact``; the full method if it gives up.

    Args:
        compact_stages: the compact LM's stages where they differ from
            ``stages`` (a warm start's points leading the main stage's data).

    Returns:
        ``(solved, compact)``: ``compact`` is ``(the compact LM's solve, whether it
        finished)``, or None where it was not tried.
    """
    if use_compact:
        compact = replace(settings, method="compact")
        tried = _solve(residual, compact, compact_stages or stages, start)
        if tried.outcome.status > 0:
            return tried, (tried, True)
        # the compact LM gave up: its time and program count too
        return _merged(tried, _solve(residual, settings, stages, start)), (tried, False)
    return _solve(residual, settings, stages, start), None


def needs_interior_opinion(out: Outcome, settings: Settings, auto_method: bool) -> bool:
    """Whether a bounded TRF fit that ran out of evaluations gets LM's interior second opinion.

    TRF's Coleman-Li scaling can crawl along a bound for thousands of
    evaluations: NIST MGH10 from its far start with every parameter >= 0
    drives b1 to 1e-33 while b2 and b3 creep (800 evaluations, cost 6.6e5
    against the certified 44; 7,000 to converge), though its answer lies well
    inside the bounds, where LM without them converges in 267. Only where the
    method was left to jaxpro and the loss is linear (LM's only loss).
    """
    return (
        auto_method
        and out.status == 0
        and settings.method == "trf"
        and settings.bounded
        and settings.loss == "linear"
    )


def unbounded_lm(settings: Settings) -> Settings:
    """LM's settings for the same fit without its bounds."""
    free = np.full(np.shape(settings.lb), np.inf)
    return replace(settings, method="lm", lb=-free, ub=free)


def interior_answer(lm: Outcome, settings: Settings, trf: Outcome) -> bool:
    """Whether LM's unbounded answer is the bounded fit's answer too.

    It is when LM converged strictly inside the bounds (a minimum of the cost
    there is a minimum of the bounded problem: no bound is active) and no
    worse than where TRF stopped.
    """
    x = np.asarray(lm.x)
    return bool(
        lm.status > 0
        and np.all(x > settings.lb)
        and np.all(x < settings.ub)
        and lm.cost <= trf.cost
    )


def interior_reason(trf: Outcome, lm: Outcome, kept: bool) -> str:
    """The plan's sentence for LM's interior second opinion."""
    first = f"TRF used its {int(trf.nfev)} evaluations without converging"
    if kept:
        return (
            f"{first}; LM without the bounds, from p0, converged"
            f" strictly inside them in {int(lm.nfev)} evaluations, so no bound is active"
            " at its answer and it is the bounded fit's answer too: it was kept"
        )
    where = "outside the bounds or on one" if lm.status > 0 else "without converging either"
    return f"{first}; LM without the bounds, from p0, ended {where}, so TRF's result stands"


def _compact_reason(compact: tuple[Solved, bool], method: str) -> str:
    """What the compact LM did, for the plan."""
    from jaxpro.fit import _compact

    tried, finished = compact
    if finished:
        return (
            f"the compact LM finished it ({tried.outcome.nfev} evaluations): Marquardt-scaled"
            " normal equations from the Gram matrix of [J | r] (one fused pass per evaluation),"
            " Nielsen's damping, convergence judged on the undamped Gauss-Newton step and only"
            " where the scaled normal matrix is well conditioned (condition number below 1e6);"
            " a small program, quick to compile, little fixed cost per call"
        )
    return (
        f"the compact LM gave up (not converged within {_compact.BUDGET} evaluations, or"
        f" ill-conditioned); the full {method.upper()} fitted it afresh from p0"
    )


def _merged(first: Solved, second: Solved, chosen: Solved | None = None) -> Solved:
    """``chosen`` (default ``second``) with the compile and run time and programs of both solves."""
    return replace(
        chosen or second,
        compile_seconds=first.compile_seconds + second.compile_seconds,
        run_seconds=first.run_seconds + second.run_seconds,
        programs=first.programs + second.programs,
    )


def warn_host(what: str, route: _numpy_model.ModelPath, run_seconds: float) -> None:
    """One warning: the function ran on the host, what that cost, and the rewrite that avoids it."""
    clock = route.clock
    errors.warn(
        f"{what} cannot be traced by JAX ({route.reason}); it ran on the host as SciPy runs it,"
        f" with forward-difference derivatives: {clock.evaluations} evaluations took"
        f" {clock.seconds:.3g} s of the {run_seconds:.3g} s solve. Written with jax.numpy"
        " (jnp.exp for np.exp, x = x.at[i].set(v) for x[i] = v, jnp.where for if) it would"
        " run compiled with exact derivatives and no host round trips.",
        NumPyModelWarning,
    )


# A standard error this many times the parameter's magnitude means the
# parameter is not determined at all: typically LM parked on a plateau.
_UNDETERMINED = 1e6
_TINY = float(np.finfo(float).tiny)


def _lm_trouble(out: Outcome, n: int) -> str | None:
    """Why an LM result deserves a second opinion from TRF, or None."""
    if out.status == 0:
        return "used its evaluation budget without converging"
    p = out.x.shape[0]
    if n > p:
        variance = np.diagonal(out.covariance) * (2.0 * max(out.cost, _TINY) / (n - p))
        stderr = np.sqrt(np.abs(variance))
        # written so that NaN and Inf count as undetermined, in few NumPy calls
        # (this runs on every fit)
        determined = stderr <= _UNDETERMINED * np.maximum(np.abs(out.x), 1e-300)
        if not determined.all():
            return "converged where some parameters are undetermined (a plateau of the cost)"
    return None


def _process_count() -> int:
    import jax

    return jax.process_count()


def _distributed_layout(data: CurveData):
    """This process's shard of a multi-process fit: layout, arrays, global n, global sample.

    Each process holds its own rows. They agree (one all-gather) on the total,
    a common chunk count, and a warm-start sample made of an equal share from
    every process, so every process runs the identical program.
    """
    import jax
    from jax.experimental import multihost_utils

    if data.chol is not None:
        raise InputError("a full covariance cannot be split across processes", argument="sigma")
    processes = jax.process_count()
    counts = np.asarray(multihost_utils.process_allgather(np.array([data.n], np.int64))).reshape(-1)
    n_total = int(counts.sum())
    chunk = _data.MID_CHUNK if n_total <= _data.BUCKETED_MAX else _data.LARGE_CHUNK
    per_device = jax.local_device_count()
    chunks = -(-int(counts.max()) // chunk)
    chunks = -(-chunks // per_device) * per_device
    layout, arrays = _data.build_shard(
        data.x,
        data.y,
        data.weights,
        chunk=chunk,
        chunks=chunks,
        processes=processes,
        devices=jax.device_count(),
    )
    sample = None
    share = min(SUBSAMPLE // processes, int(counts.min()))
    if n_total >= WARM_START_MIN and share > 0:
        local = _subsample(data, share)
        w = np.ones(share) if local.weights is None else local.weights
        gathered = [np.asarray(multihost_utils.process_allgather(a)) for a in (local.x, local.y, w)]
        x = np.concatenate(list(gathered[0]), axis=-1)
        weights = gathered[2].reshape(-1)
        sample = CurveData(
            x, gathered[1].reshape(-1), None if data.weights is None else weights, None, None
        )
    return layout, arrays, n_total, sample


# Below this many points per device, splitting costs more (per-device copies,
# collectives) than it saves.
SHARD_MIN_POINTS = 1 << 20


def _shards(n: int) -> int:
    """Devices to split ``n`` points over: every device, if each gets enough work.

    On a CPU, JAX shows one device unless configured otherwise (see
    ``jaxpro.use_cpu_cores``).
    """
    import jax

    devices = jax.device_count()
    return devices if devices > 1 and n >= SHARD_MIN_POINTS * devices else 1


def _first_chunk(region):
    import jax

    return jax.tree.map(lambda a: a[0], region)


def _stage_run(arrays, n_rows: int, settings: Settings) -> _engine.StageRun:
    return _engine.StageRun(
        arrays,
        n_rows,
        settings.max_nfev,
        settings.ftol,
        settings.xtol,
        settings.gtol,
        settings.f_scale,
    )


def _solve(residual, settings: Settings, stages, theta0) -> Solved:
    """Compile (cached) and run ``stages`` (pairs of StageSpec and StageRun)."""
    program = _engine.Program(
        residual, settings.method, settings.jac_scale, tuple(spec for spec, _ in stages)
    )
    prepared = _engine.prepare(
        program, tuple(run for _, run in stages), theta0, settings.lb, settings.ub, settings.x_scale
    )
    solved = _engine.solve(prepared)
    return replace(solved, programs=((_program_label(settings, stages), solved.compile_seconds),))


def _program_label(settings: Settings, stages) -> str:
    """What a compiled fit program does, in words (for ``timings.programs``)."""
    (spec, _), first = stages[-1], stages[0]
    if settings.method == "compact":
        label = f"compact LM, {spec.layout.describe('Gram matrix of [J | r]')}"
    else:
        label = f"{settings.method.upper()}, {spec.layout.describe()}"
    if len(stages) > 1:
        label += f", after a warm start on {first[1].n_rows} points"
    return label


def _nonfinite_message(model, data: CurveData, theta0, jac, what) -> str:
    """Name the first point where the model (or its derivative) is not finite at p0."""
    import jax
    import jax.numpy as jnp

    values = np.asarray(
        jax.jit(lambda th: jnp.broadcast_to(model(data.x, *th), data.y.shape))(theta0)
    )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        xi = data.x[..., i]
        return (
            f"{what} returns non-finite values at p0 for {bad.size} of {data.n} points "
            f"(first at index {i}, x={np.array2string(np.asarray(xi), precision=6)}: {values[i]}); "
            "choose p0 where the model is finite, or bound the parameters"
        )
    return (
        f"the derivative of the {what} is not finite at p0 = {np.array2string(theta0, precision=6)}; "
        "choose another p0 (e.g. away from sqrt(0), log(0) or 0**negative)"
    )


def scaled_covariance(
    solved: Solved, n: int, n_params: int, absolute_sigma: bool, cost: float, warn: bool = True
) -> np.ndarray:
    """SciPy's pcov: ``(J^T J)^{-1}``, times the residual variance unless absolute_sigma.

    ``warn``: an ``OptimizeWarning`` where it cannot be estimated (SciPy's), looked up
    only then: it derives from SciPy's, and importing scipy.optimize costs ~120 MB.
    """
    pcov = np.array(solved.outcome.covariance, dtype=np.float64)
    if not np.isfinite(pcov).all():
        if warn:
            errors.warn(
                "Covariance of the parameters could not be estimated",
                errors.OptimizeWarning,
            )
        return np.full((n_params, n_params), np.inf)
    if not absolute_sigma:
        if n > n_params:
            pcov = pcov * (2.0 * cost / (n - n_params))
        else:
            if warn:
                errors.warn(
                    "Covariance of the parameters could not be estimated (no degrees of freedom)",
                    errors.OptimizeWarning,
                )
            pcov = np.full((n_params, n_params), np.inf)
    return pcov
