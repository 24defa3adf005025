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
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from jaxpro._precision import float64
from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.errors import InputError
from jaxpro.fit import _checks, _compact, _data, _engine, _orchestrate
from jaxpro.fit._fit import _check_level, _Model, _resolve_model
from jaxpro.fit._model import curve_residual, trace_check
from jaxpro.fit._plan import method_reasons

__all__ = ["ManyFitResult", "fit_many"]

# Curves advancing together (over all devices): large enough to amortise each
# step's dispatch, small enough that a step's working set stays in cache.
BATCH = 1024
# Curves per compiled call for large M: one program shape whatever M is.
CALL_CURVES = 1 << 15
# A host thread of its own is worth it from this many curves (see _workers).
MIN_CURVES_PER_WORKER = 256


@dataclass(frozen=True, repr=False)
class ManyFitResult(Result):
    """The outcome of :func:`fit_many`: one row per curve.

    Attributes:
        names: parameter names.
        values, stderr: ``(M, p)`` best-fit values and standard errors.
        ci_lower, ci_upper: ``(M, p)`` t-based confidence limits at ``confidence``.
        covariance: ``(M, p, p)``.
        converged: ``(M,)`` whether each fit met a convergence test.
        status: ``(M,)`` SciPy-style codes (see :attr:`messages`; -4: too few points).
        n, dof: ``(M,)`` valid points and degrees of freedom per curve.
        chi2, reduced_chi2, r_squared, cost: ``(M,)`` goodness of fit.
        nfev: ``(M,)`` evaluations per curve.
        plan, timings: what was done and why; where the time went.
    """

    names: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    covariance: np.ndarray
    converged: np.ndarray
    status: np.ndarray
    n: np.ndarray
    dof: np.ndarray
    chi2: np.ndarray
    reduced_chi2: np.ndarray
    r_squared: np.ndarray
    cost: np.ndarray
    nfev: np.ndarray
    confidence: float
    plan: Plan
    timings: Timings
    model: _Model = field(repr=False)
    kind = "fit_many"

    MESSAGES: ClassVar[dict[int, str]] = {
        **_orchestrate.MESSAGES,
        -4: "Too few valid points for the number of parameters.",
    }

    @property
    def messages(self) -> list[str]:
        """One message per curve (the status code in words)."""
        return [self.MESSAGES.get(int(code), str(int(code))) for code in self.status]

    def __len__(self) -> int:
        return self.values.shape[0]

    def params(self, i: int) -> dict[str, float]:
        """Best-fit values of curve ``i`` by name."""
        return {n: float(v) for n, v in zip(self.names, self.values[i], strict=True)}

    def to_frame(self):
        """A pandas DataFrame: one row per curve, values, errors and diagnostics."""
        import pandas as pd

        columns: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            columns[name] = self.values[:, j]
            columns[f"{name}_stderr"] = self.stderr[:, j]
        columns.update(
            converged=self.converged,
            status=self.status,
            message=self.messages,
            n=self.n,
            chi2=self.chi2,
            reduced_chi2=self.reduced_chi2,
            r_squared=self.r_squared,
            nfev=self.nfev,
        )
        return pd.DataFrame(columns)

    def summary(self) -> str:
        ok = self.converged
        m = len(self)
        rows = []
        for j, name in enumerate(self.names):
            v = self.values[ok, j]
            e = self.stderr[ok, j]
            if v.size:
                q16, q50, q84 = np.percentile(v, [16, 50, 84])
                rows.append((name, q50, q16, q84, float(np.median(e))))
            else:
                rows.append((name, math.nan, math.nan, math.nan, math.nan))
        table = format_table(
            ("parameter", "median", "16th pct", "84th pct", "median std err"), rows
        )
        head = "jaxpro fit_many" + (f": {self.model.expression}" if self.model.expression else "")
        lines = [
            head,
            f"{m} curves: {int(ok.sum())} converged, {m - int(ok.sum())} not",
            table,
            "(percentiles over the converged curves)",
        ]
        failed = {}
        for code in self.status[~ok]:
            failed[int(code)] = failed.get(int(code), 0) + 1
        for code, count in sorted(failed.items()):
            lines.append(f"  {count} curve(s): {self.MESSAGES.get(code, code)}")
        lines.append(
            f"median reduced chi2 = {np.nanmedian(self.reduced_chi2):.4g}, "
            f"median evaluations = {np.median(self.nfev):.0f}"
        )
        lines.append("plan: " + self.plan.summary().replace("\n", "\n      "))
        lines.append(self.timings.summary())
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {
            "model": self.model.expression,
            "names": list(self.names),
            "curves": len(self),
            "converged": int(self.converged.sum()),
            "values": self.values,
            "stderr": self.stderr,
            "status": self.status,
            "chi2": self.chi2,
            "reduced_chi2": self.reduced_chi2,
            "r_squared": self.r_squared,
            "n": self.n,
            "nfev": self.nfev,
            "confidence": self.confidence,
        }

    def plot(self, *, bins: int = 40):
        """Histograms of each parameter over the converged curves (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        p = len(self.names)
        cols = min(p, 3)
        rows = -(-p // cols)
        figure = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, cols)).ravel()
        for j, name in enumerate(self.names):
            values = self.values[self.converged, j]
            values = values[np.isfinite(values)]
            # identical fits (noise-free curves) differ by rounding at most: bins
            # narrower than the float spacing cannot exist, so one bin then
            spread = np.ptp(values) if values.size else 0.0
            narrow = spread <= 1e-9 * (np.abs(values).max() if values.size else 0.0)
            axes[j].hist(values, bins=1 if narrow else bins)
            axes[j].set_xlabel(name)
        for ax in axes[p:]:
            ax.set_visible(False)
        figure.suptitle(f"{int(self.converged.sum())} of {len(self)} curves", fontsize="medium")
        return figure


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
            for unbounded least squares with up to 8 parameters, the curves
            go first through a compact Levenberg-Marquardt program that
            compiles in a fraction of the full one's time; only curves it
            gives up on (ill-conditioned, or more than
            :data:`jaxpro.fit._compact.BUDGET` evaluations) are refitted from
            ``p0`` by the full MINPACK-style LM (``plan.settings
            ["curves_by_program"]`` counts them). ``"lm"`` runs the full LM
            for every curve.
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
        shape = trace_check(residual, theta0[0], sample)
        if shape != (n,):
            raise InputError(f"the model returned shape {shape} for {n} points", argument="model")

    curves = _Curves(residual, layout, data_for, theta0, lb, ub, counts)
    columns, (compile_s, programs), run_s, method_used, paths, (ss_tot, quantile) = _solve_all(
        curves,
        settings,
        batch_size,
        auto=method in (None, "auto"),
        meanwhile=lambda: (_weighted_spread(y, weights), _t_quantiles(counts - p, confidence)),
    )
    return _assemble(
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
    )


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
    """Run every curve; hand what the compact LM gives up to the full LM, then LM failures to TRF.

    When jaxpro chose the method, the problem is unbounded least squares and
    p is small (:func:`jaxpro.fit._compact.eligible`), the curves go first
    through the compact program, which compiles in a fraction of the full
    program's time; the curves it gives up on are fitted afresh by the full
    LM (compiled only then), and curves where LM runs out of evaluations by
    TRF. ``meanwhile()`` (host work that does not need the fits) runs while the
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
        curves, settings, np.arange(m), batch_size, method=first, while_compiling=_import_special
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
            programs.append((f"LM queue, {label}", c2))
            paths = {"compact LM": m - handed.size, "LM": int(handed.size)}
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


