"""``jaxpro.fit``: a fit with named parameters, uncertainties, diagnostics, a plan and plots.

Where :func:`jaxpro.curve_fit` answers like SciPy, :func:`fit` answers like an
expert: it names the parameters, reports standard errors, t-based confidence
intervals, goodness of fit and information criteria, says in plain words when
the result should not be trusted, and records what it did and why.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from jaxpro._precision import float64
from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.errors import ConvergenceError, InputError
from jaxpro.fit import _checks, _orchestrate
from jaxpro.fit._model import parameter_names
from jaxpro.fit._plan import build_plan, build_stream_plan

__all__ = ["FitResult", "Interval", "fit"]

# Residual quantiles are computed on at most this many points (a deterministic
# stride through the data); sums, minima and maxima always use every point.
_QUANTILE_POINTS = 1 << 20
_PREDICT_CHUNK = 1 << 20
_PLOT_POINTS = 5000  # points of a streamed source kept for plots


class Interval(NamedTuple):
    """A pointwise band: ``value`` with ``lower`` and ``upper`` limits (NumPy arrays)."""

    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class _Model:
    """A model in SciPy's convention ``f(x, *params)`` with its parameter names."""

    function: Callable
    names: tuple[str, ...]
    variables: tuple[str, ...]
    expression: str | None = None


@functools.lru_cache(maxsize=256)
def _expression_model(expression: str, variables: tuple[str, ...]) -> _Model:
    from jaxpro.expr import compile as compile_expression

    compiled = compile_expression(expression, variables=variables, argument="model")
    f = compiled.function
    k = len(variables)
    if k == 1:

        def function(x, *params):
            return f(x, *params)

    else:

        def function(x, *params):
            return f(*(x[i] for i in range(k)), *params)

    return _Model(function, tuple(compiled.parameters), variables, expression)


def _resolve_model(model, variables, p0) -> _Model:
    if isinstance(model, str):
        if not (isinstance(variables, tuple | list) and all(isinstance(v, str) for v in variables)):
            raise InputError(
                "must be a sequence of column names", argument="variables", received=variables
            )
        return _expression_model(model, tuple(variables))
    if not callable(model):
        raise InputError(
            "must be a function f(x, *params) or an expression string",
            argument="model",
            received=model,
        )
    try:
        names = parameter_names(model)
    except InputError:
        if p0 is None or isinstance(p0, Mapping):
            raise
        names = tuple(f"p{i}" for i in range(len(np.atleast_1d(p0))))
    return _Model(model, names, tuple(variables) if variables else ("x",))


def _start_values(p0, names: tuple[str, ...]) -> np.ndarray:
    if p0 is None:
        return np.ones(len(names))
    if isinstance(p0, Mapping):
        unknown = [k for k in p0 if k not in names]
        if unknown:
            raise InputError(
                f"unknown parameter(s) {', '.join(map(str, unknown))}; the model's parameters are "
                f"{', '.join(names)}",
                argument="p0",
            )
        missing = [n for n in names if n not in p0]
        if missing:
            raise InputError(
                f"no starting value for {', '.join(missing)}", argument="p0", received=dict(p0)
            )
        return _checks.check_p0([p0[n] for n in names], len(names))
    return _checks.check_p0(p0, len(names))


def _bounds(bounds, names: tuple[str, ...]):
    if bounds is None:
        return (-np.inf, np.inf)
    if isinstance(bounds, Mapping):
        lb, ub = np.full(len(names), -np.inf), np.full(len(names), np.inf)
        for key, pair in bounds.items():
            if key not in names:
                raise InputError(
                    f"unknown parameter {key!r}; the model's parameters are {', '.join(names)}",
                    argument="bounds",
                )
            try:
                low, high = pair
                i = names.index(key)
                lb[i] = -np.inf if low is None else float(low)
                ub[i] = np.inf if high is None else float(high)
            except (TypeError, ValueError):
                raise InputError(
                    f"bounds for {key!r} must be a pair (lower, upper)",
                    argument="bounds",
                    received=pair,
                ) from None
        return (lb, ub)
    return bounds


