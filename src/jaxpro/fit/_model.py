"""User models as residual functions, and the checks that turn JAX tracing failures into advice.

A curve-fitting model follows SciPy's convention ``f(x, *params)``; a
``least_squares`` residual is ``fun(params, *args, **kwargs)``. Both become a
``residual(theta, block)`` the passes differentiate. Residual functions are
memoised per model so that fitting the same model again reuses the compiled
program.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxpro.errors import InputError, InputTypeError, ModelError

__all__ = [
    "count_parameters",
    "curve_residual",
    "function_residual",
    "parameter_names",
    "trace_check",
]

_NUMPY_FIX = (
    "the model calls NumPy (or float()/int()) on a traced value; write it with jax.numpy "
    "(jnp.exp instead of np.exp, jnp.asarray instead of np.asarray)"
)
_CONTROL_FIX = (
    "the model branches in Python on a parameter or data value; use jnp.where(cond, a, b) "
    "or jax.lax.cond instead of `if`, and jnp.minimum/jnp.maximum instead of min/max"
)


def parameter_names(f: Callable, *, skip: int = 1) -> tuple[str, ...]:
    """Names of the fit parameters in ``f``'s signature (after the first ``skip`` arguments)."""
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):
        raise InputError("cannot read the model's signature; pass p0", argument="p0") from None
    params = list(signature.parameters.values())[skip:]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise InputError(
            "the model takes *args, so the number of parameters is unknown; pass p0",
            argument="p0",
        )
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional:
        raise InputError("the model has no parameters after x", argument="f", received=f)
    return tuple(positional)


def count_parameters(f: Callable, *, skip: int = 1) -> int:
    """Number of fit parameters in ``f``'s signature."""
    return len(parameter_names(f, skip=skip))


def _with_jacobian(f: Callable, jac: Callable, leading: int) -> Callable:
    """``f`` whose derivative w.r.t. its parameters is the user's ``jac`` (rows: points)."""

    @jax.custom_jvp
    def wrapped(*arguments):
        return f(*arguments)

    @wrapped.defjvp
    def _jvp(primals, tangents):
        value = f(*primals)
        theta_dot = jnp.stack([jnp.asarray(t) for t in tangents[leading:]])
        J = jnp.asarray(jac(*primals))
        return value, jnp.reshape(J @ theta_dot, jnp.shape(value))

    return wrapped


@functools.lru_cache(maxsize=128)
def curve_residual(model: Callable, jac: Callable | None = None) -> Callable:
    """``residual(theta, block)`` for ``model(x, *theta)`` against ``block['y']``.

    The block holds ``x`` (an array, or a tuple of rows stacked for the model),
    ``y``, optionally ``w`` (1/sigma; 0 marks padding) and ``L`` (lower Cholesky
    factor of the covariance of y).
    """
    f = model if jac is None else _with_jacobian(model, jac, 1)

    def residual(theta, block):
        x = block["x"]
        if isinstance(x, tuple):
            x = jnp.stack(x)
        y = block["y"]
        value = f(x, *theta)
        if (
            jnp.shape(value) != y.shape
        ):  # e.g. a constant model; a no-op broadcast still costs under vmap
            value = jnp.broadcast_to(value, y.shape)
        r = value - y
        if "L" in block:
            r = jnp.where(block["w"] > 0, r, 0.0)
            return solve_triangular(block["L"], r, lower=True)
        if "w" in block:
            w = block["w"]
            return jnp.where(w > 0, r * w, 0.0)
        return r

    return residual


def function_residual(fun: Callable, jac: Callable | None, static: Any) -> Callable:
    """``residual(theta, block)`` for ``least_squares``' ``fun(theta, *args, **kwargs)``.

    ``block`` holds the array leaves of ``(args, kwargs)``; ``static`` rebuilds them.
    """
    return _function_residual(fun, jac, static)


