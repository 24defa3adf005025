"""Running a user's NumPy function on the host, inside jaxpro's compiled iterations.

The functions here wrap a Python function of NumPy arrays as a JAX function
(``jax.pure_callback``) with a JVP rule whose Jacobian is SciPy's forward
differences or the user's own ``jac`` (dense, sparse or LinearOperator), and
count what the host evaluations cost. ``_numpy_model`` decides when to use
them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np

__all__ = ["HostClock", "dense_jacobian", "host_function", "host_loss"]


def _forward_differences(
    call: Callable, theta: np.ndarray, f0: np.ndarray, rel_step=None, workers=None
) -> np.ndarray:
    """SciPy's '2-point' Jacobian ``(m, p)`` of ``call`` at ``theta`` (``f0 = call(theta)``).

    Args:
        rel_step: relative step (SciPy's ``diff_step``); default sqrt(eps),
            scaled by ``max(1, |x|)`` as SciPy scales it.
        workers: a map-like callable evaluating the shifted points (SciPy's ``workers``).
    """
    # SciPy's steps (approx_derivative), in Python floats: for a few
    # parameters NumPy's calls would cost more than the user's function on
    # small data. Default h_j = sqrt(eps) * sign(x_j) * max(1, |x_j|), sign(0) = 1;
    # a given rel_step: h_j = rel_step * sign(x_j) * |x_j|, the default where
    # that step vanishes in x_j + h_j.
    points, taken = [], []
    for j, v in enumerate(theta.tolist()):
        sign = 1.0 if v >= 0 else -1.0
        step = _SQRT_EPS * sign * max(1.0, abs(v))
        if rel_step is not None:
            given = float(rel_step) * sign * abs(v)
            step = given if (v + given) - v != 0 else step
        point = theta.copy()
        point[j] = v + step
        points.append(point)
        taken.append(float(point[j]) - v)  # the step actually taken, after rounding
    # filled a column at a time as contiguous rows of J^T: J comes back
    # Fortran-ordered, as LAPACK's QR takes it without a copy
    jac_t = np.empty((len(points), f0.shape[0]))
    # serially each value is used as it comes (a map is lazy); workers may run them together
    values = map(call, points) if workers is None else list(workers(call, points))
    for row, value, step in zip(jac_t, values, taken, strict=True):
        np.subtract(value, f0, out=row)
        row /= step
    return jac_t.T


_SQRT_EPS = float(np.finfo(np.float64).eps) ** 0.5


class HostClock:
    """Time spent in the user's function on the host, and how often it ran."""

    def __init__(self, evaluations: int = 0):
        self.seconds = 0.0
        self.evaluations = evaluations  # of the function at a point (SciPy's nfev)
        self.difference_evaluations = 0  # for forward-difference Jacobians

    def reset(self) -> None:
        self.seconds, self.evaluations, self.difference_evaluations = 0.0, 0, 0


def host_function(
    evaluate: Callable,
    jacobian: Callable | None,
    size: Callable,
    clock: HostClock,
    rel_step=None,
    workers=None,
) -> Callable:
    """A JAX function ``g(theta, *data) -> (m,)`` that runs ``evaluate`` on the host.

    Args:
        evaluate: ``evaluate(theta, *data) -> (m,)`` on NumPy arrays (the user's
            function, made 1-D and float64 by the caller).
        jacobian: ``jacobian(theta, *data) -> (m, p)`` on NumPy arrays (the user's
            ``jac``), or None for forward differences.
        size: ``size(*data_shapes) -> m``, the output length from the data's shapes.
        clock: accumulates the host time and the numbers of evaluations
            (:func:`_reused` resets it for each call).

    Returns:
        ``g`` with a JVP rule, so the LM/TRF linearisation (forward mode, one
        JVP per parameter under ``vmap``) asks the host for ``(value, J)``
        once per linearisation: 1 + p evaluations, as SciPy's '2-point' needs.
    """
    import jax
    import jax.numpy as jnp

    def timed(theta, data, difference=False):
        start = time.perf_counter()
        value = np.asarray(evaluate(theta, *data), dtype=np.float64)
        clock.seconds += time.perf_counter() - start
        if difference:
            clock.difference_evaluations += 1
        else:
            clock.evaluations += 1
        return value

    # 64-bit values cross the callback boundary as bits in uint32 pairs, both
    # ways: JAX canonicalises a callback's arguments and results under the x64
    # mode of the thread that runs it, and jaxpro's float64 context
    # (thread-local) does not reach XLA's threads, so where the user has not
    # enabled x64 globally float64 would arrive as float32 (and results be
    # refused).
    def bits(a):
        a = np.ascontiguousarray(a, dtype=np.float64)
        return a.view(np.uint32).reshape((*a.shape, 2))

    def to_bits(a):
        a = jnp.asarray(a)
        if a.dtype.itemsize == 8:
            return jax.lax.bitcast_convert_type(a, jnp.uint32), a.dtype
        return a, None

    def from_bits(arguments, dtypes):
        return tuple(
            np.asarray(a) if d is None else np.asarray(a).view(d).reshape(np.shape(a)[:-1])
            for a, d in zip(arguments, dtypes, strict=True)
        )

    def host_value(dtypes, *arguments):
        theta, *data = from_bits(arguments, dtypes)
        return bits(timed(np.array(theta, dtype=np.float64), tuple(data)))

    def host_value_and_jac(dtypes, *arguments):
        theta, *data = from_bits(arguments, dtypes)
        theta = np.array(theta, dtype=np.float64)
        data = tuple(data)
        f0 = timed(theta, data)
        if jacobian is not None:
            start = time.perf_counter()
            jac = dense_jacobian(jacobian(theta, *data), theta.shape[0])
            clock.seconds += time.perf_counter() - start
            jac = np.atleast_2d(jac).reshape(f0.shape[0], theta.shape[0])
        else:
            jac = _forward_differences(lambda t: timed(t, data, True), theta, f0, rel_step, workers)
        return bits(f0), bits(jac)

    def shapes(theta, data):
        m = size(*(jnp.shape(d) for d in data))
        value = jax.ShapeDtypeStruct((m, 2), jnp.uint32)
        return value, jax.ShapeDtypeStruct((m, theta.shape[0], 2), jnp.uint32)

    def unbits(b):
        return jax.lax.bitcast_convert_type(b, jnp.float64)

    def call(host, results, theta, data):
        arguments, dtypes = zip(*(to_bits(a) for a in (theta, *data)), strict=True)
        return jax.pure_callback(
            functools.partial(host, dtypes), results, *arguments, vmap_method="sequential"
        )

    @jax.custom_jvp
    def g(theta, *data):
        value, _ = shapes(theta, data)
        return unbits(call(host_value, value, theta, data))

    @g.defjvp
    def _jvp(primals, tangents):
        theta, *data = primals
        value, jac = call(host_value_and_jac, shapes(theta, data), theta, data)
        return unbits(value), unbits(jac) @ tangents[0]

    return g


def dense_jacobian(jac, n: int) -> np.ndarray:
    """A Jacobian as SciPy accepts it (array, sparse matrix, LinearOperator) as a dense array."""
    if hasattr(jac, "toarray"):  # scipy.sparse
        return np.asarray(jac.toarray(), dtype=np.float64)
    if hasattr(jac, "matmat") and not isinstance(jac, np.ndarray):  # LinearOperator
        return np.asarray(jac.matmat(np.eye(n)), dtype=np.float64)
    return np.asarray(jac, dtype=np.float64)


def host_loss(loss: Callable) -> Callable:
    """``rho(z)`` evaluated on the host; float64 crosses as uint32 pairs (see host_function)."""
    import jax
    import jax.numpy as jnp

    def host(z_bits):
        z_bits = np.asarray(z_bits)
        z = z_bits.view(np.float64).reshape(z_bits.shape[:-1])
        rho = np.ascontiguousarray(np.asarray(loss(z), dtype=np.float64).reshape(3, *z.shape))
        return rho.view(np.uint32).reshape((*rho.shape, 2))

    def rho(z):
        z = jnp.asarray(z, jnp.float64)
        result = jax.ShapeDtypeStruct((3, *z.shape, 2), jnp.uint32)
        z_bits = jax.lax.bitcast_convert_type(z, jnp.uint32)
        out = jax.pure_callback(host, result, z_bits, vmap_method="sequential")
        return jax.lax.bitcast_convert_type(out, jnp.float64)

    return rho