def _independent(x, model: _Model) -> np.ndarray:
    if isinstance(x, Mapping):
        missing = [v for v in model.variables if v not in x]
        if missing:
            raise InputError(
                f"no data for variable(s) {', '.join(missing)}; got columns {', '.join(map(str, x))}",
                argument="x",
            )
        from jaxpro.io import as_array

        columns = [
            as_array(x[v], argument=f"x[{v!r}]", ndim=1, allow_nonfinite=True)
            for v in model.variables
        ]
        lengths = {c.shape[0] for c in columns}
        if len(lengths) > 1:
            raise InputError(f"variables have different lengths {sorted(lengths)}", argument="x")
        return columns[0] if len(columns) == 1 else np.stack(columns)
    return x


# --------------------------------------------------------------------------- result


class _Statistics:
    """A fit's residual summary and R^2: given, or computed on first use and kept.

    Their pass over the data (the model at every point, sums, quartiles of the
    residuals) took two thirds of a warm million-point fit (30 of 45 ms, two
    Gaussians), more than the solve; a caller who reads only the parameters
    and their errors never pays it.
    """

    __slots__ = ("_compute", "_value")

    def __init__(self, compute: Callable[[], tuple[dict, float]] | None = None, value=None):
        self._compute, self._value = compute, value

    def get(self) -> tuple[dict, float]:
        """``(residuals summary, r_squared)``."""
        if self._value is None:
            self._value = self._compute()
            self._compute = None
        return self._value


