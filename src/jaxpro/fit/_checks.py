"""Argument checks shared by curve_fit, least_squares and fit: fail early, name the argument."""

from __future__ import annotations

import math

import numpy as np

from jaxpro.errors import InputError, warn
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


_EPS = float(np.finfo(np.float64).eps)


class _Unset:
    """The default of a SciPy-signature tolerance: not given, so jaxpro's own default applies."""

    def __repr__(self) -> str:
        return "<jaxpro default>"


UNSET = _Unset()


def scipy_tolerance(value):
    """SciPy's meaning of a tolerance argument, for resolve_settings.

    Not given (:data:`UNSET`) -> None (jaxpro's default, :data:`FTOL`...);
    ``None`` -> 0.0 (SciPy: that termination test is disabled); else the value.
    """
    if value is UNSET:
        return None
    return 0.0 if value is None else value


def check_tolerances(method: str, ftol: float, xtol: float, gtol: float) -> None:
    """SciPy's rule: LM needs every tolerance above machine epsilon, TRF at least one."""
    eps = _EPS
    values = (ftol, xtol, gtol)
    if method == "lm" and min(values) < eps:
        raise InputError(
            f"All tolerances must be higher than machine epsilon ({eps:.2e}) for method 'lm'"
            f" (got ftol={ftol:g}, xtol={xtol:g}, gtol={gtol:g}; None disables a test, as in SciPy)"
        )
    if max(values) < eps:
        raise InputError(
            f"At least one of the tolerances must be higher than machine epsilon ({eps:.2e})"
            f" (got ftol={ftol:g}, xtol={xtol:g}, gtol={gtol:g}; None disables a test, as in SciPy)"
        )


def check_tolerance(value, name: str) -> float:
    try:
        tol = float(value)
    except (TypeError, ValueError):
        raise InputError("must be a number", argument=name, received=value) from None
    if not (tol >= 0) or not math.isfinite(tol):
        raise InputError("must be a finite number >= 0", argument=name, received=value)
    return tol


def check_max_nfev(value, n_params: int) -> int:
    if value is None:
        return max_nfev_default(n_params)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError("must be a positive integer", argument="max_nfev", received=value)
    return int(value)


def check_p0(p0, n_params: int | None, argument: str = "p0") -> np.ndarray:
    """The start as a 1-D float array; a scalar is one parameter, as in SciPy (``np.atleast_1d``)."""
    theta = np.atleast_1d(as_array(p0, argument=argument, ndim=(0, 1)))
    if n_params is not None and theta.shape[0] != n_params:
        raise InputError(
            f"has {theta.shape[0]} values but the model has {n_params} parameters",
            argument=argument,
            received=p0,
        )
    return theta


_PLAIN = (float, int, np.float64)  # scalar bounds taken without array checks


