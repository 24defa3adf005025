"""``jaxpro.fit_many``: thousands of independent small fits in one vectorised solve.

Spectra, decay curves, dose-response series: the same model fitted to each of
M curves. A Python loop of ``scipy.optimize.curve_fit`` pays interpreter and
call overhead M times; ``fit_many`` runs the compiled LM/TRF iteration
``vmap``-ped over a set of slots, so every curve in a slot advances one
iteration per pass of vector instructions, and a curve that finishes hands its
slot to the next one in the queue (see
:func:`jaxpro.fit._engine.queued_program_fn`): the work is the sum of the
curves' own iteration counts, not the slowest curve's count times the number of
batches. Curves may differ in x, sigma, bounds, starting point and length
(missing points are masked); each gets its own parameters, standard errors,
convergence flag and message.

When jaxpro picks the method, a compact LM program (:mod:`jaxpro.fit._compact`)
fits the curves first: it compiles in about a third of the full program's
time, and only the curves it gives up on are fitted by the full LM or TRF.
The result and its statistics are assembled in :mod:`jaxpro.fit._many_result`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from jaxpro._precision import float64
from jaxpro.errors import InputError, ModelError
from jaxpro.fit import _checks, _compact, _data, _engine, _orchestrate
from jaxpro.fit._fit import _check_level, _Model, _resolve_model
from jaxpro.fit._many_result import (
    ManyFitResult,
    assemble,
    import_special,
    t_quantiles,
    weighted_spread,
)
from jaxpro.fit._model import curve_residual, trace_check

__all__ = ["ManyFitResult", "fit_many"]

# Curves advancing together (over all devices): large enough to amortise each
# step's dispatch, small enough that a step's working set stays in cache.
BATCH = 1024
# Curves per compiled call for large M: one program shape whatever M is.
CALL_CURVES = 1 << 15
# A host thread of its own is worth it from this many curves (see _workers).
MIN_CURVES_PER_WORKER = 256


# ----------------------------------------------------------------------------- inputs


def _per_curve(value, m: int, width: int, argument: str) -> np.ndarray:
    """``value`` as an ``(m, width)`` float array: a shared row or one row per curve."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full((m, width), float(arr))
    if arr.shape == (width,):
        return np.broadcast_to(arr, (m, width))
    if arr.shape == (m, width):
        return arr
    if width == 1 and arr.shape == (m,):
        return arr[:, None]
    raise InputError(
        f"must have shape ({width},) for all curves or ({m}, {width}) per curve",
        argument=argument,
        received=value,
    )


def _start_matrix(p0, names, m: int) -> np.ndarray:
    p = len(names)
    if p0 is None:
        return np.ones((m, p))
    if isinstance(p0, Mapping):
        unknown = [k for k in p0 if k not in names]
        missing = [k for k in names if k not in p0]
        if unknown or missing:
            raise InputError(
                f"needs exactly the parameters {', '.join(names)}",
                argument="p0",
                received=dict(p0),
            )
        return np.stack([_per_curve(p0[k], m, 1, "p0")[:, 0] for k in names], axis=1)
    start = _per_curve(p0, m, p, "p0")
    if not np.all(np.isfinite(start)):
        raise InputError("must be finite", argument="p0", received=p0)
    return start


def _bound_matrices(bounds, names, m: int) -> tuple[np.ndarray, np.ndarray]:
    p = len(names)
    lb, ub = np.full((m, p), -np.inf), np.full((m, p), np.inf)
    if bounds is None:
        return lb, ub
    if isinstance(bounds, Mapping):
        for key, pair in bounds.items():
            if key not in names:
                raise InputError(
                    f"unknown parameter {key!r}; the model's parameters are {', '.join(names)}",
                    argument="bounds",
                )
            low, high = pair
            j = names.index(key)
            lb[:, j] = _per_curve(-np.inf if low is None else low, m, 1, "bounds")[:, 0]
            ub[:, j] = _per_curve(np.inf if high is None else high, m, 1, "bounds")[:, 0]
    else:
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise InputError(
                "must be a dict or a pair (lower, upper)", argument="bounds", received=bounds
            ) from None
        lb, ub = _per_curve(low, m, p, "bounds").copy(), _per_curve(high, m, p, "bounds").copy()
    bad = np.argwhere(~(lb < ub))
    if bad.size:
        i, j = bad[0]
        raise InputError(
            f"lower bound must be below upper bound; curve {i}, {names[j]}: {lb[i, j]:g} >= {ub[i, j]:g}",
            argument="bounds",
        )
    return lb, ub


