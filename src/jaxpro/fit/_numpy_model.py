"""Models and residual functions written with NumPy, as SciPy users write them.

JAX cannot trace ``np.exp(x)``, ``np.asarray(p)``, ``float(a)`` or ``out[i] = v``.
jaxpro does not refuse such a function; it takes the first of two paths that
works, and says which in the plan:

1. **translation**: the same function with ``jax.numpy`` in place of NumPy in
   its globals (and in those of the plain Python functions of the same module
   that it calls). Kept only when it traces and its values match NumPy's at the
   start point (relative 1e-9): it then runs compiled, with exact derivatives,
   at the speed of a function written for JAX. The decision is remembered per
   function (weakly), so later calls neither re-check nor recompile.
2. **host**: the original function runs in Python on the host, as SciPy runs
   it, through ``jax.pure_callback``, with SciPy's forward-difference Jacobian
   (``'2-point'``: step ``sqrt(eps) * max(1, |p|)``) or the user's ``jac``;
   the LM/TRF iterations around it stay compiled. In-place assignment, Python
   branches on values and ``float()`` all work there.
"""

from __future__ import annotations

import contextlib
import functools
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxpro.fit._host import HostClock, dense_jacobian, host_function, host_loss

__all__ = [
    "HOST",
    "JAX",
    "TRANSLATED",
    "HostClock",
    "ModelPath",
    "curve_model",
    "host_function",
    "host_jac_shape",
    "jax_loss",
    "raw_jac",
    "residual_function",
    "translate",
    "values_match",
]

JAX = "jax"  # written for JAX: traced as it is
TRANSLATED = "jax.numpy translation"
HOST = "host (NumPy, forward differences)"

_RTOL = 1e-9  # NumPy's and XLA's elementary functions differ by a few ulp


# ----------------------------------------------------------------------------- translation


def _numpy_replacement(value):
    """jax.numpy's counterpart of a NumPy module or function, or None."""
    import jax.numpy as jnp

    if value is np:
        return jnp
    if isinstance(value, types.ModuleType):
        name = getattr(value, "__name__", "")
        if name in ("numpy.linalg", "numpy.fft"):
            return getattr(jnp, name.split(".")[1])
        return None
    name = getattr(value, "__name__", None)
    if name is None or not isinstance(name, str):
        return None
    if getattr(np, name, None) is value and hasattr(jnp, name):
        # np.exp, np.float64, ... imported by name (from numpy import exp)
        return getattr(jnp, name)
    return None


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # lambdas and comprehensions inside
            names |= _global_names(const)
    return names


def _translate_function(fn: types.FunctionType, memo: dict) -> types.FunctionType | None:
    if fn in memo:
        return memo[fn]
    memo[fn] = None  # a recursive function: its own name keeps the original
    replacements = {}
    for name in _global_names(fn.__code__):
        if name not in fn.__globals__:
            continue
        value = fn.__globals__[name]
        new = _numpy_replacement(value)
        same_module = isinstance(value, types.FunctionType) and value.__module__ == fn.__module__
        if new is None and same_module:
            new = _translate_function(value, memo)
        if new is not None:
            replacements[name] = new
    closure = fn.__closure__
    if closure is not None:
        cells = []
        for cell in closure:
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                cells.append(cell)
                continue
            new = _numpy_replacement(content)
            if new is None and isinstance(content, types.FunctionType):
                new = _translate_function(content, memo)
            cells.append(types.CellType(new) if new is not None else cell)
        if any(a is not b for a, b in zip(cells, closure, strict=True)):
            closure = tuple(cells)
            replacements.setdefault("__closure_changed__", True)
    if not replacements:
        return None
    replacements.pop("__closure_changed__", None)
    namespace = dict(fn.__globals__)
    namespace.update(replacements)
    new_fn = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, closure)
    new_fn.__kwdefaults__ = fn.__kwdefaults__
    functools.update_wrapper(new_fn, fn, updated=())
    memo[fn] = new_fn
    return new_fn


def translate(fn: Callable) -> Callable | None:
    """``fn`` with jax.numpy in place of NumPy, or None when nothing could be replaced.

    Plain functions, lambdas, bound methods and ``functools.partial`` of them
    are translated; builtins and other callables are not.
    """
    if isinstance(fn, functools.partial):
        inner = translate(fn.func)
        return None if inner is None else functools.partial(inner, *fn.args, **fn.keywords)
    if isinstance(fn, types.MethodType) and isinstance(fn.__func__, types.FunctionType):
        inner = _translate_function(fn.__func__, {})
        return None if inner is None else types.MethodType(inner, fn.__self__)
    if isinstance(fn, types.FunctionType):
        return _translate_function(fn, {})
    return None