def _fingerprint(data: _orchestrate.CurveData) -> tuple[float, ...]:
    """Weighted sums over an even sample of ~4096 of the data's points (x, y, weights): ~20 us.

    The data are the caller's arrays, not copies: statistics computed later
    compare this fingerprint to refuse arrays modified in place since the fit.
    """
    stride = max(1, data.n // 4096)
    parts = [data.x[..., ::stride], data.y[::stride]]
    if data.weights is not None:
        parts.append(data.weights[::stride])
    # weighted by position, so reordering the points changes it too
    return tuple(
        float(np.add.reduce(flat * np.linspace(1.0, 2.0, flat.size)))
        for flat in (part.reshape(-1) for part in parts)
    )


@dataclass(frozen=True, repr=False)
class FitResult(Result):
    """The outcome of :func:`jaxpro.fit`.

    Attributes:
        names: parameter names, in order.
        values: best-fit values.
        stderr: standard errors (inf when the covariance cannot be estimated).
        covariance, correlation: ``(p, p)`` matrices.
        ci_lower, ci_upper: t-based confidence limits at ``confidence``.
        confidence: level of the intervals (e.g. 0.95).
        chi2: sum of squared weighted residuals; dof: n - p;
        reduced_chi2: chi2 / dof; r_squared: (weighted) coefficient of determination.
        aic, bic: information criteria ``n ln(chi2/n) + 2p`` and ``n ln(chi2/n) + p ln n``.
        cost: the minimised objective (0.5 * sum of rho; 0.5 * chi2 for the linear loss).
        residuals: summary of weighted residuals (min, quartiles, max, rms).
        converged: the solver met a convergence test; status, message: its code and words.
        nfev, njev, iterations: full-data evaluations, Jacobians used, accepted steps.
        warnings: plain-language reasons to distrust the result (empty when none).
        plan, timings: what was done and why; where the time went.
    """

    names: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    confidence: float
    chi2: float
    dof: int
    reduced_chi2: float
    aic: float
    bic: float
    cost: float
    n: int
    converged: bool
    status: int
    message: str
    nfev: int
    njev: int
    iterations: int
    warnings: tuple[str, ...]
    plan: Plan
    timings: Timings
    model: _Model = field(repr=False)
    data: _orchestrate.CurveData = field(repr=False)
    statistics: _Statistics = field(repr=False, compare=False)
    absolute_sigma: bool = False
    kind = "fit"

    @property
    def r_squared(self) -> float:
        """(Weighted) coefficient of determination, ``1 - chi2 / ss_tot``."""
        return self.statistics.get()[1]

    @property
    def residuals(self) -> dict:
        """Summary of the weighted residuals: min, q1, median, q3, max, mean, rms."""
        return self.statistics.get()[0]

    @property
    def params(self) -> dict[str, float]:
        """Best-fit values by name."""
        return {n: float(v) for n, v in zip(self.names, self.values, strict=True)}

    @property
    def ok(self) -> bool:
        """Converged with a usable covariance and nothing to warn about."""
        return self.converged and not self.warnings

    def __getitem__(self, name: str) -> float:
        return self.params[name]

    # ------------------------------------------------------------- prediction

    def predict(self, x) -> np.ndarray:
        """Model values at ``x`` (same layout as the fitted x: array or dict of columns)."""
        xs = self._x(x)
        return np.asarray(_evaluate(self.model.function)(xs, self.values))

    def predict_interval(
        self, x, level: float | None = None, *, kind: str = "confidence"
    ) -> Interval:
        """Pointwise band for the model at ``x`` by the delta method.

        Args:
            x: where to evaluate (array, or dict of columns for several variables).
            level: coverage (default: the fit's ``confidence``).
            kind: "confidence" (uncertainty of the curve) or "prediction" (of a
                new observation: adds the residual variance, ``reduced_chi2``
                unless ``absolute_sigma``, in which case 1 in units of sigma).

        Returns:
            :class:`Interval` of NumPy arrays.
        """
        if kind not in ("confidence", "prediction"):
            raise InputError("must be 'confidence' or 'prediction'", argument="kind", received=kind)
        level = self.confidence if level is None else _check_level(level)
        xs = self._x(x)
        value, grad = _value_and_gradient(self.model.function)(xs, self.values)
        value, grad = np.asarray(value), np.asarray(grad)
        variance = np.einsum("ij,jk,ik->i", grad, self.covariance, grad)
        if kind == "prediction":
            variance = variance + (1.0 if self.absolute_sigma else self.reduced_chi2)
        half = _t_quantile(level, self.dof) * np.sqrt(variance)
        return Interval(value, value - half, value + half)

    def _x(self, x) -> np.ndarray:
        if isinstance(x, Mapping):
            return _independent(x, self.model)
        arr = np.asarray(x, dtype=np.float64)
        return arr

    # ------------------------------------------------------------- reporting

    def summary(self) -> str:
        pct = f"{100 * self.confidence:g}%"
        rows = []
        for i, name in enumerate(self.names):
            rel = abs(self.stderr[i] / self.values[i]) if self.values[i] != 0 else math.inf
            rows.append(
                (
                    name,
                    _num(self.values[i]),
                    _num(self.stderr[i]),
                    f"{100 * rel:.3g}%" if math.isfinite(rel) else "inf",
                    _num(self.ci_lower[i]),
                    _num(self.ci_upper[i]),
                )
            )
        table = format_table(
            ("parameter", "value", "std err", "rel err", f"{pct} low", f"{pct} high"), rows
        )
        head = "jaxpro fit" + (f": {self.model.expression}" if self.model.expression else "")
        verdict = "converged" if self.converged else "NOT converged"
        lines = [
            head,
            table,
            "",
            f"{verdict}: {self.message} ({self.iterations} iterations, {self.nfev} evaluations)",
            f"n = {self.n}, dof = {self.dof}, chi2 = {self.chi2:.6g}, reduced chi2 = {self.reduced_chi2:.6g}, "
            f"R^2 = {self.r_squared:.6g}",
            f"AIC = {self.aic:.6g}, BIC = {self.bic:.6g}, residual rms = {self.residuals['rms']:.4g}",
        ]
        strong = _strong_correlations(self.names, self.correlation, 0.95)
        if strong:
            lines.append("strong correlations: " + ", ".join(strong))
        lines.append("plan: " + self.plan.summary().replace("\n", "\n      "))
        lines.append(self.timings.summary())
        if self.warnings:
            lines.append("WARNING: this result needs care:")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {
            "model": self.model.expression,
            "parameters": {
                name: {
                    "value": self.values[i],
                    "stderr": self.stderr[i],
                    "ci": [self.ci_lower[i], self.ci_upper[i]],
                }
                for i, name in enumerate(self.names)
            },
            "confidence": self.confidence,
            "covariance": self.covariance,
            "correlation": self.correlation,
            "statistics": {
                "n": self.n,
                "dof": self.dof,
                "chi2": self.chi2,
                "reduced_chi2": self.reduced_chi2,
                "r_squared": self.r_squared,
                "aic": self.aic,
                "bic": self.bic,
                "cost": self.cost,
                "residuals": self.residuals,
            },
            "convergence": {
                "converged": self.converged,
                "status": self.status,
                "message": self.message,
                "iterations": self.iterations,
                "nfev": self.nfev,
                "njev": self.njev,
            },
            "ok": self.ok,
            "warnings": list(self.warnings),
        }

    def plot(self, *, max_points: int = 5000):
        """Data, fit, confidence band and a residual panel, as a matplotlib Figure.

        Args:
            max_points: data points drawn at most (an even stride through the data).
        """
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7, 5.5), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=self.data.x.ndim == 1, height_ratios=(3, 1))
        x, y = self.data.x, self.data.y
        stride = max(1, self.n // max_points)
        shown = slice(None, None, stride)
        fitted = self.predict(x[..., shown])
        resid = y[shown] - fitted
        if x.ndim == 1:
            grid = np.linspace(np.min(x), np.max(x), 400)
            band = self.predict_interval(grid)
            top.plot(x[shown], y[shown], ".", ms=3, alpha=0.6, label="data")
            top.plot(grid, band.value, "-", lw=1.8, label="fit")
            top.fill_between(
                grid, band.lower, band.upper, alpha=0.3, label=f"{100 * self.confidence:g}% band"
            )
            bottom.plot(x[shown], resid, ".", ms=3, alpha=0.6)
            bottom.set_xlabel(self.model.variables[0])
        else:
            top.plot(fitted, y[shown], ".", ms=3, alpha=0.6, label="data")
            lo, hi = float(np.min(fitted)), float(np.max(fitted))
            top.plot([lo, hi], [lo, hi], "-", lw=1.2, label="y = fit")
            top.set_xlabel("fitted")
            bottom.plot(fitted, resid, ".", ms=3, alpha=0.6)
            bottom.set_xlabel("fitted")
        bottom.axhline(0.0, color="k", lw=0.8)
        top.set_ylabel("y")
        bottom.set_ylabel("residual")
        top.legend(loc="best", fontsize="small")
        top.set_title(self.model.expression or "fit", fontsize="medium")
        return figure


def _num(value: float) -> str:
    return format(float(value), ".6g")


def _strong_correlations(names, correlation, limit) -> list[str]:
    out = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            c = correlation[i, j]
            if np.isfinite(c) and abs(c) >= limit:
                out.append(f"{names[i]}~{names[j]} {c:+.3f}")
    return out


def _check_level(level) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InputError(
            "must be a number in (0, 1)", argument="confidence", received=level
        ) from None
    if not 0 < value < 1:
        raise InputError("must be in (0, 1)", argument="confidence", received=level)
    return value


def _t_quantile(level: float, dof: int) -> float:
    # scipy.special, not scipy.stats: the same function, a third of the import time
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.5 + level / 2)) if dof > 0 else math.inf


