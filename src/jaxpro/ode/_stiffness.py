"""Stiffness: how many steps an explicit solver's stability alone would force.

An explicit Runge-Kutta method is stable while ``h * |lambda|`` stays inside its
stability region for every eigenvalue ``lambda`` of the Jacobian ``df/dy``; for
Tsit5 that region reaches about ``STABILITY_RADIUS`` = 3.5 along the negative real
axis. Over a span ``T`` an explicit solve therefore needs at least
``rho * T / 3.5`` steps, ``rho`` the Jacobian's spectral radius, whatever the
accuracy asked for. A problem is called stiff when that count passes
:func:`stiff_steps` of its state size: the count at which an implicit solve
(Kvaerno5: ~150 steps set by accuracy alone, each a Jacobian, an LU and Newton
solves, growing as n^2-n^3) costs what the explicit one (~1.27 steps per
stability step, each growing as n) does. A fixed count cannot be right: the
crossover, measured, runs from ~6,500 steps for 4 states to ~175,000 for 400.

The Jacobian at the start can hide stiffness that appears later (Robertson's
fast reaction is idle at ``y0 = (1, 0, 0)``); :func:`jaxpro.ode.solve` therefore
also tries the explicit solver with a step budget and measures the spectral
radius again where it stopped.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "STABILITY_RADIUS",
    "largest_spectral_radius",
    "spectral_radius",
    "stability_steps",
    "stiff_steps",
]

STABILITY_RADIUS = 3.5
DENSE_MAX = 400  # states up to this size: all eigenvalues; above: power iteration

# The cost model behind stiff_steps, calibrated on this 2-core CPU (warm, rtol
# 1e-6, 11 output times; Fisher-KPP u' = D u_xx + u (1 - u) on n cells, D set
# for a given stability-step count, Tsit5 against Kvaerno5). Measured
# crossovers (equal times): ~6,500 steps (n = 4), ~8,500 (16), ~20,500 (64),
# ~77,000 (200), ~175,000 (400); the model gives 6,300, 7,000, 21,900, 87,000
# and 207,000. Per step, without each solve's ~1 ms fixed cost: Tsit5 0.21 us
# (n = 4) to 2.4 us (n = 400); Kvaerno5 11 us to 4.2 ms.
IMPLICIT_STEPS = 150  # Kvaerno5's accuracy-limited steps there (91-160)
STEPS_PER_STABILITY_STEP = 1.27  # Tsit5's steps over rho T / 3.5 there (1.26-1.28)


def _explicit_step_us(n: int) -> float:
    return 0.19 + 0.0055 * n


def _implicit_step_us(n: int) -> float:
    return 11.0 + 0.021 * n**2 + 1.28e-5 * n**3


def stiff_steps(n: int) -> float:
    """Stability-limited explicit steps past which an implicit solve of ``n`` states is cheaper."""
    n = max(int(n), 1)
    return IMPLICIT_STEPS * _implicit_step_us(n) / (STEPS_PER_STABILITY_STEP * _explicit_step_us(n))


def spectral_radius(f, t, y, args) -> float:
    """Largest ``|eigenvalue|`` of ``df/dy`` at ``(t, y)`` (power iteration for big states)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(y)
    if flat.size <= DENSE_MAX:
        return largest_spectral_radius(f, t, [(y, args)])

    def g(v):
        return ravel_pytree(f(t, unravel(v), args))[0]

    v = jnp.ones_like(flat) / math.sqrt(flat.size)
    value = 0.0
    for _ in range(50):
        w = jax.jvp(g, (flat,), (v,))[1]
        value = float(jnp.linalg.norm(w))
        if not math.isfinite(value) or value == 0.0:
            return value
        v = w / value
    return value


# One compiled Jacobian per (f, y's structure, shapes), kept by an LRU cache. Traced
# eagerly op by op, a small state's Jacobian cost ~4-5 ms on every call (half of a
# warm 9.9 ms Robertson solve) and, in a fresh process, ~0.5 s of one-op compiles;
# compiled, ~0.1 ms to run and ~50 ms once to compile.
@functools.lru_cache(maxsize=32)
def _jacobian_program(f, treedef, shapes):
    """``jit(vmap(jacfwd))`` of ``f`` in ``y`` (flattened) at one ``t``, per member."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    def jacobians(t, states, args):
        _, unravel = ravel_pytree(jax.tree.unflatten(treedef, [jnp.zeros(s) for s in shapes]))

        def g(v, a):
            return ravel_pytree(f(t, unravel(v), a))[0]

        return jax.vmap(jax.jacfwd(g))(states, args)

    return jax.jit(jacobians)


def largest_spectral_radius(f, t, members: list[tuple]) -> float:
    """The largest :func:`spectral_radius` over ``members`` (``(y, args)`` pairs).

    Small states: every member's Jacobian in one compiled, vmapped ``jacfwd`` (see
    :func:`_jacobian_program`); members and their ``args`` are stacked on the host.
    """
    import jax

    leaves, treedef = jax.tree.flatten(members[0][0])
    size = sum(int(np.size(leaf)) for leaf in leaves)
    if size == 0:  # no state, no eigenvalue (spectral_radius would come back here)
        return 0.0
    if size > DENSE_MAX:
        return max(spectral_radius(f, t, y, a) for y, a in members)
    shapes = tuple(np.shape(leaf) for leaf in leaves)
    states = np.stack([np.concatenate([np.ravel(np.asarray(x, dtype=np.float64))
                                       for x in jax.tree.leaves(y)]) for y, _ in members])  # fmt: skip
    args = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                        *(a for _, a in members))  # fmt: skip
    program = _jacobian_program(f, treedef, shapes)
    jacobians = np.asarray(program(np.float64(t), states, args), dtype=float)
    if not np.all(np.isfinite(jacobians)):
        return math.inf
    return float(np.max(np.abs(np.linalg.eigvals(jacobians))))


def stability_steps(radius: float, span: float) -> float:
    """Explicit steps that stability alone forces over ``span``."""
    return radius * abs(span) / STABILITY_RADIUS