def _weighted_spread(y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Per curve, the weighted sum of squares about the weighted mean.

    Blocks of about 64K values (512 KB): each block's temporaries stay in the
    core's cache, and there are no M x n ones (8,192-row blocks took 31 ms for
    100,000 x 200, these 22 ms; this runs while the fits compute, so its time
    is taken from theirs).
    """
    out = np.empty(y.shape[0])
    rows = max(16, (1 << 16) // max(y.shape[1], 1))
    for start in range(0, y.shape[0], rows):
        block = y[start : start + rows]
        if weights is None:  # plain sums: half the passes over the block
            deviation = block - block.mean(axis=1, keepdims=True)
            out[start : start + rows] = np.einsum("ij,ij->i", deviation, deviation)
            continue
        w2 = weights[start : start + rows] ** 2
        total = w2.sum(axis=1)
        mean = np.einsum("ij,ij->i", w2, block) / np.where(total > 0, total, 1.0)
        deviation = block - mean[:, None]
        out[start : start + rows] = np.einsum("ij,ij->i", w2, deviation * deviation)
    return out


def _import_special() -> None:
    """Import ``scipy.special`` (for :func:`_t_quantiles`; run while XLA compiles).

    It takes 0.1-0.15 s, which a first call otherwise pays after its fits, in
    series; beside XLA's compilation (which releases the GIL) it costs nothing,
    and a later ``import`` waits for it under Python's import lock.
    """
    import importlib

    importlib.import_module("scipy.special")


def _t_quantiles(dof: np.ndarray, confidence: float) -> np.ndarray:
    """The two-sided t quantile for each curve's degrees of freedom (inf where none)."""
    from scipy.special import stdtrit  # scipy.stats' t.ppf, a third of the import time

    levels, index = np.unique(np.maximum(dof, 1), return_inverse=True)
    quantile = stdtrit(levels, 0.5 + confidence / 2)[index]
    return np.where(dof > 0, quantile, np.inf)


