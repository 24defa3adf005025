"""Stiffness: how many steps an explicit solver's stability alone would force.

An explicit Runge-Kutta method is stable while ``h * |lambda|`` stays inside its
stability region for every eigenvalue ``lambda`` of the Jacobian ``df/dy``; for
Tsit5 that region reaches about ``STABILITY_RADIUS`` = 3.5 along the negative real
axis. Over a span ``T`` an explicit solve therefore needs at least
``rho * T / 3.5`` steps, ``rho`` the Jacobian's spectral radius, whatever the
accuracy asked for. A problem is called stiff when that count passes
``STIFF_STEPS``: an implicit solver's steps are dearer (a Newton solve each) but
are set by accuracy alone.

The Jacobian at the start can hide stiffness that appears later (Robertson's
fast reaction is idle at ``y0 = (1, 0, 0)``); :func:`jaxpro.ode.solve` therefore
also tries the explicit solver with a step budget and measures the spectral
radius again where it stopped.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["STABILITY_RADIUS", "STIFF_STEPS", "spectral_radius", "stability_steps"]

STABILITY_RADIUS = 3.5
STIFF_STEPS = 20_000
DENSE_MAX = 400  # states up to this size: all eigenvalues; above: power iteration


def spectral_radius(f, t, y, args) -> float:
    """Largest ``|eigenvalue|`` of ``df/dy`` at ``(t, y)`` (power iteration for big states)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(y)

    def g(v):
        return ravel_pytree(f(t, unravel(v), args))[0]

    if flat.size <= DENSE_MAX:
        jacobian = np.asarray(jax.jacfwd(g)(flat), dtype=float)
        if not np.all(np.isfinite(jacobian)):
            return math.inf
        return float(np.max(np.abs(np.linalg.eigvals(jacobian)))) if jacobian.size else 0.0
    v = jnp.ones_like(flat) / math.sqrt(flat.size)
    value = 0.0
    for _ in range(50):
        w = jax.jvp(g, (flat,), (v,))[1]
        value = float(jnp.linalg.norm(w))
        if not math.isfinite(value) or value == 0.0:
            return value
        v = w / value
    return value


def stability_steps(radius: float, span: float) -> float:
    """Explicit steps that stability alone forces over ``span``."""
    return radius * abs(span) / STABILITY_RADIUS