@functools.lru_cache(maxsize=64)
def _evaluate(function: Callable):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def values(x, theta):
        return jnp.broadcast_to(function(x, *theta), x.shape[-1:])

    def call(x, theta):
        with float64():
            return values(np.asarray(x, np.float64), np.asarray(theta, np.float64))

    return call


@functools.lru_cache(maxsize=64)
def _value_and_gradient(function: Callable):
    import jax
    import jax.numpy as jnp

    def at(theta, x):
        return jnp.broadcast_to(function(x, *theta), x.shape[-1:])

    @jax.jit
    def both(x, theta):
        return at(theta, x), jax.jacfwd(at)(theta, x)

    def call(x, theta):
        with float64():
            return both(np.asarray(x, np.float64), np.asarray(theta, np.float64))

    return call


# --------------------------------------------------------------------------- statistics


def _residual_statistics(model: _Model, data: _orchestrate.CurveData, theta: np.ndarray):
    """Weighted-residual summary and the sums for R^2 of in-memory data.

    Residuals are weighted by 1/sigma, or whitened by the Cholesky factor of a
    full covariance. R^2 compares with the weighted (generalised least-squares)
    mean of y.

    Returns:
        ``(summary, ss_res, ss_tot)``.
    """
    if data.chol is None:

        def chunks():
            for start in range(0, data.n, _PREDICT_CHUNK):
                stop = min(data.n, start + _PREDICT_CHUNK)
                w = None if data.weights is None else data.weights[start:stop]
                yield data.x[..., start:stop], data.y[start:stop], w

        return _streamed_statistics(model, chunks(), data.n, theta)
    from scipy.linalg import solve_triangular

    def whiten(v):
        return solve_triangular(data.chol, v, lower=True)

    evaluate = _evaluate(model.function)
    ones = whiten(np.ones(data.n))
    y_mean = float(ones @ whiten(data.y) / (ones @ ones))
    residual = whiten(data.y - np.asarray(evaluate(data.x, theta)))
    deviation = whiten(data.y - y_mean)
    ss_res = float(residual @ residual)
    return _summarise([residual], data.n, ss_res), ss_res, float(deviation @ deviation)


