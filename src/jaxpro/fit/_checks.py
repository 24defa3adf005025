"""Argument checks shared by curve_fit, least_squares and fit: fail early, name the argument."""

from __future__ import annotations

import numpy as np

from jaxpro.errors import InputError
from jaxpro.io import as_array

METHODS = ("lm", "trf")
# least_squares options curve_fit forwards; the ignored ones only tune finite
# differences or solvers jaxpro replaces with exact equivalents.
CURVE_FIT_KWARGS = ("ftol", "xtol", "gtol", "max_nfev", "maxfev", "x_scale", "loss", "f_scale")
IGNORED_KWARGS = (
    "diff_step",
    "epsfcn",
    "tr_solver",
    "tr_options",
    "verbose",
    "col_deriv",
    "factor",
    "diag",
)

# Termination defaults. SciPy's 1e-8 stops ENSO, MGH09 and Thurber at 3-4
# correct digits; 1e-15 (with both solvers' stall tests, which stop once the
# predicted reduction is below the cost's rounding) reaches 6 or more digits on
# every NIST StRD problem-start, at the price of one or two extra iterations on
# quadratically convergent fits. Measured on the 15 problems x 2 starts: 1e-12
# left ENSO at 5.0-5.3 digits and MGH09 (TRF) at 5.8.
FTOL = 1e-15
XTOL = 1e-15
GTOL = 1e-15


def max_nfev_default(n_params: int) -> int:
    return 200 * (n_params + 1)


def check_tolerance(value, name: str) -> float:
    try:
        tol = float(value)
    except (TypeError, ValueError):
        raise InputError("must be a number", argument=name, received=value) from None
    if not (tol >= 0) or not np.isfinite(tol):
        raise InputError("must be a finite number >= 0", argument=name, received=value)
    return tol


def check_max_nfev(value, n_params: int) -> int:
    if value is None:
        return max_nfev_default(n_params)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError("must be a positive integer", argument="max_nfev", received=value)
    return int(value)


def check_p0(p0, n_params: int | None, argument: str = "p0") -> np.ndarray:
    theta = as_array(p0, argument=argument, ndim=1)
    if n_params is not None and theta.shape[0] != n_params:
        raise InputError(
            f"has {theta.shape[0]} values but the model has {n_params} parameters",
            argument=argument,
            received=p0,
        )
    return theta


def check_bounds(bounds, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    """SciPy-style ``(lb, ub)`` (scalars or length-p arrays) as two float arrays."""
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise InputError(
            "must be a pair (lower, upper)", argument="bounds", received=bounds
        ) from None
    result = []
    for name, side in (("lower", lower), ("upper", upper)):
        try:
            arr = np.asarray(side, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"{name} bound is not numeric", argument="bounds", received=side
            ) from None
        if arr.ndim == 0:
            arr = np.full(n_params, float(arr))
        if arr.shape != (n_params,):
            raise InputError(
                f"{name} bound must be a scalar or have {n_params} values",
                argument="bounds",
                received=side,
            )
        if np.any(np.isnan(arr)):
            raise InputError(f"{name} bound contains NaN", argument="bounds", received=side)
        result.append(arr)
    lb, ub = result
    bad = np.flatnonzero(lb >= ub)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"lower bound must be below upper bound; parameter {i} has lower {lb[i]:g} >= upper {ub[i]:g}",
            argument="bounds",
        )
    return lb, ub


def check_inside(
    theta: np.ndarray, lb: np.ndarray, ub: np.ndarray, names=None, argument="p0"
) -> None:
    outside = np.flatnonzero((theta < lb) | (theta > ub))
    if outside.size:
        i = int(outside[0])
        label = names[i] if names is not None else f"parameter {i}"
        raise InputError(
            f"{label} = {theta[i]:g} is outside its bounds [{lb[i]:g}, {ub[i]:g}]",
            argument=argument,
        )


def check_method(method, bounded: bool, robust: bool) -> str:
    """Resolve ``method`` (None -> TRF when bounded or robust, else LM)."""
    if method is None or method == "auto":
        return "trf" if (bounded or robust) else "lm"
    if method not in METHODS:
        raise InputError(
            "unknown method; choose 'lm', 'trf' or None", argument="method", received=method
        )
    if method == "lm" and bounded:
        raise InputError(
            "'lm' cannot handle bounds; use method='trf' or None",
            argument="method",
            received=method,
        )
    if method == "lm" and robust:
        raise InputError(
            "'lm' supports only the linear loss; use method='trf' or None",
            argument="method",
            received=method,
        )
    return method


def check_x_scale(x_scale, n_params: int, method: str):
    """Returns ``(jac_scale, scales)``; ``x_scale=None`` means 'jac' (adaptive)."""
    if x_scale is None or (isinstance(x_scale, str) and x_scale == "jac"):
        return True, np.ones(n_params)
    if isinstance(x_scale, str):
        raise InputError("must be 'jac' or positive numbers", argument="x_scale", received=x_scale)
    scales = np.asarray(x_scale, dtype=np.float64)
    if scales.ndim == 0:
        scales = np.full(n_params, float(scales))
    if scales.shape != (n_params,) or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        raise InputError(
            f"must be 'jac' or {n_params} positive finite numbers",
            argument="x_scale",
            received=x_scale,
        )
    return False, scales