def _independent(x, model: _Model, m: int, n: int) -> tuple[np.ndarray, bool]:
    """x as ``(k?, n)`` shared or ``(m, k?, n)`` per curve; returns ``(x, shared)``."""
    if isinstance(x, Mapping):
        parts = [np.asarray(x[v], dtype=np.float64) if v in x else None for v in model.variables]
        if any(part is None for part in parts):
            raise InputError(
                f"needs columns {', '.join(model.variables)}", argument="x", received=list(x)
            )
        if len(parts) == 1:
            x = parts[0]
        else:
            shared = all(part.ndim == 1 for part in parts)
            return (
                np.stack(parts) if shared else np.stack(np.broadcast_arrays(*parts), axis=1)
            ), shared
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape == (n,):
        return arr, True
    if arr.shape == (m, n):
        return arr, False
    raise InputError(
        f"must have shape ({n},) shared by all curves or ({m}, {n})", argument="x", received=x
    )


# ----------------------------------------------------------------------------- entry point


def fit_many(
    model: Callable | str,
    x,
    Y,
    p0=None,
    *,
    sigma=None,
    bounds=None,
    mask=None,
    loss: str | Callable = "linear",
    f_scale: float = 1.0,
    method: str | None = None,
    variables: Sequence[str] | None = None,
    absolute_sigma: bool = False,
    ftol: float | None = None,
    xtol: float | None = None,
    gtol: float | None = None,
    max_nfev: int | None = None,
    x_scale=None,
    confidence: float = 0.95,
    batch_size: int = BATCH,
) -> ManyFitResult:
    """Fit the same model to each of M curves, independently, in one vectorised solve.

    Args:
        model: ``f(x, *params)`` in ``jax.numpy`` or an expression string.
        x: ``(n,)`` shared by every curve or ``(M, n)`` per curve (a dict of such
            columns for several variables).
        Y: ``(M, n)`` observations, one curve per row; NaN marks a missing point.
        p0: ``(p,)`` for every curve, ``(M, p)`` per curve, or a dict by name.
        sigma: ``(n,)`` or ``(M, n)`` standard deviations.
        bounds: dict ``{name: (lower, upper)}`` (scalars or per-curve arrays) or
            ``(lb, ub)`` of shape ``(p,)`` or ``(M, p)``.
        mask: ``(M, n)`` booleans, False for points to ignore (ragged lengths).
        loss, f_scale, absolute_sigma, ftol, xtol, gtol, max_nfev, x_scale,
            confidence: as in :func:`jaxpro.fit`.
        method: as in :func:`jaxpro.fit`. Left to jaxpro (None or "auto")
            for least squares with up to 8 parameters, the curves go first
            through a compact Levenberg-Marquardt program that compiles in a
            fraction of the full one's time (with bounds, every trial point
            stays inside them); only curves it gives up on (a step out of the
            bounds, ill-conditioned, or more than
            :data:`jaxpro.fit._compact.BUDGET` evaluations) are refitted from
            ``p0`` by the full MINPACK-style LM, or by TRF when bounded
            (``plan.settings["curves_by_program"]`` counts them). ``"lm"`` or
            ``"trf"`` runs that method for every curve.
        batch_size: curves in flight at once (over all devices): each step of
            the vectorised solver advances this many fits by one iteration, and
            a finished fit's place goes to the next curve.

    Returns:
        :class:`ManyFitResult`.
    """
    started = time.perf_counter()
    confidence = _check_level(confidence)
    if variables is None:
        variables = tuple(x) if isinstance(x, Mapping) else ("x",)
    resolved = _resolve_model(model, tuple(variables), p0)
    names = resolved.names
    p = len(names)
    y = np.asarray(Y, dtype=np.float64)  # no copy for float64 input
    if y.ndim != 2 or y.size == 0:
        raise InputError(
            "must be a non-empty 2-D array (one curve per row)", argument="Y", received=Y
        )
    m, n = y.shape
    xs, shared_x = _independent(x, resolved, m, n)
    if not np.all(np.isfinite(xs)):
        raise InputError(
            "x must be finite (mark missing points with NaN in Y or with mask)", argument="x"
        )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (m, n):
            raise InputError(f"must have shape ({m}, {n})", argument="mask", received=mask)
    # A NaN or infinity anywhere makes its row's sum non-finite, so one cheap
    # pass (no M x n boolean mask) settles the usual case, every point usable;
    # a sum that overflows only sends it to the exact test below.
    with np.errstate(over="ignore", invalid="ignore"):
        complete = mask is None and bool(np.isfinite(y.sum(axis=1)).all())
    valid = None
    if not complete:
        valid = np.isfinite(y)
        if mask is not None:
            valid &= mask.astype(bool)
        complete = bool(valid.all())
    # weights only where needed (missing points or sigma): large M x n temporaries cost
    weights = None if complete else valid.astype(np.float64)
    if sigma is not None:
        sig = _per_curve(sigma, m, n, "sigma")
        bad = ~(sig > 0) if valid is None else valid & ~(sig > 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(
                f"must be > 0 at every used point; curve {i}, point {j} has {sig[i, j]:g}",
                argument="sigma",
            )
        weights = (
            1.0 / sig if valid is None else np.where(valid, 1.0 / np.where(valid, sig, 1.0), 0.0)
        )
    if not complete:
        y = np.where(valid, y, 0.0)
    counts = np.full(m, n) if complete else valid.sum(axis=1)
    theta0 = _start_matrix(p0, names, m)
    lb, ub = _bound_matrices(bounds, names, m)
    settings = _orchestrate.resolve_settings(
        p,
        method=method if method != "lm" else None,  # LM's bound check follows, per curve
        loss=loss,
        f_scale=f_scale,
        ftol=ftol,
        xtol=xtol,
        gtol=gtol,
        max_nfev=max_nfev,
        x_scale=x_scale,
    )
    bounded = bool(np.isfinite(lb).any() or np.isfinite(ub).any())
    settings = replace(
        settings, method=_checks.check_method(method, bounded, settings.loss != "linear")
    )
    outside = np.argwhere((theta0 < lb) | (theta0 > ub))
    if outside.size:
        i, j = outside[0]
        raise InputError(
            f"curve {i}: {names[j]} = {theta0[i, j]:g} is outside its bounds", argument="p0"
        )
    if settings.method == "trf":
        theta0 = np.where(theta0 <= lb, np.nextafter(lb, ub), theta0)
        theta0 = np.where(theta0 >= ub, np.nextafter(ub, lb), theta0)

    # curves are not padded: one compiled program per curve length
    layout = _data.Layout("chunked", n, rest_chunks=1)
    residual = curve_residual(resolved.function)
    x_shared = _x_tree(xs[..., None, :]) if shared_x else None

    def data_for(rows):
        region = {"y": y[rows][:, None, :]}
        if weights is not None:
            region["w"] = weights[rows][:, None, :]
        if not shared_x:
            region["x"] = _x_tree(xs[rows][..., None, :])
        shared = {"regions": ({"x": x_shared},)} if shared_x else {"regions": ({},)}
        return {"regions": (region,)}, shared

    with float64():
        import jax

        first_batched, first_shared = data_for(np.array([0]))
        region = _engine.merge_regions(first_shared, jax.tree.map(lambda a: a[0], first_batched))[
            "regions"
        ][0]
        sample = jax.tree.map(lambda a: a[0], region)
        # a NumPy model translated by an earlier call: the same function comes
        # back (no failing trace, no check, no recompilation)
        translated = _known_translation(resolved.function)
        if translated is not None:
            resolved = replace(resolved, function=translated)
            residual = curve_residual(translated)
        try:
            shape = trace_check(residual, theta0[0], sample)
        except ModelError as error:
            if translated is not None:
                raise
            translated = _translated(resolved, sample, theta0[0], n, error)
            resolved = replace(resolved, function=translated)
            residual = curve_residual(translated)
            shape = trace_check(residual, theta0[0], sample)
        if shape != (n,):
            raise InputError(f"the model returned shape {shape} for {n} points", argument="model")

    curves = _Curves(residual, layout, data_for, theta0, lb, ub, counts)
    columns, (compile_s, programs), run_s, method_used, paths, (ss_tot, quantile) = _solve_all(
        curves,
        settings,
        batch_size,
        auto=method in (None, "auto"),
        meanwhile=lambda: (weighted_spread(y, weights), t_quantiles(counts - p, confidence)),
    )
    return assemble(
        resolved,
        columns,
        counts,
        y,
        ss_tot,
        quantile,
        settings,
        method,
        method_used,
        layout,
        absolute_sigma,
        confidence,
        compile_s,
        run_s,
        started,
        m,
        batch_size,
        programs,
        paths,
        _parallelism(m),
        translated is not None,
    )


_TRANSLATED_KEY = ("fit_many", "translated")  # a key of _numpy_model's per-function memo


def _known_translation(function):
    """The translation of ``function`` an earlier call kept, or None."""
    from jaxpro.fit import _numpy_model

    known = _numpy_model._recall(function, _TRANSLATED_KEY)
    return None if known is None else known.model


def _translated(resolved: _Model, sample, theta0: np.ndarray, n: int, error: Exception):
    """A NumPy-written model with jax.numpy in place of NumPy, if its values are NumPy's.

    As ``curve_fit`` does (:mod:`jaxpro.fit._numpy_model`): the translation is
    kept only where it gives the model's own values at the first curve's start
    (relative 1e-9); otherwise the tracing ``error`` is raised with a note,
    since every curve here runs inside one compiled program (unchanged when
    the model has no NumPy to replace).
    """
    from jaxpro.fit import _numpy_model

    x = sample["x"]
    x = np.stack([np.asarray(v) for v in x]) if isinstance(x, tuple) else np.asarray(x)
    candidate = _numpy_model.translate(resolved.function)
    if candidate is None:  # no NumPy in it to replace: the tracing error is the story
        raise error
    try:
        import jax
        import jax.numpy as jnp

        reference = np.broadcast_to(
            np.asarray(resolved.function(x, *theta0), dtype=np.float64), (n,)
        )
        values = jax.jit(lambda t: candidate(jnp.asarray(x), *t))(theta0)
        if _numpy_model.values_match(reference, np.broadcast_to(np.asarray(values), (n,))):
            path = _numpy_model.ModelPath(
                _numpy_model.TRANSLATED, candidate, None, reason=str(error)
            )
            return _numpy_model._remember(resolved.function, _TRANSLATED_KEY, path).model
    except Exception:  # the translation (or the model on NumPy input) fails: not exact
        pass
    raise ModelError(
        f"{error} (fit_many runs every curve in one compiled program; its jax.numpy "
        "translation was not exact here, so the model must be written with jax.numpy)"
    ) from None


def _x_tree(x):
    """x rows become a tuple (as the residual expects for several variables)."""
    if x.ndim >= 2 and x.shape[-2] != 1:  # (k, 1, width) or (B, k, 1, width)
        return tuple(np.take(x, i, axis=-3) for i in range(x.shape[-3]))
    return x


@dataclass(frozen=True)
class _Curves:
    """The problem, whatever the settings: model, layout, data and per-curve vectors.

    Attributes:
        residual: ``residual(theta, block)`` of one curve.
        layout: the (single-chunk) data layout of one curve.
        data_for: ``data_for(rows) -> (own, shared)``: the rows' data (a slice
            gives views) and the data all curves share.
        theta0, lb, ub: ``(M, p)`` starts and bounds.
        counts: ``(M,)`` valid points per curve.
    """

    residual: Callable
    layout: _data.Layout
    data_for: Callable
    theta0: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    counts: np.ndarray


def _solve_all(
    curves: _Curves, settings, batch_size: int, *, auto: bool, meanwhile: Callable[[], Any]
):
    """Run every curve; hand what the compact LM gives up to the full method, then LM failures to TRF.

    When jaxpro chose the method, the problem is least squares (unbounded for
    LM, bounded for TRF) and p is small (:func:`jaxpro.fit._compact.eligible`),
    the curves go first through the compact program, which compiles in a
    fraction of the full program's time; the curves it gives up on (or whose
    steps leave the bounds) are fitted afresh by the full LM or TRF (compiled
    only then), and curves where LM runs out of evaluations by TRF. ``meanwhile()`` (host work that does not need the fits) runs while the
    first solve computes; returns ``(columns, (compile_s, programs), run_s,
    method, paths, meanwhile())``, ``programs`` being ``(what was compiled,
    seconds)`` pairs and ``paths`` the number of curves each program finished.
    """
    m, p = curves.theta0.shape
    bounded = bool(np.isfinite(curves.lb).any() or np.isfinite(curves.ub).any())
    compact = auto and _compact.eligible(
        settings.method, settings.loss, settings.jac_scale, bounded, p
    )
    first = "compact" if compact else settings.method
    collect = _start(
        curves, settings, np.arange(m), batch_size, method=first, while_compiling=import_special
    )
    # host work competes for the cores: only once every thread has its first call running
    collect.launched.wait()
    extra = meanwhile()
    columns, compile_s, run_s = collect()
    method_used = settings.method
    label = f"{p} parameters, {curves.layout.size} points per curve"
    names = {"compact": "compact LM", "lm": "LM", "trf": "TRF"}
    programs = [(f"{names[first]} queue, {label}", compile_s)]
    paths = {names[first]: m}
    if compact:
        # curves with fewer points than parameters are reported as such, never refitted
        handed = np.flatnonzero((columns["status"] == 0) & (curves.counts >= p))
        if handed.size:
            retry, c2, r2 = _start(curves, settings, handed, batch_size)()
            for key, value in retry.items():
                columns[key][handed] = value
            compile_s, run_s = compile_s + c2, run_s + r2
            full = names[settings.method]
            programs.append((f"{full} queue, {label}", c2))
            paths = {"compact LM": m - handed.size, full: int(handed.size)}
    if auto and settings.method == "lm":
        failed = np.flatnonzero((columns["status"] == 0) & (curves.counts >= p))
        if failed.size:
            trf = replace(settings, method="trf")
            retry, c2, r2 = _start(curves, trf, failed, batch_size)()
            for key, value in retry.items():
                columns[key][failed] = value
            compile_s, run_s = compile_s + c2, run_s + r2
            programs.append((f"TRF queue, {label}", c2))
            method_used = f"lm (TRF for {failed.size} curve(s) where LM ran out of evaluations)"
            paths["LM" if "LM" in paths else names[first]] -= int(failed.size)
            paths["TRF"] = int(failed.size)
    paths = {name: count for name, count in paths.items() if count}
    return columns, (compile_s, tuple(programs)), run_s, method_used, paths, extra


def _call_size(m: int, slots: int, devices: int) -> int:
    """Fits per compiled call: one shape for every large M, a power of two below it."""
    size = CALL_CURVES if m >= CALL_CURVES else 1 << max(m - 1, 1).bit_length()
    return max(size, devices * min(slots, size))


def _selector(part: np.ndarray, m: int, width: int):
    """Rows ``part`` of the caller's arrays as ``(selector, todo)`` for one device.

    Consecutive rows are served by a window of ``width`` rows (a view: no copy),
    ``todo`` their positions in it; other rows are gathered (a copy), the last
    repeated to fill the width.
    """
    if part.size and part[-1] - part[0] == part.size - 1 and m >= width:
        start = int(min(part[0], m - width))
        return slice(start, start + width), (part - start).astype(np.int32)
    padded = np.concatenate([part, np.full(width - part.size, part[-1] if part.size else 0)])
    return padded, np.arange(part.size, dtype=np.int32)


def _workers(devices: int, curves: int) -> int:
    """Host threads launching calls at once.

    With a single CPU device XLA runs one program on one core (a few large
    kernels excepted); a second program launched from another thread runs
    beside it, so every core works. With several devices (or an accelerator)
    each call is already split over them.
    """
    import jax

    if devices > 1 or jax.default_backend() != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, curves // MIN_CURVES_PER_WORKER))


def _parallelism(curves: int) -> tuple[int, int]:
    """``(devices, host threads)`` that a solve of ``curves`` curves uses."""
    import jax

    devices = jax.device_count()
    return devices, _workers(devices, curves)


def _start(
    curves: _Curves,
    settings,
    rows: np.ndarray,
    batch_size: int,
    method: str | None = None,
    while_compiling: Callable[[], None] | None = None,
):
    """Start the fits of ``rows``; returns ``collect() -> (columns, compile_s, run_s)``.

    The rows are split into calls of one compiled shape, shared round-robin
    between :func:`_workers` host threads. Each thread starts its next call
    before reading the previous one's outcome, so copying data overlaps
    computing; the caller can do its own host work before ``collect()``,
    best once ``collect.launched.wait()`` returns: every thread has then
    started its first call (or stopped on an error).
    """
    m, p = curves.theta0.shape
    devices, workers = _parallelism(rows.size)
    slots = max(1, -(-batch_size // devices))
    size = _call_size(-(-rows.size // workers), slots, devices)
    width = size // devices
    program = _engine.Program(
        curves.residual,
        method or settings.method,
        settings.jac_scale,
        (_engine.StageSpec(curves.layout, settings.loss),),
        slots=min(slots, width),
    )
    knob_row = np.array(
        [settings.ftol, settings.xtol, settings.gtol, settings.max_nfev, settings.f_scale, 0.0]
    )
    x_scale = np.broadcast_to(settings.x_scale, (p,))
    started = time.perf_counter()
    calls = np.array_split(rows, workers * max(1, -(-rows.size // (workers * size))))

    def prepare(call: np.ndarray):
        pieces, picked = [], []
        for d, part in enumerate(np.array_split(call, devices)):
            selector, todo = _selector(part, m, width)
            batched, shared = curves.data_for(selector)
            vectors = np.stack(
                [
                    curves.theta0[selector],
                    curves.lb[selector],
                    curves.ub[selector],
                    np.broadcast_to(x_scale, (width, p)),
                ],
                axis=1,
            )
            knobs = np.broadcast_to(knob_row, (width, 1, 6)).copy()
            knobs[:, 0, 5] = np.maximum(curves.counts[selector], 1)
            pieces.append((batched, vectors, knobs, todo))
            picked.append(d * width + todo)
        prepared = _engine.prepare_queue(program, pieces, shared, while_compiling)
        return prepared, np.concatenate(picked)

    def receive(rows_out, picked) -> dict[str, np.ndarray]:
        if program.method == "compact":
            columns = _compact.columns(np.asarray(rows_out), p)
        else:
            columns = _engine.unpack_rows(np.asarray(rows_out), p)
        if picked.size and picked[-1] - picked[0] == picked.size - 1:  # a window: views
            picked = slice(int(picked[0]), int(picked[-1]) + 1)
        return {k: v[picked] for k, v in columns.items()}

    launched = _Countdown(workers)

    def work(mine: list[int]):
        """Run calls ``mine`` (indices into ``calls``) in order: ``({index: columns}, compile_s)``."""
        done, pending, compile_s = {}, [], 0.0
        arrive = launched.arrival()
        try:
            with float64():
                for index in mine:
                    prepared, picked = prepare(calls[index])
                    rows_out, seconds = _engine.launch(prepared)
                    compile_s += seconds
                    pending.append((index, rows_out, picked))
                    arrive()
                    if len(pending) > 1:
                        first, *rest = pending.pop(0)
                        done[first] = receive(*rest)
                for index, rows_out, picked in pending:
                    done[index] = receive(rows_out, picked)
        finally:
            arrive()
        return done, compile_s

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jaxpro-fit-many")
    futures = [pool.submit(work, list(range(w, len(calls), workers))) for w in range(workers)]
    pool.shutdown(wait=False)

    def collect():
        outputs, compile_s = {}, 0.0
        for future in futures:
            done, seconds = future.result()
            outputs.update(done)
            # one thread compiles, the others wait for it: the longest is the compile time
            compile_s = max(compile_s, seconds)
        ordered = [outputs[i] for i in range(len(calls))]
        merged = {k: np.concatenate([o[k] for o in ordered]) for k in ordered[0]}
        return merged, compile_s, time.perf_counter() - started - compile_s

    collect.launched = launched
    return collect


class _Countdown:
    """An event set once ``count`` threads have each arrived (see :meth:`arrival`)."""

    def __init__(self, count: int):
        self._left = count
        self._lock = threading.Lock()
        self._done = threading.Event()
        if count <= 0:
            self._done.set()

    def arrival(self) -> Callable[[], None]:
        """A function that counts one thread's arrival the first time it is called."""
        arrived = False

        def arrive() -> None:
            nonlocal arrived
            if arrived:
                return
            arrived = True
            with self._lock:
                self._left -= 1
                if self._left == 0:
                    self._done.set()

        return arrive

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every thread has arrived (or ``timeout`` seconds pass)."""
        return self._done.wait(timeout)