def _assemble(
    resolved,
    columns,
    counts,
    y,
    ss_tot,
    quantile,
    settings,
    requested,
    method_used,
    layout,
    absolute_sigma,
    confidence,
    compile_s,
    run_s,
    started,
    m,
    batch_size,
    programs=(),
    paths=None,
) -> ManyFitResult:
    p = len(resolved.names)
    status = columns["status"].copy()
    too_few = counts < p
    status[too_few] = -4
    converged = status > 0
    dof = counts - p
    cost = columns["cost"]
    chi2 = columns["chi2"]
    with np.errstate(invalid="ignore", divide="ignore"):
        reduced = np.where(dof > 0, chi2 / np.maximum(dof, 1), np.inf)
        scale = (
            np.ones(m)
            if absolute_sigma
            else np.where(dof > 0, 2.0 * cost / np.maximum(dof, 1), np.inf)
        )
        covariance = columns["covariance"] * scale[:, None, None]
        covariance[too_few] = np.inf
        stderr = np.sqrt(np.clip(np.diagonal(covariance, axis1=1, axis2=2), 0, None))
        r_squared = np.where(ss_tot > 0, 1.0 - chi2 / ss_tot, np.nan)
    half = quantile[:, None] * stderr
    values = columns["x"]
    reasons = method_reasons(requested, settings, [])
    reasons.append(
        f"{m} curves of up to {y.shape[1]} points, each padded to {layout.size}: one vmapped "
        f"program with {min(batch_size, m)} curves in flight, a finished curve's place going to "
        "the next (work follows each curve's own iteration count); Gram-matrix passes vectorise "
        "across curves, and only the curves whose Gauss-Newton step leaves the trust region "
        "compute an SVD"
    )
    paths = paths or {}
    if "compact LM" in paths:
        reasons.append(
            f"{paths['compact LM']} curve(s) fitted by the compact LM (normal equations scaled "
            "by the Jacobian's column norms, Nielsen's damping, convergence tested on the "
            "undamped Gauss-Newton step; a small program, quick to compile)"
            + (
                f"; {paths['LM']} curve(s) it gave up on (ill-conditioned, or not converged "
                f"within {_compact.BUDGET} evaluations) refitted from p0 by the full "
                "trust-region LM"
                if paths.get("LM")
                else ""
            )
        )
    devices, workers = _parallelism(m)
    if devices > 1:
        reasons.append(f"each call split over {devices} devices, a queue on each")
    elif workers > 1:
        reasons.append(
            f"calls shared between {workers} host threads, one per core: JAX has a single CPU "
            "device here, which runs one program on one core"
        )
    if np.any(too_few):
        reasons.append(
            f"{int(too_few.sum())} curve(s) have fewer valid points than parameters and are not fitted"
        )
    plan = Plan(
        method=settings.method,
        reasons=tuple(reasons),
        settings={
            "method": method_used,
            "loss": settings.loss if isinstance(settings.loss, str) else "custom",
            "curves": m,
            "points_per_curve": int(y.shape[1]),
            "padded_to": layout.size,
            "batch_size": int(min(batch_size, m)),
            "devices": devices,
            "host_threads": workers,
            "ftol": settings.ftol,
            "xtol": settings.xtol,
            "gtol": settings.gtol,
            "max_nfev": settings.max_nfev,
            "curves_by_program": dict(paths),
        },
    )
    timings = Timings(compile=compile_s, run=run_s, total=time.perf_counter() - started,
                      programs=programs)  # fmt: skip
    return ManyFitResult(
        names=resolved.names,
        values=values,
        stderr=stderr,
        ci_lower=values - half,
        ci_upper=values + half,
        covariance=covariance,
        converged=converged,
        status=status,
        n=counts,
        dof=dof,
        chi2=chi2,
        reduced_chi2=reduced,
        r_squared=r_squared,
        cost=cost,
        nfev=columns["nfev"],
        confidence=confidence,
        plan=plan,
        timings=timings,
        model=resolved,
    )
