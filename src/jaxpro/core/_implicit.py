"""``fixed_point``: solve ``x = f(x, *params)`` and differentiate the solution implicitly.

Differentiating through the iterations of a solver stores every iterate and
follows the solver's path, not the solution. The implicit function theorem
gives the derivative of the solution itself: at ``x* = f(x*, θ)``,

    dx*/dθ = (I - ∂f/∂x)^-1 ∂f/∂θ,

so a reverse-mode cotangent ``v`` of ``x*`` becomes ``w = v + (∂f/∂x)^T w``
(solved by the same fixed-point iteration, which converges wherever the
forward one does, both being contractions with the same rate) and then
``(∂f/∂θ)^T w``. This is a ``jax.custom_vjp``: the forward pass is a bounded
``lax.while_loop`` with nothing stored, the backward pass costs one more
solve, and memory does not grow with the number of iterations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from jaxpro.errors import InputError

__all__ = ["fixed_point"]


def fixed_point(
    f: Callable,
    x0: Any,
    *params: Any,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> Any:
    """The fixed point ``x* = f(x*, *params)``, differentiable in ``params`` by implicit differentiation.

    Args:
        f: a contraction in its first argument, ``f(x, *params) -> x`` (pytrees
            of arrays of the same structure as ``x0``).
        x0: the starting point.
        *params: what ``f`` depends on; gradients flow to them (none flows to
            ``x0``: the fixed point does not depend on where the search starts).
        tol: stop when the largest change of any element is at most
            ``tol * (1 + largest |x|)``; the adjoint solve uses the same test.
        max_iter: iteration bound of each solve.

    Returns:
        The last iterate (a pytree like ``x0``). Inside ``jit`` it cannot
        raise: check ``f(x, *params) - x`` when convergence is in doubt.

    Raises:
        InputError: ``f`` is not callable, ``tol`` is not positive or
            ``max_iter`` is not a positive integer.
    """
    if not callable(f):
        raise InputError("must be a callable f(x, *params) -> x", argument="f", received=f)
    if not (isinstance(tol, int | float) and not isinstance(tol, bool) and tol > 0):
        raise InputError("must be a positive number", argument="tol", received=tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InputError("must be a positive integer", argument="max_iter", received=max_iter)
    return _solve(f, float(tol), int(max_iter), x0, *params)


def _iterate(step: Callable, x0: Any, tol: float, max_iter: int) -> Any:
    """``x <- step(x)`` until the change is below ``tol`` (relative), at most ``max_iter`` times."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def biggest(tree):
        leaves = [jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree) if jnp.size(leaf)]
        return jnp.max(jnp.stack(leaves)) if leaves else jnp.asarray(0.0)

    def cond(state):
        i, _, change, scale = state
        return (i < max_iter) & (change > tol * (1.0 + scale))

    def body(state):
        i, x, _, _ = state
        new = step(x)
        change = biggest(jax.tree.map(lambda a, b: a - b, new, x))
        return i + 1, new, change, biggest(new)

    first = (0, x0, jnp.asarray(jnp.inf), biggest(x0))
    return lax.while_loop(cond, body, first)[1]


def _solve(f, tol, max_iter, x0, *params):
    return _custom_solve()(f, tol, max_iter, x0, *params)


@functools.cache
def _custom_solve():
    """The ``jax.custom_vjp`` solver, built on first use (``import jaxpro`` loads no JAX)."""
    import jax

    def solve(f, tol, max_iter, x0, *params):
        return _iterate(lambda x: f(x, *params), x0, tol, max_iter)

    def forward(f, tol, max_iter, x0, *params):
        x = solve(f, tol, max_iter, x0, *params)
        return x, (x, x0, params)

    def backward(f, tol, max_iter, residuals, cotangent):
        x, x0, params = residuals
        _, vjp_x = jax.vjp(lambda y: f(y, *params), x)

        def adjoint_step(w):  # w = v + (df/dx)^T w, started from v
            return jax.tree.map(lambda a, b: a + b, cotangent, vjp_x(w)[0])

        w = _iterate(adjoint_step, cotangent, tol, max_iter)
        _, vjp_params = jax.vjp(lambda *p: f(x, *p), *params)
        return (jax.tree.map(jax.numpy.zeros_like, x0), *vjp_params(w))

    custom = jax.custom_vjp(solve, nondiff_argnums=(0, 1, 2))
    custom.defvjp(forward, backward)
    return custom