def _streamed_statistics(model: _Model, chunks, n: int, theta: np.ndarray):
    """One pass over ``(x, y, w)`` chunks (``w`` = 1/sigma or None): ``(summary, ss_res, ss_tot)``.

    The weighted sum of squares about the mean comes from sums shifted by the
    first chunk's mean, which avoids cancellation when the mean is large.
    """
    evaluate = _evaluate(model.function)
    stride = max(1, n // _QUANTILE_POINTS)
    sampled, lowest, highest = [], math.inf, -math.inf
    total = total_sq = 0.0
    shift = None
    sw = swd = swd2 = 0.0  # sums of w^2, w^2 d, w^2 d^2 with d = y - shift
    start = 0
    for x, y, w in chunks:
        r = y - np.asarray(evaluate(x, theta))
        w2 = np.ones_like(y) if w is None else w * w
        if shift is None:
            shift = float(np.sum(w2 * y) / np.sum(w2))
        if w is not None:
            r = r * w
        d = y - shift
        sw += float(np.sum(w2))
        swd += float(np.dot(w2, d))
        swd2 += float(np.dot(w2, d * d))
        total += float(np.sum(r))
        total_sq += float(np.dot(r, r))
        lowest = min(lowest, float(np.min(r)))
        highest = max(highest, float(np.max(r)))
        sampled.append(r[(-start) % stride :: stride].copy())  # a view would pin the chunk
        start += y.shape[0]
    ss_tot = swd2 - swd * swd / sw
    return _summarise(sampled, n, total_sq, total, lowest, highest), total_sq, ss_tot


def _distributed_statistics(model: _Model, data: _orchestrate.CurveData, theta: np.ndarray, n: int):
    """:func:`_residual_statistics` over every process's shard (all-gathers of a few sums).

    Quartiles come from an equal-size sample of each shard's residuals.
    """
    from jax.experimental import multihost_utils

    def gathered(values):
        with float64():  # the gather travels as JAX arrays: keep all 64 bits
            return np.asarray(multihost_utils.process_allgather(np.asarray(values, np.float64)))

    evaluate = _evaluate(model.function)
    w = np.ones(data.n) if data.weights is None else data.weights
    r = (data.y - np.asarray(evaluate(data.x, theta))) * w
    w2 = w * w
    sums = gathered([np.sum(w2), np.dot(w2, data.y)]).reshape(-1, 2).sum(axis=0)
    mean = sums[1] / sums[0]
    local = [np.dot(r, r), np.dot(w2, (data.y - mean) ** 2), np.sum(r), np.min(r), -np.max(r)]
    parts = gathered(local).reshape(-1, 5)
    ss_res, ss_tot, total = parts[:, 0].sum(), parts[:, 1].sum(), parts[:, 2].sum()
    lowest, highest = parts[:, 3].min(), -parts[:, 4].min()
    sample = r[np.linspace(0, data.n - 1, 2048).astype(np.int64)]
    samples = [gathered(sample).reshape(-1)]
    return (
        _summarise(samples, n, float(ss_res), float(total), float(lowest), float(highest)),
        float(ss_res),
        float(ss_tot),
    )


def _summarise(samples, n, total_sq, total=None, lowest=None, highest=None) -> dict:
    values = np.concatenate(samples)
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "min": float(np.min(values)) if lowest is None else lowest,
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "max": float(np.max(values)) if highest is None else highest,
        "mean": float(np.sum(values)) / n if total is None else total / n,
        "rms": math.sqrt(total_sq / n),
    }


