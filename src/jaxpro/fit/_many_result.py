"""``fit_many``'s result: :class:`ManyFitResult`, and the statistics assembled into it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.fit import _compact, _orchestrate
from jaxpro.fit._fit import _Model
from jaxpro.fit._plan import method_reasons

__all__ = ["ManyFitResult", "assemble", "import_special", "t_quantiles", "weighted_spread"]


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


def weighted_spread(y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
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


def import_special() -> None:
    """Import ``scipy.special`` (for :func:`t_quantiles`; run while XLA compiles).

    It takes 0.1-0.15 s, which a first call otherwise pays after its fits, in
    series; beside XLA's compilation (which releases the GIL) it costs nothing,
    and a later ``import`` waits for it under Python's import lock.
    """
    import importlib

    importlib.import_module("scipy.special")


def t_quantiles(dof: np.ndarray, confidence: float) -> np.ndarray:
    """The two-sided t quantile for each curve's degrees of freedom (inf where none)."""
    from scipy.special import stdtrit  # scipy.stats' t.ppf, a third of the import time

    levels, index = np.unique(np.maximum(dof, 1), return_inverse=True)
    quantile = stdtrit(levels, 0.5 + confidence / 2)[index]
    return np.where(dof > 0, quantile, np.inf)


def assemble(
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
    parallelism=(1, 1),
    translated=False,
) -> ManyFitResult:
    """The :class:`ManyFitResult` from the solve's columns (host work, NumPy).

    ``paths`` counts the curves each program finished; ``parallelism`` is
    ``(devices, host threads)`` of the solve; ``translated``: the model was
    written with NumPy and runs as its jax.numpy translation.
    """
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
    if translated:
        reasons.append(
            "model: written with NumPy, run as its jax.numpy translation (its values equal "
            "NumPy's at the first curve's start to 1e-9); writing it with jax.numpy skips "
            "that check"
        )
    paths = paths or {}
    if "compact LM" in paths:
        reasons.append(
            f"{paths['compact LM']} curve(s) fitted by the compact LM (normal equations scaled "
            "by the Jacobian's column norms, Nielsen's damping, convergence tested on the "
            "undamped Gauss-Newton step; a small program, quick to compile)"
            + (
                ", every trial point inside the bounds (an interior optimum, which TRF reaches too)"
                if settings.method == "trf"
                else ""
            )
            + (
                f"; {paths['LM']} curve(s) it gave up on (ill-conditioned, or not converged "
                f"within {_compact.BUDGET} evaluations) refitted from p0 by the full "
                "trust-region LM"
                if paths.get("LM")
                else ""
            )
            + (
                f"; {paths['TRF']} curve(s) it gave up on (a step left the bounds, "
                f"ill-conditioned, or not converged within {_compact.BUDGET} evaluations) "
                "refitted from p0 by TRF"
                if paths.get("TRF") and settings.method == "trf"
                else ""
            )
        )
    devices, workers = parallelism
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
            "model_path": "jax.numpy translation" if translated else "jax",
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