def check_bounds(bounds, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    """SciPy-style ``(lb, ub)`` (scalars or length-p arrays) or a ``scipy.optimize.Bounds``.

    Returns two float arrays of length ``n_params``.
    """
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        bounds = (bounds.lb, bounds.ub)
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise InputError(
            "must be a pair (lower, upper)", argument="bounds", received=bounds
        ) from None
    if type(lower) in _PLAIN and type(upper) in _PLAIN and lower < upper:
        # the common case (SciPy's default (-inf, inf) included), in two
        # allocations; NaN fails `lower < upper` and gets the full checks
        return np.full(n_params, float(lower)), np.full(n_params, float(upper))
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
    if ((theta >= lb) & (theta <= ub)).all():  # the common case, in one pass
        return
    outside = np.flatnonzero((theta < lb) | (theta > ub))
    if outside.size:
        i = int(outside[0])
        label = names[i] if names is not None else f"parameter {i}"
        raise InputError(
            f"Initial guess is outside of provided bounds: {label} = {theta[i]:g} is outside"
            f" its bounds [{lb[i]:g}, {ub[i]:g}]",
            argument=argument,
        )


def check_method(method, bounded: bool, robust: bool) -> str:
    """Resolve ``method`` (None -> TRF when bounded or robust, else LM; 'dogbox' -> TRF)."""
    if method is None or method == "auto":
        return "trf" if (bounded or robust) else "lm"
    if method == "dogbox":
        from jaxpro.errors import JaxproWarning

        # Dogbox and TRF solve the same bounded problem; TRF's reflective
        # steps are the more robust of the two (SciPy's documentation too
        # recommends TRF, and dogbox for small problems only).
        warn(
            "method='dogbox' ran as 'trf': jaxpro implements Trust Region Reflective and"
            " Levenberg-Marquardt; TRF solves the same bounded problem (the plan says so too)",
            JaxproWarning,
        )
        return "trf"
    if method not in METHODS:
        raise InputError(
            "unknown method; choose 'lm', 'trf', 'dogbox' (runs as 'trf') or None",
            argument="method",
            received=method,
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


# SciPy's names for its derivative estimates; jaxpro computes every one of
# them exactly by automatic differentiation ("auto" is jaxpro's own name).
JAC_STRINGS = ("auto", "2-point", "3-point", "cs")


def check_jac(jac, *, allow_none: bool) -> None:
    """``jac``: a callable, one of :data:`JAC_STRINGS` (or None where SciPy allows it)."""
    if callable(jac) or (jac is None and allow_none):
        return
    if isinstance(jac, str) and jac in JAC_STRINGS:
        return
    choices = ", ".join(repr(j) for j in JAC_STRINGS)
    raise InputError(
        f"must be a callable or one of {choices}" + (" or None" if allow_none else ""),
        argument="jac",
        received=jac,
    )


def check_x_scale(x_scale, n_params: int, method: str):
    """Returns ``(jac_scale, scales)``; ``x_scale=None`` means 'jac' (adaptive)."""
    if x_scale is None or (isinstance(x_scale, str) and x_scale == "jac"):
        return True, np.ones(n_params)
    if isinstance(x_scale, str):
        raise InputError("must be 'jac' or positive numbers", argument="x_scale", received=x_scale)
    try:
        scales = np.asarray(x_scale)
        if scales.dtype.kind not in "biuf":
            raise TypeError(scales.dtype)
        scales = scales.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(
            "must be 'jac' or positive real numbers", argument="x_scale", received=x_scale
        ) from None
    if scales.ndim == 0:
        scales = np.full(n_params, float(scales))
    if scales.shape != (n_params,) or not np.all(np.isfinite(scales)) or not np.all(scales > 0):
        raise InputError(
            f"must be 'jac' or {n_params} positive finite numbers",
            argument="x_scale",
            received=x_scale,
        )
    return False, scales


# scipy.sparse.linalg.lsmr's keywords, plus SciPy's own 'regularize'
_LSMR_OPTIONS = ("damp", "atol", "btol", "conlim", "maxiter", "show", "x0", "regularize")


def check_solver_keywords(tr_solver, tr_options, jac_sparsity, callback, method: str) -> None:
    """SciPy's trust-region keywords, checked as SciPy checks them.

    jaxpro solves every trust-region subproblem exactly (a dense QR of the
    scaled Jacobian), so ``tr_solver='lsmr'`` and its ``tr_options`` give
    the same iterates as 'exact'; they are validated, not silently dropped.

    Raises:
        InputError: an unknown ``tr_solver``, ``jac_sparsity`` with LM, or a
            ``callback`` with TRF (iterations run compiled; with LM SciPy
            warns and ignores it, and so does jaxpro); InputTypeError (a TypeError,
            as lsmr raises): an ``tr_options`` key lsmr does not take.
    """
    from jaxpro.errors import InputTypeError

    if tr_solver not in (None, "exact", "lsmr"):
        raise InputError(
            "`tr_solver` must be None, 'exact' or 'lsmr'", argument="tr_solver", received=tr_solver
        )
    if tr_options is not None and not isinstance(tr_options, dict):
        raise InputError("must be a dict", argument="tr_options", received=tr_options)
    if tr_solver == "lsmr" and tr_options:
        unknown = sorted(set(tr_options) - set(_LSMR_OPTIONS))
        if unknown:
            raise InputTypeError(
                f"lsmr() got unexpected keyword argument(s) {', '.join(unknown)};"
                f" it takes {', '.join(_LSMR_OPTIONS)}",
                argument="tr_options",
            )
    if jac_sparsity is not None:
        if method == "lm":
            raise InputError("method='lm' does not support `jac_sparsity`", argument="jac_sparsity")
        if tr_solver == "exact":
            raise InputError(
                "tr_solver='exact' works only with dense Jacobian matrices; `jac_sparsity`"
                " makes it sparse",
                argument="tr_solver",
            )
    if callback is not None and method == "lm":
        # SciPy's behaviour and wording: LM (MINPACK) takes no callback either
        warn(
            "Callback function specified, but not supported with `lm` method.",
            UserWarning,
        )
    elif callback is not None:
        raise InputError(
            "is not supported: jaxpro's iterations run compiled, with no Python call between"
            " them; use max_nfev to bound the work, or scipy.optimize.least_squares for a"
            " callback",
            argument="callback",
        )


def check_jacobian_kind(kind: str, tr_solver, method: str, x_scale) -> None:
    """SciPy's rules for a ``jac`` returning a sparse matrix or a LinearOperator.

    Args:
        kind: "dense", "sparse" or "operator" (what the user's jac returned).
    """
    if kind == "dense":
        return
    if method == "lm":
        raise InputError(
            "method='lm' works only with dense Jacobian matrices", argument="jac", received=kind
        )
    if tr_solver == "exact":
        raise InputError(
            "tr_solver='exact' works only with dense Jacobian matrices",
            argument="tr_solver",
        )
    if kind == "operator" and isinstance(x_scale, str) and x_scale == "jac":
        raise InputError(
            "x_scale='jac' can't be used when `jac` returns LinearOperator", argument="x_scale"
        )


def check_jac_sparsity(jac_sparsity, m: int, n: int) -> None:
    """``jac_sparsity`` must be ``(m, n)`` (it only says which entries may be nonzero)."""
    if jac_sparsity is None:
        return
    shape = getattr(jac_sparsity, "shape", None)
    if shape is None:
        shape = np.atleast_2d(np.asarray(jac_sparsity)).shape
    if tuple(shape) != (m, n):
        raise InputError(
            f"`jac_sparsity` has wrong shape: expected {(m, n)}, got {tuple(shape)}",
            argument="jac_sparsity",
        )