def _diagnose(
    names,
    values,
    stderr,
    correlation,
    converged,
    message,
    active,
    dof,
    reduced_chi2,
    absolute_sigma,
    has_sigma,
):
    """Plain-language reasons to distrust a fit."""
    out = []
    if not converged:
        out.append(f"the solver did not converge ({message}); raise max_nfev or give a better p0")
    if not np.all(np.isfinite(stderr)):
        out.append(
            "the covariance could not be estimated (the Jacobian is rank-deficient at the solution): "
            "some parameters are not determined by the data; fix or remove one of a redundant pair"
        )
    else:
        loose = [n for n, v, s in zip(names, values, stderr, strict=True) if s > abs(v) and v != 0]
        if loose:
            out.append(
                f"standard error exceeds the value for {', '.join(loose)}: the data barely constrain them"
            )
        near_one = _strong_correlations(names, correlation, 0.999)
        if near_one:
            out.append(
                f"parameters are almost perfectly correlated ({', '.join(near_one)}): the model is "
                "nearly over-parameterised; reparameterise or fix one"
            )
    at_bound = [n for n, a in zip(names, active, strict=True) if a != 0]
    if at_bound:
        out.append(
            f"{', '.join(at_bound)} ended on a bound: the optimum may lie beyond it and the "
            "standard errors there are not meaningful"
        )
    if absolute_sigma and has_sigma and dof > 0 and np.isfinite(reduced_chi2):
        from scipy.special import chdtrc  # the chi-square survival function

        p = float(chdtrc(dof, reduced_chi2 * dof))
        if p < 1e-3 or p > 1 - 1e-3:
            side = "large" if p < 0.5 else "small"
            out.append(
                f"reduced chi2 = {reduced_chi2:.3g} is too {side} for the given sigma "
                f"(chi2 test p = {min(p, 1 - p):.1e}): sigma is misestimated or the model is inadequate"
            )
    return tuple(out)


# --------------------------------------------------------------------------- entry point