@functools.lru_cache(maxsize=128)
def _function_residual(fun, jac, static):
    rebuild = static

    def call(theta, *leaves):
        args, kwargs = rebuild(leaves)
        return jnp.atleast_1d(fun(theta, *args, **kwargs))

    if jac is not None:

        @jax.custom_jvp
        def call_with_jac(theta, *leaves):
            return call(theta, *leaves)

        @call_with_jac.defjvp
        def _jvp(primals, tangents):
            theta, *leaves = primals
            args, kwargs = rebuild(tuple(leaves))
            J = jnp.atleast_2d(jnp.asarray(jac(theta, *args, **kwargs)))
            return call(theta, *leaves), J @ tangents[0]

        evaluate = call_with_jac
    else:
        evaluate = call

    def residual(theta, block):
        return evaluate(theta, *block["leaves"])

    return residual


def trace_check(residual: Callable, theta, block, *, what: str = "model") -> tuple[int, ...]:
    """Trace ``residual`` once (no compilation) and explain failures.

    Returns:
        The residual's shape.

    Raises:
        ModelError: the model cannot be traced, with the usual fix.
    """
    leaves, treedef = jax.tree.flatten((theta, block))
    key = (
        residual,
        treedef,
        # dtype objects hash as their names do, without formatting one per call
        tuple((np.shape(leaf), getattr(leaf, "dtype", type(leaf))) for leaf in leaves),
    )
    known = _traced_shapes.get(key)
    if known is not None:
        return known
    try:
        out = jax.eval_shape(residual, theta, block)
    except jax.errors.TracerArrayConversionError as exc:
        raise ModelError(f"{what} cannot be traced by JAX: {_NUMPY_FIX}") from exc
    except jax.errors.TracerBoolConversionError as exc:
        raise ModelError(f"{what} cannot be traced by JAX: {_CONTROL_FIX}") from exc
    except jax.errors.ConcretizationTypeError as exc:
        # float(x)/int(x) on a traced value land here too: tell them apart
        text = str(exc)
        numpy_like = any(
            f"with the `{name}` function" in text for name in ("float", "int", "complex", "bool")
        )
        raise ModelError(
            f"{what} cannot be traced by JAX: {_NUMPY_FIX if numpy_like else _CONTROL_FIX}"
        ) from exc
    except jax.errors.TracerIntegerConversionError as exc:
        raise ModelError(f"{what} cannot be traced by JAX: {_NUMPY_FIX}") from exc
    except TypeError as exc:
        text = str(exc)
        signature = ("positional argument", "takes", "missing", "unexpected keyword argument")
        if any(words in text for words in signature):
            if what == "model":
                raise InputTypeError(
                    f"the {what} does not accept {theta.shape[0]} parameters ({text}); "
                    "make p0 match the model's parameters",
                    argument="p0",
                ) from exc
            raise InputTypeError(
                f"{what} cannot be called as {what}(x, *args, **kwargs) ({text});"
                " make args and kwargs match its signature",
                argument="args",
            ) from exc
        if "broadcast" in text or "shape" in text or "Incompatible" in text:
            raise ModelError(f"{what} returned an array of the wrong shape: {text}") from exc
        raise ModelError(f"{what} failed while tracing: {type(exc).__name__}: {text}") from exc
    except ValueError as exc:
        text = str(exc)
        if "broadcast" in text or "shape" in text or "Incompatible" in text:
            raise ModelError(f"{what} returned an array of the wrong shape: {text}") from exc
        raise ModelError(f"{what} failed while tracing: {type(exc).__name__}: {text}") from exc
    except Exception as exc:  # any other user-code failure: name it, keep the cause
        raise ModelError(f"{what} failed while tracing: {type(exc).__name__}: {exc}") from exc
    _traced_shapes[key] = tuple(out.shape)
    return _traced_shapes[key]


# (residual, argument structure and shapes) -> output shape: a model is traced
# for checking once, not on every fit
_traced_shapes: dict = {}
