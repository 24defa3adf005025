"""``jaxpro.fit_many``: thousands of independent small fits in one vectorised solve.

Spectra, decay curves, dose-response series: the same model fitted to each of
M curves. A Python loop of ``scipy.optimize.curve_fit`` pays interpreter and
call overhead M times; ``fit_many`` runs the compiled LM/TRF program
``vmap``-ped over a batch of curves, so every curve advances one iteration per
pass of vector instructions. Curves may differ in x, sigma, bounds, starting
point and length (missing points are masked); each gets its own parameters,
standard errors, convergence flag and message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from jaxpro._precision import float64
from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.errors import InputError
from jaxpro.fit import _api, _checks, _data, _engine
from jaxpro.fit._fit import _check_level, _Model, _resolve_model
from jaxpro.fit._model import curve_residual, trace_check
from jaxpro.fit._plan import method_reasons

__all__ = ["ManyFitResult", "fit_many"]

# Curves per vmapped call: large enough to amortise dispatch, small enough
# that a batch's working set stays in cache-friendly megabytes.
BATCH = 4096


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
        **_api.MESSAGES,
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
            axes[j].hist(values[np.isfinite(values)], bins=bins)
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
        loss, f_scale, method, absolute_sigma, ftol, xtol, gtol, max_nfev,
            x_scale, confidence: as in :func:`jaxpro.fit`.
        batch_size: curves per vectorised call.

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
    valid = np.isfinite(y)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (m, n):
            raise InputError(f"must have shape ({m}, {n})", argument="mask", received=mask)
        valid &= mask.astype(bool)
    complete = bool(valid.all())
    # weights only where needed (missing points or sigma): large M x n temporaries cost
    weights = None if complete else valid.astype(np.float64)
    if sigma is not None:
        sig = _per_curve(sigma, m, n, "sigma")
        bad = valid & ~(sig > 0)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(
                f"must be > 0 at every used point; curve {i}, point {j} has {sig[i, j]:g}",
                argument="sigma",
            )
        weights = np.where(valid, 1.0 / np.where(valid, sig, 1.0), 0.0)
    if not complete:
        y = np.where(valid, y, 0.0)
    counts = valid.sum(axis=1)
    theta0 = _start_matrix(p0, names, m)
    lb, ub = _bound_matrices(bounds, names, m)
    settings = _api.resolve_settings(
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

    columns, compile_s, run_s, method_used = _solve_all(
        residual,
        settings,
        layout,
        data_for,
        theta0,
        lb,
        ub,
        counts,
        m,
        batch_size,
        auto=method in (None, "auto"),
    )
    return _assemble(
        resolved,
        columns,
        counts,
        y,
        weights,
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
    )


def _x_tree(x):
    """x rows become a tuple (as the residual expects for several variables)."""
    if x.ndim >= 2 and x.shape[-2] != 1:  # (k, 1, width) or (B, k, 1, width)
        return tuple(np.take(x, i, axis=-3) for i in range(x.shape[-3]))
    return x


def _solve_all(
    residual, settings, layout, data_for, theta0, lb, ub, counts, m, batch_size, *, auto
):
    """Run every batch; re-run LM failures with TRF when jaxpro chose the method."""
    columns, compile_s, run_s = _run_batches(
        residual, settings, layout, data_for, theta0, lb, ub, counts, np.arange(m), batch_size
    )
    method_used = settings.method
    if auto and settings.method == "lm":
        failed = np.flatnonzero((columns["status"] == 0) & (counts >= theta0.shape[1]))
        if failed.size:
            trf = replace(settings, method="trf")
            retry, c2, r2 = _run_batches(
                residual, trf, layout, data_for, theta0, lb, ub, counts, failed, batch_size
            )
            for key, value in retry.items():
                columns[key][failed] = value
            compile_s, run_s = compile_s + c2, run_s + r2
            method_used = f"lm (TRF for {failed.size} curve(s) where LM ran out of evaluations)"
    return columns, compile_s, run_s, method_used


def _run_batches(residual, settings, layout, data_for, theta0, lb, ub, counts, rows, batch_size):
    p = theta0.shape[1]
    program = _engine.Program(
        residual,
        settings.method,
        settings.jac_scale,
        (_engine.StageSpec(layout, settings.loss),),
        batched=True,
    )
    # equal batches (the last one padded by at most a few curves), one compiled
    # shape, a multiple of the device count so each device gets a share
    import jax

    devices = jax.device_count()
    batches = -(-rows.size // batch_size)
    size = -(-rows.size // batches)
    size = -(-size // devices) * devices
    outputs: list[dict[str, np.ndarray]] = []
    compile_s = run_s = 0.0
    with float64():
        for start in range(0, rows.size, size):
            chunk = rows[start : start + size]
            # a short last batch repeats its last curve: one compiled shape for all
            index = np.concatenate([chunk, np.full(size - chunk.size, chunk[-1])])
            batched, shared = data_for(index)
            vectors = np.stack(
                [
                    theta0[index],
                    lb[index],
                    ub[index],
                    np.broadcast_to(settings.x_scale, (index.size, p)),
                ],
                axis=1,
            )
            knobs = np.empty((index.size, 1, 6))
            knobs[:, 0, :5] = (
                settings.ftol,
                settings.xtol,
                settings.gtol,
                settings.max_nfev,
                settings.f_scale,
            )
            knobs[:, 0, 5] = np.maximum(counts[index], 1)
            prepared = _engine.prepare_batch(program, batched, shared, vectors, knobs)
            cols, c, r = _engine.run_batch(prepared)
            compile_s += c
            run_s += r
            outputs.append({k: v[: chunk.size] for k, v in cols.items()})
    merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    return merged, compile_s, run_s


def _weighted_spread(y: np.ndarray, weights: np.ndarray | None, rows: int = 8192) -> np.ndarray:
    """Per curve, the weighted sum of squares about the weighted mean (blocks of rows: no M x n temporaries)."""
    out = np.empty(y.shape[0])
    for start in range(0, y.shape[0], rows):
        block = y[start : start + rows]
        w2 = np.ones_like(block) if weights is None else weights[start : start + rows] ** 2
        total = w2.sum(axis=1)
        mean = np.einsum("ij,ij->i", w2, block) / np.where(total > 0, total, 1.0)
        deviation = block - mean[:, None]
        out[start : start + rows] = np.einsum("ij,ij->i", w2, deviation * deviation)
    return out


def _assemble(
    resolved,
    columns,
    counts,
    y,
    weights,
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
        ss_tot = _weighted_spread(y, weights)
        r_squared = np.where(ss_tot > 0, 1.0 - chi2 / ss_tot, np.nan)
    from scipy.stats import t

    quantile = np.where(dof > 0, t.ppf(0.5 + confidence / 2, np.maximum(dof, 1)), np.inf)
    half = quantile[:, None] * stderr
    values = columns["x"]
    reasons = method_reasons(requested, settings, [])
    reasons.append(
        f"{m} curves of up to {y.shape[1]} points, each padded to {layout.size}: one vmapped "
        f"program, {min(batch_size, m)} curves per call; Gram-matrix passes and Jacobi SVDs "
        "vectorise across curves"
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
            "ftol": settings.ftol,
            "xtol": settings.xtol,
            "gtol": settings.gtol,
            "max_nfev": settings.max_nfev,
        },
    )
    timings = Timings(compile=compile_s, run=run_s, total=time.perf_counter() - started)
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
