"""SciPy-compatible entry points: :func:`curve_fit` and :func:`least_squares`.

They take SciPy's arguments with SciPy's meaning and return what SciPy
returns, computed by jaxpro's compiled engine (exact Jacobians by forward-mode
autodiff, the whole iteration in one XLA loop). SciPy's own tests judge how
far that holds (``tests/fit/test_scipy_conformance.py``). Deliberate
differences:

- Tolerances default to 1e-15 rather than 1e-8, so certified problems reach
  full accuracy (SciPy's defaults stop ENSO, MGH09 and Thurber at 3-4 digits);
  None still disables a test, as in SciPy.
- ``method=None`` picks TRF for bounded problems or robust losses, else LM;
  'dogbox' runs as TRF, with a warning.
- ``jac`` strings ('2-point', '3-point', 'cs') all mean exact autodiff.
- Functions written with NumPy run as their exact jax.numpy translation, or on
  the host with forward differences as SciPy runs them (``_numpy_model``).

The orchestration all entry points share is in ``_orchestrate``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxpro._precision import float64
from jaxpro.errors import ConvergenceError, InputError, InputTypeError, ModelError
from jaxpro.fit import _checks, _data, _engine, _host_loop, _numpy_model
from jaxpro.fit._model import count_parameters, curve_residual, trace_check
from jaxpro.fit._orchestrate import (
    MESSAGES,
    CurveData,
    _solve,
    _stage_run,
    _start,
    prepare_curve_data,
    resolve_settings,
    run_curve,
    scaled_covariance,
    warn_host,
)

__all__ = ["curve_fit", "least_squares"]


def curve_fit(
    f: Callable,
    xdata,
    ydata,
    p0=None,
    sigma=None,
    absolute_sigma: bool = False,
    check_finite: bool | None = None,
    bounds=(-np.inf, np.inf),
    method: str | None = None,
    jac=None,
    *,
    full_output: bool = False,
    nan_policy: str | None = None,
    **kwargs,
):
    """Fit ``f(x, *params)`` to data by nonlinear least squares (``scipy.optimize.curve_fit``).

    Args:
        f: model ``f(x, *params)``; ``x`` is ``xdata`` (any shape, points on
            the last axis), the result has shape ``(n,)``. Written with
            ``jax.numpy`` it runs compiled with exact derivatives; written with
            NumPy it runs as its exact jax.numpy translation, or on the host
            (a ``NumPyModelWarning`` says so and what it cost).
        xdata: independent variable(s), or None (the model ignores x); ``ydata``:
            ``(n,)`` observations (a scalar is broadcast, as in SciPy).
        p0: starting parameters (default: inside the bounds as SciPy chooses,
            else ones; counted from ``f``'s signature); a scalar is one parameter.
        sigma: a scalar or ``(n,)`` standard deviations of ``ydata``, or an
            ``(n, n)`` covariance.
        absolute_sigma: use ``sigma`` in an absolute sense (pcov not rescaled).
        check_finite: accepted for SciPy compatibility; NaN/Inf are always
            rejected unless ``nan_policy='omit'`` (they would make every parameter NaN).
        bounds: ``(lower, upper)``, scalars or length-p arrays.
        method: "lm", "trf" or None (TRF if bounded or robust, else LM).
        jac: None or a string for exact autodiff, or ``jac(x, *params) -> (n, p)``.
        full_output: also return ``infodict, mesg, ier``.
        nan_policy: None/"raise" (reject NaN) or "omit" (drop those points).
        **kwargs: ``least_squares`` options: ftol, xtol, gtol, max_nfev (or
            maxfev), x_scale, loss, f_scale.

    Returns:
        ``popt, pcov`` (and ``infodict, mesg, ier`` with ``full_output``).

    Raises:
        InputError: unusable arguments; ModelError: untraceable or non-finite model;
        ConvergenceError (a RuntimeError): the evaluation budget ran out.
    """
    for name in _checks.IGNORED_KWARGS:
        kwargs.pop(name, None)
    unknown = set(kwargs) - set(_checks.CURVE_FIT_KWARGS)
    if unknown:
        raise InputTypeError(  # a TypeError, as SciPy's solvers raise it
            f"unexpected keyword argument(s) {', '.join(sorted(unknown))}",
            argument="kwargs",
        )
    if "maxfev" in kwargs:
        kwargs["max_nfev"] = kwargs.pop("maxfev")
    for name in ("ftol", "xtol", "gtol"):
        if name in kwargs:  # None disables that test, as in SciPy
            kwargs[name] = _checks.scipy_tolerance(kwargs[name])
    # check_finite=False is accepted for SciPy compatibility, but NaN/Inf are
    # still rejected: they would silently turn every parameter into NaN.
    data = prepare_curve_data(xdata, ydata, sigma, nan_policy=nan_policy, scipy_shapes=True)
    if p0 is None:
        n_params = count_parameters(f)
        theta0 = np.ones(n_params)
        if bounds is not None:
            # SciPy starts inside the bounds: the middle of a finite interval,
            # one step in from a one-sided bound, 1 where unbounded
            lb, ub = _checks.check_bounds(bounds, n_params)
            theta0 = np.where(np.isfinite(lb) & np.isfinite(ub), 0.5 * (lb + ub), theta0)
            theta0 = np.where(np.isfinite(lb) & ~np.isfinite(ub), lb + 1.0, theta0)
            theta0 = np.where(~np.isfinite(lb) & np.isfinite(ub), ub - 1.0, theta0)
    else:
        theta0 = _checks.check_p0(p0, None)
    n_params = theta0.shape[0]
    if data.n < n_params:
        raise InputTypeError(  # SciPy raises TypeError here, with this wording
            f"The number of func parameters={n_params} must not exceed the number of data"
            f" points={data.n}: {data.n} data points cannot determine {n_params} parameters",
            argument="ydata",
            received=ydata,
        )
    settings = resolve_settings(n_params, method=method, bounds=bounds, **kwargs)
    _checks.check_inside(theta0, settings.lb, settings.ub)
    user_jac = jac if callable(jac) else None
    _checks.check_jac(jac, allow_none=True)
    with float64():
        run = run_curve(f, data, theta0, settings, user_jac, auto_method=method in (None, "auto"))
        solved = run.solved
    out = solved.outcome
    status = int(out.status)
    if status == 0:
        raise ConvergenceError(
            f"Optimal parameters not found: {MESSAGES[0]} (max_nfev={settings.max_nfev})"
        )
    popt = np.asarray(out.x, dtype=np.float64)
    pcov = scaled_covariance(solved, data.n, n_params, absolute_sigma, float(out.cost))
    if not full_output:
        return popt, pcov
    infodict = {
        "nfev": int(out.nfev),
        "njev": int(out.njev),
        "fvec": (
            run.fvec
            if run.fvec is not None
            else _residual_vector(run.route.model, data, popt, run.route.jac)
        ),
        "R": np.asarray(out.R),
        "qtr": np.asarray(out.qtr),
    }
    if run.settings.method == "lm" and not run.settings.bounded:
        # (a bounded fit that LM finished inside its bounds keeps SciPy's
        # bounded output: TRF's fields)
        # MINPACK's names (SciPy's leastsq output): R stored column-wise in
        # fjac's leading block, an identity pivot (jaxpro's QR does not
        # pivot) counted as the installed SciPy counts it, and Q^T f; SciPy's
        # recipe r = triu(fjac.T[:n]) holds.
        R = np.asarray(out.R)
        fjac = np.zeros((n_params, data.n))
        fjac[:, :n_params] = R.T
        base = _ipvt_base()
        ipvt = np.arange(base, n_params + base, dtype=np.int32)
        infodict.update(fjac=fjac, ipvt=ipvt, qtf=np.asarray(out.qtr))
    return popt, pcov, infodict, MESSAGES[status], status


@functools.cache
def _ipvt_base() -> int:
    """Where the installed SciPy's ``leastsq`` counts ``ipvt`` from.

    Its Fortran MINPACK counted pivots from 1; the C translation (SciPy 1.18
    here) counts from 0 and its own covariance recipe indexes with them
    directly. Asked once of SciPy itself (a 1-parameter fit, ~0.1 ms).
    """
    from scipy.optimize import leastsq

    info = leastsq(lambda p: np.array([p[0] - 1.0, p[0] + 1.0]), [0.5], full_output=True)[2]
    return int(np.min(info["ipvt"]))


def _residual_vector(model, data: CurveData, theta, jac) -> np.ndarray:
    """Weighted residuals at ``theta`` (SciPy's ``fvec``)."""
    import jax

    with float64():
        block = {"x": data.x, "y": data.y}
        if data.chol is not None:
            block["w"] = np.ones(data.n)
            block["L"] = data.chol
        elif data.weights is not None:
            block["w"] = data.weights
        residual = curve_residual(model, jac)
        return np.asarray(jax.jit(residual)(np.asarray(theta), block))


# ----------------------------------------------------------------------------- least_squares


def _split_arguments(args: tuple, kwargs: dict):
    """Array leaves of ``(args, kwargs)`` travel as data; everything else is static."""
    import jax

    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    dynamic, static = [], []
    for leaf in leaves:
        if isinstance(leaf, np.ndarray | float | int | np.number) and not isinstance(leaf, bool):
            dynamic.append(np.asarray(leaf))
            static.append(None)
        elif hasattr(leaf, "__jax_array__") or type(leaf).__module__.startswith("jax"):
            dynamic.append(leaf)
            static.append(None)
        else:
            static.append(leaf)
    return tuple(dynamic), _Rebuild(treedef, tuple(static))


@dataclass(frozen=True)
class _Rebuild:
    treedef: Any
    static: tuple

    def __call__(self, dynamic):
        import jax

        it = iter(dynamic)
        leaves = [next(it) if s is None else s for s in self.static]
        return jax.tree.unflatten(self.treedef, leaves)


def _solve_on_host(fun, jac, rebuild, leaves, start, settings, route, m, diff_step, workers):
    """least_squares' solve by SciPy's loop on the host: ``(solved, f at x, J at x)``.

    J is SciPy's TRF/dogbox one (scaled by the robust loss) or, for LM, the
    user's ``jac`` or forward differences at the answer (see ``_host_loop``).
    """
    args, kwargs = rebuild(tuple(np.asarray(leaf) for leaf in leaves))
    p = start.shape[0]

    def residual(theta):
        return np.atleast_1d(np.asarray(fun(theta, *args, **kwargs), dtype=np.float64))

    jacobian = None
    if callable(jac):

        def jacobian(theta):
            value = _numpy_model.dense_jacobian(jac(theta, *args, **kwargs), p)
            return np.reshape(value, (m, p))

    f0 = residual(start.copy())
    route.clock.evaluations += 1
    if not np.isfinite(f0).all():
        raise ModelError("fun returned non-finite residuals (or derivatives) at x0")
    problem = _host_loop.HostProblem(residual, jacobian, m, diff_step, workers)
    return _host_loop.solve(problem, start, settings, route.clock, f0=f0)


class _LeastSquaresResult(dict):
    """Dict with attribute access, like ``scipy.optimize.OptimizeResult``."""

    __getattr__ = dict.__getitem__

    def __dir__(self):
        return list(self.keys())

    def __repr__(self):
        width = max(map(len, self.keys())) + 1
        return "\n".join(f"{k.rjust(width)}: {v!r}" for k, v in self.items())


def least_squares(
    fun: Callable,
    x0,
    jac="auto",
    bounds=(-np.inf, np.inf),
    method: str = "trf",
    ftol: float | None = _checks.UNSET,
    xtol: float | None = _checks.UNSET,
    gtol: float | None = _checks.UNSET,
    x_scale=None,
    loss="linear",
    f_scale: float = 1.0,
    diff_step=None,
    tr_solver=None,
    tr_options=None,
    jac_sparsity=None,
    max_nfev: int | None = None,
    verbose: int = 0,
    args=(),
    kwargs=None,
    callback=None,
    workers=None,
    **unused,
):
    """Minimise ``0.5 * sum(rho(fun(x, *args, **kwargs)**2))`` (``scipy.optimize.least_squares``).

    Args:
        fun: residuals ``fun(x, *args, **kwargs) -> (m,)``; written with NumPy it
            runs as its exact jax.numpy translation or on the host, as for curve_fit.
        x0: starting point, shape ``(n,)``.
        jac: "auto" (or any SciPy string: exact autodiff) or ``jac(x, *args, **kwargs) -> (m, n)``.
        bounds: ``(lower, upper)``; method: "trf", "lm" or "auto".
        ftol, xtol, gtol: termination tolerances (default 1e-15 each, tighter
            than SciPy's 1e-8; None disables that test, as in SciPy).
        x_scale: "jac" (default) or positive scales per variable.
        loss: "linear", "soft_l1", "huber", "cauchy", "arctan" or ``rho(z) -> (3, m)``.
        f_scale: inlier/outlier margin of the robust loss.
        diff_step: relative step of the forward differences, used where ``fun``
            runs on the host (default sqrt(eps), SciPy's); elsewhere the
            derivatives are exact.
        tr_solver, tr_options: SciPy's trust-region solver choice, checked as
            SciPy checks it; jaxpro solves each subproblem exactly (dense QR).
        jac_sparsity: checked ((m, n), not with 'lm'); exact derivatives do not need it.
        max_nfev: evaluation budget (default 200 * (n + 1)).
        verbose: 0 silent; 1 or 2 print SciPy's closing report (iterations run
            compiled, so there is no per-iteration report).
        args, kwargs: extra arguments of ``fun`` and ``jac``.
        callback: not supported with TRF (InputError: the iterations run
            compiled); with LM a UserWarning, as in SciPy.
        workers: a map-like callable for the host path's finite differences
            (SciPy's meaning); unused where derivatives are exact.

    Returns:
        A dict-like result with SciPy's fields: x, cost, fun, jac, grad,
        optimality, active_mask, nfev, njev, status, message, success.
    """
    import jax

    if unused:  # a TypeError, as Python raises it for SciPy's function
        raise InputTypeError(
            f"unexpected keyword argument(s) {', '.join(sorted(unused))}", argument="kwargs"
        )
    _checks.check_solver_keywords(tr_solver, tr_options, jac_sparsity, callback, method)
    if diff_step is not None:
        diff_step = _checks.check_tolerance(diff_step, "diff_step")
    theta0 = _checks.check_p0(x0, None, argument="x0")
    n_params = theta0.shape[0]
    settings = resolve_settings(
        n_params,
        method=None if method == "auto" else method,
        bounds=bounds,
        loss=loss,
        f_scale=f_scale,
        ftol=_checks.scipy_tolerance(ftol),
        xtol=_checks.scipy_tolerance(xtol),
        gtol=_checks.scipy_tolerance(gtol),
        max_nfev=max_nfev,
        x_scale=x_scale,
    )
    _checks.check_inside(theta0, settings.lb, settings.ub, argument="x0")
    _checks.check_jac(jac, allow_none=False)
    dynamic, rebuild = _split_arguments(args, kwargs or {})
    with float64():
        start = _start(theta0, settings)
        block = {"leaves": jax.device_put(dynamic)}
        route, shape = _numpy_model.residual_function(
            fun, jac, rebuild, block["leaves"], start, diff_step=diff_step, workers=workers
        )
        residual = route.model
        if len(shape) != 1 or shape[0] == 0:
            raise ModelError(
                f"fun must return a non-empty 1-D array of residuals; it returned shape {shape}"
            )
        m = shape[0]
        jac_kind = "dense"
        if callable(jac):
            # the user's jac itself, as SciPy checks it (np.atleast_2d of its value)
            if route.path == _numpy_model.HOST:
                jac_shape, jac_kind = _numpy_model.host_jac_shape(
                    jac, rebuild, block["leaves"], start
                )
                _checks.check_jacobian_kind(jac_kind, tr_solver, settings.method, x_scale)
            else:
                jac_shape = trace_check(
                    _numpy_model.raw_jac(route.jac, rebuild), start, block, what="jac"
                )
            if jac_shape != (m, n_params):
                raise ModelError(
                    f"The return value of `jac` has wrong shape: expected {(m, n_params)},"
                    f" actual {jac_shape}"
                )
        _checks.check_jac_sparsity(jac_sparsity, m, n_params)
        if settings.method == "lm" and m < n_params:
            raise InputError(
                f"method 'lm' needs at least as many residuals ({m}) as variables ({n_params})",
                argument="method",
            )
        on_host = _host_loop.used_for(route, m, settings)
        if on_host:
            # small and host-only: SciPy's own loop iterates (_host_loop)
            solved, f_val, J = _solve_on_host(
                fun, jac, rebuild, block["leaves"], start, settings, route, m, diff_step, workers
            )
        else:
            stage = (
                _engine.StageSpec(_data.Layout("direct", m), settings.loss),
                _stage_run({"block": block}, m, settings),
            )
            solved = _solve(residual, settings, (stage,), start)
        if route.path == _numpy_model.HOST:
            warn_host("fun", route, solved.run_seconds)
        out = solved.outcome
        if int(out.status) == -3:
            raise ModelError("fun returned non-finite residuals (or derivatives) at x0")
        x = np.asarray(out.x)
        if not on_host:
            f_val = np.asarray(jax.jit(residual)(x, block))
            J = np.asarray(jax.jit(jax.jacfwd(residual))(x, block))
        # SciPy's TRF returns its Jacobian already scaled by the robust loss
        scaled = on_host and settings.method != "lm" and jac_kind == "dense"
        if jac_kind != "dense":
            # SciPy returns the kind the user's jac returns (sparse or LinearOperator)
            args_, kwargs_ = rebuild(tuple(np.asarray(leaf) for leaf in block["leaves"]))
            J = jac(x.copy(), *args_, **kwargs_)
    status = int(out.status)
    nfev = int(out.nfev)
    if route.clock is not None:
        # how often fun ran, as SciPy counts: 'lm' counts the difference
        # evaluations too, 'trf' does not
        nfev = route.clock.evaluations
        if settings.method == "lm":
            nfev += route.clock.difference_evaluations
    if settings.loss != "linear" and not scaled:
        from jaxpro.fit._losses import robust_scaling

        with float64():
            _, _, j_factor = robust_scaling(settings.loss, settings.f_scale, f_val)
        if jac_kind == "dense":
            J = J * np.asarray(j_factor)[:, None]
        else:
            import scipy.sparse

            J = scipy.sparse.diags(np.asarray(j_factor)) @ J
    if verbose:
        print(
            f"{MESSAGES[status]}\nFunction evaluations {nfev}, final cost {float(out.cost):.4e},"
            f" first-order optimality {float(out.optimality):.2e}."
        )
    return _LeastSquaresResult(
        x=x,
        cost=float(out.cost),
        fun=f_val,
        jac=J,
        grad=np.asarray(out.gradient),
        optimality=float(out.optimality),
        active_mask=np.asarray(out.active_mask),
        nfev=nfev,
        # SciPy: None for 'lm' with a finite-difference jac; the string forms
        # mean exact derivatives here, but the field keeps SciPy's meaning.
        njev=None if settings.method == "lm" and not callable(jac) else int(out.njev),
        status=status,
        message=MESSAGES[status],
        success=status > 0,
    )