def fit(
    model: Callable | str,
    x,
    y=None,
    p0=None,
    *,
    sigma=None,
    bounds=None,
    loss: str | Callable = "linear",
    f_scale: float = 1.0,
    method: str | None = None,
    variables: Sequence[str] | None = None,
    absolute_sigma: bool = False,
    nan_policy: str | None = None,
    ftol: float | None = None,
    xtol: float | None = None,
    gtol: float | None = None,
    max_nfev: int | None = None,
    x_scale=None,
    confidence: float = 0.95,
    strict: bool = False,
    chunk_rows: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit a model to data by (robust) nonlinear least squares.

    Args:
        model: ``f(x, *params)`` (written with ``jax.numpy``, or with NumPy: then
            translated or run on the host, and the plan says which), or an expression
            string such as ``"a*exp(-b*x) + c"`` (parsed safely, never eval'ed).
        x: independent variable ``(n,)``, ``(k, n)``, a dict of named columns
            (one per variable of an expression), or a :func:`jaxpro.io.stream`
            (data read chunk by chunk, for data larger than memory; ``y`` and
            ``sigma`` then come from the stream).
        y: observations ``(n,)``.
        p0: starting values: a dict by name, a sequence, or None (all ones).
        sigma: ``(n,)`` standard deviations of ``y`` or an ``(n, n)`` covariance.
        bounds: dict ``{name: (lower, upper)}`` (None for no bound) or SciPy's ``(lb, ub)``.
        loss: "linear", "soft_l1", "huber", "cauchy", "arctan" or ``rho(z)``.
        f_scale: residual scale where robust losses start to down-weight.
        method: "lm", "trf" or None (jaxpro chooses; see ``result.plan``).
        variables: names of the independent variables of an expression
            (default: the keys of ``x`` if a dict, the x columns of a stream,
            else ``("x",)``).
        absolute_sigma: sigma is absolute (covariance not rescaled by reduced chi2).
        nan_policy: None (reject NaN/Inf) or "omit" (drop those points).
        ftol, xtol, gtol, max_nfev, x_scale: solver settings (see ``least_squares``).
        confidence: level of the reported confidence intervals.
        strict: raise ConvergenceError instead of returning an untrustworthy result.
        chunk_rows: rows per chunk when streaming (default 2**20).
        progress: show a progress bar per pass when streaming on a terminal.

    Returns:
        :class:`FitResult`.
    """
    from jaxpro._streams import DEFAULT_ROWS, Stream

    started = time.perf_counter()
    confidence = _check_level(confidence)
    streaming = isinstance(x, Stream)
    if variables is None:
        if isinstance(x, Mapping):
            variables = tuple(x)
        elif streaming and hasattr(x, "x_names"):
            variables = x.x_names
        else:
            variables = ("x",)
    resolved = _resolve_model(model, tuple(variables), p0)
    theta0 = _start_values(p0, resolved.names)
    n_params = len(resolved.names)
    settings = _orchestrate.resolve_settings(
        n_params,
        method=method,
        bounds=_bounds(bounds, resolved.names),
        loss=loss,
        f_scale=f_scale,
        ftol=ftol,
        xtol=xtol,
        gtol=gtol,
        max_nfev=max_nfev,
        x_scale=x_scale,
    )
    _checks.check_inside(theta0, settings.lb, settings.ub, names=resolved.names)
    bounded = [
        n
        for n, lo, hi in zip(resolved.names, settings.lb, settings.ub, strict=True)
        if np.isfinite(lo) or np.isfinite(hi)
    ]
    if streaming:
        if y is not None or sigma is not None:
            raise InputError("with a stream, y and sigma come from the stream", argument="y")
        from jaxpro.fit._stream import solve_stream

        rows = DEFAULT_ROWS if chunk_rows is None else int(chunk_rows)
        with float64():
            run = solve_stream(
                resolved.function, x, theta0, settings, chunk_rows=rows, progress=progress
            )
        n = run.n
        values = np.asarray(run.solved.outcome.x, dtype=np.float64)
        chunks = ((c.x, c.y, None if c.sigma is None else 1.0 / c.sigma) for c in x.chunks(rows))
        stats = _known(_streamed_statistics(resolved, chunks, n, values))
        plan = build_stream_plan(method, run, n_params, bounded, x.description)
        # points to draw: a spread sample, or the first rows of a source without random access
        sample = x.sample(_PLOT_POINTS) or next(iter(x.chunks(_PLOT_POINTS)))
        weights = None if sample.sigma is None else 1.0 / sample.sigma
        shown = _orchestrate.CurveData(sample.x, sample.y, weights, None, None)
        solved, has_sigma = run.solved, sample.sigma is not None
    else:
        xdata = _independent(x, resolved)
        data = _orchestrate.prepare_curve_data(
            xdata, y, sigma, nan_policy=nan_policy, x_name="x", y_name="y"
        )
        if data.n < n_params:
            raise InputError(
                f"{data.n} data points cannot determine {n_params} parameters", argument="y"
            )
        with float64():
            run = _orchestrate.run_curve(
                resolved.function, data, theta0, settings, auto_method=method in (None, "auto")
            )
        if run.route.predict is not resolved.function:  # written with NumPy: as it ran
            resolved = replace(resolved, function=run.route.predict)
        n = run.n
        values = np.asarray(run.solved.outcome.x, dtype=np.float64)
        if run.processes > 1:  # every process takes part: never left for later
            stats = _known(_distributed_statistics(resolved, data, values, n))
        elif settings.loss == "linear" and data.chol is None:
            # the solver's chi2 is at the reported values: its last pass there, or
            # one before a final Gauss-Newton step whose gain is below rounding
            stats = _later(resolved, data, values, float(run.solved.outcome.chi2))
        else:
            # a fresh pass at the reported values: under a robust loss the
            # solver's last pass may precede its final Gauss-Newton correction,
            # which moves chi2 to first order
            stats = _known(_residual_statistics(resolved, data, values))
        plan = build_plan(method, run, n, n_params, bounded)
        shown, solved, has_sigma = data, run.solved, sigma is not None
    result = _result(
        resolved, solved, n, stats, plan, started, shown, confidence, absolute_sigma, has_sigma
    )
    if strict and not result.ok:
        raise ConvergenceError("fit is not trustworthy: " + "; ".join(result.warnings), result)
    return result


def _r_squared(chi2: float, ss_tot: float) -> float:
    return 1.0 - chi2 / ss_tot if ss_tot > 0 else math.nan


def _known(stats) -> tuple[float, _Statistics]:
    """``(chi2, statistics)`` from a pass's ``(summary, chi2, ss_tot)``."""
    summary, chi2, ss_tot = stats
    return chi2, _Statistics(value=(summary, _r_squared(chi2, ss_tot)))


def _later(model: _Model, data, theta: np.ndarray, chi2: float) -> tuple[float, _Statistics]:
    """``(chi2, statistics)`` whose pass over the data waits until a caller asks for it."""
    fitted = _fingerprint(data)

    def compute():
        if _fingerprint(data) != fitted:
            raise InputError(
                "the data were modified in place after the fit, so its R^2 and residuals can no"
                " longer be computed; pass a copy (y.copy()) to keep the arrays the fit used",
                argument="y",
            )
        summary, _, ss_tot = _residual_statistics(model, data, theta)
        return summary, _r_squared(chi2, ss_tot)

    return chi2, _Statistics(compute)


def _result(
    resolved: _Model,
    solved,
    n: int,
    stats: tuple[float, _Statistics],
    plan: Plan,
    started: float,
    data: _orchestrate.CurveData,
    confidence: float,
    absolute_sigma: bool,
    has_sigma: bool,
) -> FitResult:
    """Assemble a :class:`FitResult` from a solve and the residual statistics at its answer."""
    out = solved.outcome
    n_params = len(resolved.names)
    status = int(out.status)
    converged = status > 0
    values = np.asarray(out.x, dtype=np.float64)
    # an inestimable covariance is reported in result.warnings instead
    covariance = _orchestrate.scaled_covariance(
        solved, n, n_params, absolute_sigma, float(out.cost), warn=False
    )
    stderr = np.sqrt(np.clip(np.diag(covariance), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = covariance / np.outer(stderr, stderr)
    dof = n - n_params
    half = _t_quantile(confidence, dof) * stderr
    chi2, statistics = stats
    reduced = chi2 / dof if dof > 0 else math.inf
    log_term = n * math.log(chi2 / n) if chi2 > 0 else -math.inf
    message = _orchestrate.MESSAGES.get(status, str(status))
    diagnosis = _diagnose(
        resolved.names,
        values,
        stderr,
        correlation,
        converged,
        message,
        np.asarray(out.active_mask),
        dof,
        reduced,
        absolute_sigma,
        has_sigma,
    )
    timings = Timings(
        compile=solved.compile_seconds,
        run=solved.run_seconds,
        total=time.perf_counter() - started,
        programs=solved.programs,
    )
    return FitResult(
        names=resolved.names,
        values=values,
        stderr=stderr,
        covariance=covariance,
        correlation=correlation,
        ci_lower=values - half,
        ci_upper=values + half,
        confidence=confidence,
        chi2=chi2,
        dof=dof,
        reduced_chi2=reduced,
        aic=log_term + 2 * n_params,
        bic=log_term + n_params * math.log(n),
        cost=float(out.cost),
        n=n,
        converged=converged,
        status=status,
        message=message,
        nfev=int(out.nfev),
        njev=int(out.njev),
        iterations=int(out.nit),
        warnings=diagnosis,
        plan=plan,
        timings=timings,
        model=resolved,
        data=data,
        statistics=statistics,
        absolute_sigma=absolute_sigma,
    )