def values_match(reference, candidate) -> bool:
    """Whether the translation's values are NumPy's (same shape, NaN where NumPy has NaN)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return False
    return bool(np.allclose(candidate, reference, rtol=_RTOL, atol=0.0, equal_nan=True))


@dataclass(frozen=True)
class ModelPath:
    """How a user function runs: ``path`` is :data:`JAX`, :data:`TRANSLATED` or :data:`HOST`."""

    path: str
    model: Callable  # what JAX calls (the user's function, its translation, or the host wrapper)
    jac: (
        Callable | None
    )  # the user's jac as JAX calls it (None: autodiff, or inside the host wrapper)
    reason: str | None = None  # why the function as written could not be traced
    clock: HostClock | None = None  # host time (host path only)
    predict: Callable | None = None  # model(x, *p) for any x (the fit's model may expect its x)
    shape: tuple | None = None  # the residual's shape on the sample, where already traced


# user function -> {key: ModelPath}: a repeated call neither re-translates nor
# recompiles (the same translated function or host wrapper comes back)
_decisions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(fn: Callable, key, decision: ModelPath) -> ModelPath:
    # not weak-referenceable or unhashable key (a bound method is rebuilt on each access)
    with contextlib.suppress(TypeError):
        _decisions.setdefault(fn, {})[key] = decision
    return decision


def _recall(fn: Callable, key) -> ModelPath | None:
    try:
        return _decisions.get(fn, {}).get(key)
    except TypeError:
        return None


def _counting(fn: Callable, runs: list) -> Callable:
    """``fn`` that counts its runs in ``runs[0]`` (tracing runs the Python code too)."""

    def counted(*args, **kwargs):
        runs[0] += 1
        return fn(*args, **kwargs)

    return counted


def _reused(known: ModelPath, evaluations: int = 2) -> ModelPath:
    """A remembered path for a new call: its clock counts this call's evaluations.

    ``evaluations``: those this call already made (least_squares: the failed
    trace and the reference evaluation, which SciPy's nfev tests count).
    """
    if known.clock is not None:
        known.clock.reset()
        known.clock.evaluations = evaluations
    return known


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _why_untraceable(error: BaseException) -> str:
    """Why tracing failed, without trace_check's own "<what> cannot be traced by JAX: " lead.

    The warning and the plan put the reason in brackets after those same words.
    """
    line = _first_line(error)
    _, found, cause = line.partition("cannot be traced by JAX: ")
    return cause if found else line


def known_curve(model, jac, n: int) -> ModelPath | None:
    """The path already chosen for ``model`` (and a callable ``jac``) at ``n`` points, or None.

    Its clock is reset for this call (as :func:`curve_model` resets a remembered path).
    """
    user_jac = jac if callable(jac) else None
    known = _recall(model, ("curve-translated", user_jac)) or _recall(
        model, ("curve-host", user_jac, n)
    )
    return None if known is None else _reused(known, evaluations=0)


def curve_model(model, jac, x: np.ndarray, n: int, theta0: np.ndarray, sample, what: str):
    """How to run ``model(x, *p)`` (and a callable ``jac``): as written, translated, or on the host.

    Args:
        model, jac: the user's model and jac (None or a string: autodiff).
        x: the unpadded data's x, ``(n,)`` or ``(k, n)``; n: its point count.
        theta0: the start; sample: a data block to trace with.
        what: the model's name in messages.

    Returns:
        A :class:`ModelPath`.

    Raises:
        ModelError: the function fails on the host too (the tracing error is
            raised, with its fix), or returns the wrong shape there.
    """
    import jax
    import jax.numpy as jnp

    from jaxpro.errors import InputTypeError, ModelError
    from jaxpro.fit._model import curve_residual, trace_check

    user_jac = jac if callable(jac) else None
    known = known_curve(model, jac, n)
    if known is not None:
        # a function already found untraceable: skip the failing trace (JAX's
        # traceback filtering alone costs about 2 ms); curve_fit reports no
        # per-function count, so nothing else needs to run first
        return known
    try:
        as_written = curve_residual(model, user_jac)
        shape = trace_check(as_written, theta0, sample, what=what)
        if user_jac is not None:
            _trace_jacobian(as_written, theta0, sample)
        return ModelPath(JAX, model, user_jac, predict=model, shape=shape)
    except InputTypeError:
        raise
    except ModelError as error:
        traced_error = error
    try:
        reference = np.asarray(model(x, *theta0), dtype=np.float64)
    except Exception:
        raise traced_error from None
    try:
        reference = np.broadcast_to(reference, (n,))
    except ValueError:
        raise ModelError(
            f"{what} returned shape {reference.shape} for {n} points; expected ({n},)"
        ) from None
    reason = _why_untraceable(traced_error)
    translated = translate(model)
    translated_jac = None if user_jac is None else translate(user_jac)
    runs = [0]  # the translation runs the user's code: its side effects count as calls
    if translated is not None and (user_jac is None or translated_jac is not None):
        try:
            counted = _counting(translated, runs)
            residual = curve_residual(counted, translated_jac)
            trace_check(residual, theta0, sample, what=what)
            if translated_jac is not None:
                _trace_jacobian(residual, theta0, sample)
            values = jax.jit(lambda th: counted(jnp.asarray(x), *th))(theta0)
            if values_match(reference, np.broadcast_to(np.asarray(values), (n,))):
                decision = ModelPath(
                    TRANSLATED, translated, translated_jac, reason, None, translated
                )
                return _remember(model, ("curve-translated", user_jac), decision)
        except Exception:  # the translation does not trace: the host path runs it
            pass
    # the failed trace, the reference evaluation and the translation's runs
    clock = HostClock(evaluations=2 + runs[0])
    fitted = _host_curve(model, user_jac, n, clock)
    predict = _host_curve(model, user_jac, None, clock)
    decision = ModelPath(HOST, fitted, None, reason, clock, predict)
    return _remember(model, ("curve-host", user_jac, n), decision)


def _host_curve(model, user_jac, n: int | None, clock: HostClock) -> Callable:
    """``model(x, *p)`` on the host as a JAX function (``n``: the fit's points, else None)."""
    import jax.numpy as jnp

    def evaluate(theta, x_rows):
        size = x_rows.shape[-1]
        if n is not None and size > n:
            # the direct layout pads x at the end to a bucket size; the model
            # sees the user's points only (it may depend on their number)
            value = np.broadcast_to(np.asarray(model(x_rows[..., :n], *theta), np.float64), (n,))
            return np.concatenate([value, np.full(size - n, value[-1])])
        value = np.asarray(model(x_rows, *theta), dtype=np.float64)
        return np.broadcast_to(value, (size,))

    def jacobian(theta, x_rows):
        size = x_rows.shape[-1]
        if n is None or size <= n:
            return user_jac(x_rows, *theta)
        rows = dense_jacobian(user_jac(x_rows[..., :n], *theta), theta.shape[0])
        rows = np.reshape(rows, (n, theta.shape[0]))
        return np.concatenate([rows, np.zeros((size - n, theta.shape[0]))])  # padding: no weight

    g = host_function(
        evaluate, None if user_jac is None else jacobian, lambda x_shape: x_shape[-1], clock
    )

    def host_model(x_rows, *theta):
        return g(jnp.stack(theta), x_rows)

    return host_model


def _trace_jacobian(residual, theta, block) -> None:
    """Trace the residual's Jacobian (a user jac runs only there); ModelError if it fails."""
    import jax

    from jaxpro.fit._model import trace_check

    trace_check(lambda t, b: jax.jacfwd(residual)(t, b), theta, block, what="jac")


def raw_jac(jac: Callable, rebuild) -> Callable:
    """``jac(theta, block)``: the user's ``jac(x, *args, **kwargs)`` as SciPy reads it (2-D)."""
    import jax.numpy as jnp

    def call(theta, block):
        args, kwargs = rebuild(block["leaves"])
        return jnp.atleast_2d(jnp.asarray(jac(theta, *args, **kwargs)))

    return call


def host_jac_shape(jac: Callable, rebuild, leaves, theta0: np.ndarray):
    """The user's ``jac`` at ``theta0`` on the host: ``(shape, kind)`` as SciPy reads it.

    ``kind`` is "dense", "sparse" (scipy.sparse) or "operator" (LinearOperator).
    """
    args, kwargs = rebuild(tuple(np.asarray(leaf) for leaf in leaves))
    value = jac(theta0.copy(), *args, **kwargs)
    if hasattr(value, "toarray"):
        kind = "sparse"
    elif hasattr(value, "matmat") and not isinstance(value, np.ndarray):
        kind = "operator"
    else:
        kind = "dense"
    return np.atleast_2d(dense_jacobian(value, theta0.shape[0])).shape, kind


def residual_function(fun, jac, rebuild, leaves, theta0: np.ndarray, diff_step=None, workers=None):
    """How to run ``fun(x, *args, **kwargs)`` (least_squares): as written, translated, or on the host.

    Args:
        fun, jac: the user's functions (jac None or a string: autodiff).
        rebuild: turns the data leaves back into ``(args, kwargs)``.
        leaves: the data leaves (NumPy or JAX arrays); theta0: the start.

    Returns:
        ``(ModelPath, m)``: the path (its ``model`` is the JAX residual
        ``residual(theta, block)``) and the number of residuals.
    """
    import jax

    from jaxpro.errors import InputTypeError, ModelError
    from jaxpro.fit._model import _function_residual, function_residual, trace_check

    user_jac = jac if callable(jac) else None
    block = {"leaves": leaves}

    def make(f, j):
        try:
            return function_residual(f, j, rebuild)
        except TypeError:  # unhashable static arguments: no caching across calls
            return _function_residual.__wrapped__(f, j, rebuild)

    residual = make(fun, user_jac)
    try:
        shape = trace_check(residual, theta0, block, what="fun")
        if user_jac is not None:
            trace_check(raw_jac(user_jac, rebuild), theta0, block, what="jac")
        return ModelPath(JAX, residual, user_jac), shape
    except InputTypeError:
        raise
    except ModelError as error:
        traced_error = error
    args, kwargs = rebuild(tuple(np.asarray(leaf) for leaf in leaves))
    try:
        reference = np.atleast_1d(np.asarray(fun(theta0.copy(), *args, **kwargs), np.float64))
    except Exception:
        raise traced_error from None
    shape = reference.shape
    if reference.ndim != 1:
        return ModelPath(JAX, residual, user_jac), shape  # the caller names the shape
    key = ("fun", user_jac, rebuild, shape, diff_step, workers)
    known = _recall(fun, key)
    if known is not None:
        return _reused(known), shape
    reason = _why_untraceable(traced_error)
    translated = translate(fun)
    translated_jac = None if user_jac is None else translate(user_jac)
    runs = [0]  # the translation runs the user's code: its side effects count as calls
    if translated is not None and (user_jac is None or translated_jac is not None):
        try:
            candidate = _function_residual.__wrapped__(
                _counting(translated, runs), translated_jac, rebuild
            )
            trace_check(candidate, theta0, block, what="fun")
            if translated_jac is not None:
                trace_check(raw_jac(translated_jac, rebuild), theta0, block, what="jac")
            values = jax.jit(candidate)(theta0, block)
            if values_match(reference, values):
                candidate = make(translated, translated_jac)
                decision = ModelPath(TRANSLATED, candidate, translated_jac, reason)
                return _remember(fun, key, decision), shape
        except Exception:  # the translation does not trace: the host path runs it
            pass
    # the failed trace, the reference evaluation and the translation's runs
    clock = HostClock(evaluations=2 + runs[0])
    m = shape[0]

    def evaluate(theta, *data):
        a, k = rebuild(data)
        return np.atleast_1d(np.asarray(fun(theta, *a, **k), dtype=np.float64))

    jacobian = None
    if user_jac is not None:

        def jacobian(theta, *data):
            a, k = rebuild(data)
            return user_jac(theta, *a, **k)

    g = host_function(evaluate, jacobian, lambda *shapes: m, clock, diff_step, workers)

    def host_residual(theta, block):
        return g(theta, *block["leaves"])

    return _remember(fun, key, ModelPath(HOST, host_residual, None, reason, clock)), shape


# user loss -> the loss JAX runs (itself or its translation)
_losses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def jax_loss(loss: Callable) -> Callable:
    """A callable robust loss ``rho(z) -> (3, m)`` as JAX can run it: as written, or translated.

    A loss that neither traces nor translates exactly (``rho[0] = ...`` into
    ``np.empty``) runs on the host through ``jax.pure_callback``: it is only
    evaluated (the Gauss-Newton scaling uses rho' and rho'', not derivatives
    of them), once per linearisation.

    Raises:
        ModelError: the loss fails on NumPy arrays too, or returns the wrong shape.
    """
    import jax
    import jax.numpy as jnp

    from jaxpro.errors import ModelError

    with contextlib.suppress(TypeError):
        if loss in _losses:
            return _losses[loss]
    z = np.linspace(0.0, 9.0, 7)
    try:
        jax.eval_shape(loss, jax.ShapeDtypeStruct(z.shape, jnp.float64))
        chosen = loss
    except Exception as error:
        translated = translate(loss)
        chosen = None
        if translated is not None:
            try:
                reference = np.asarray(loss(z.copy()), dtype=np.float64)
                values = np.asarray(jax.jit(translated)(jnp.asarray(z)))
                if values_match(reference, values):
                    chosen = translated
            except Exception:
                chosen = None
        if chosen is None:
            try:
                rho = np.asarray(loss(z.copy()), dtype=np.float64)
            except Exception:
                raise ModelError(
                    f"loss cannot be traced by JAX ({_first_line(error)}) and fails on NumPy"
                    " arrays too; rho(z) must return the (3, m) array of rho, rho' and rho''"
                ) from error
            if rho.shape != (3, z.size):
                raise ModelError(
                    f"loss must return shape (3, {z.size}) for {z.size} values; got {rho.shape}"
                ) from None
            chosen = host_loss(loss)
    with contextlib.suppress(TypeError):
        _losses[loss] = chosen
    return chosen
