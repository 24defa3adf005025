"""Trust-region building blocks shared by LM and TRF (p-dimensional, cheap).

They follow the definitions in SciPy's ``optimize/_lsq/common.py`` (Moré's
trust-region solution through the SVD, Coleman-Li scaling, reflective step
selection), written for ``lax`` control flow. The Jacobian enters only through
its triangular factor ``R``: ``||J s|| = ||R s||`` for every ``s``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_EPS = jnp.finfo(jnp.float64).eps


def solve_trust_region(uf, s, V, Delta, alpha, n_rows, *, rtol=0.01, max_iter=10):
    """Minimise ``||J p + f||`` subject to ``||p|| <= Delta`` from the SVD ``J = U diag(s) V^T``.

    Args:
        uf: ``U^T f``.
        s, V: singular values (descending) and right singular vectors (columns).
        Delta: trust-region radius.
        alpha: previous Levenberg-Marquardt parameter (warm start).
        n_rows: number of residuals (for the rank threshold).

    Returns:
        ``(p, alpha)``: the step and the Levenberg-Marquardt parameter
        (0 when the Gauss-Newton step is inside the region).
    """
    suf = s * uf
    # With fewer residuals than parameters the factor's last p - n_rows
    # singular values are zero by construction, not by rank deficiency: as in
    # SciPy (whose SVD of J has only min(m, p) of them), the rank test and the
    # Gauss-Newton step (then the minimum-norm one) use the others only.
    real = jnp.arange(s.shape[0]) < n_rows
    full_rank = jnp.min(jnp.where(real, s, jnp.inf)) > _EPS * n_rows * s[0]
    usable = real & full_rank
    gauss_newton = -V @ jnp.where(usable, uf / jnp.where(usable, s, 1.0), 0.0)
    newton_inside = full_rank & (jnp.linalg.norm(gauss_newton) <= Delta)

    def over(numerator, denom):  # numerator / denom, 0 where both vanish (structural zeros)
        return jnp.where(numerator == 0, 0.0, numerator / jnp.where(denom == 0, 1.0, denom))

    def phi_and_derivative(a):
        denom = s**2 + a
        p_norm = jnp.linalg.norm(over(suf, denom))
        return p_norm - Delta, -jnp.sum(over(suf**2, denom**3)) / p_norm

    alpha_upper = jnp.linalg.norm(suf) / Delta
    phi0, dphi0 = phi_and_derivative(0.0)
    alpha_lower = jnp.where(full_rank, -phi0 / dphi0, 0.0)
    fresh = jnp.maximum(0.001 * alpha_upper, jnp.sqrt(alpha_lower * alpha_upper))
    alpha = jnp.where((alpha == 0) & ~full_rank, fresh, alpha)

    def body(state):
        a, lower, upper, it, _ = state
        a = jnp.where(
            (a < lower) | (a > upper), jnp.maximum(0.001 * upper, jnp.sqrt(lower * upper)), a
        )
        phi, dphi = phi_and_derivative(a)
        upper = jnp.where(phi < 0, a, upper)
        ratio = phi / dphi
        lower = jnp.maximum(lower, a - ratio)
        a_next = a - (phi + Delta) * ratio / Delta
        return a_next, lower, upper, it + 1, jnp.abs(phi) < rtol * Delta

    def cond(state):
        return (state[3] < max_iter) & ~state[4]

    alpha, lower, upper, _, _ = lax.while_loop(
        cond, body, (alpha, alpha_lower, alpha_upper, 0, False)
    )
    # The last Newton update can leave the bracket, even below zero (SciPy
    # returns it as is); bring it back as the loop itself would, so the step
    # and the parameter reported with it stay consistent and non-negative.
    outside = (alpha < lower) | (alpha > upper)
    alpha = jnp.where(outside, jnp.maximum(0.001 * upper, jnp.sqrt(lower * upper)), alpha)
    alpha = jnp.maximum(alpha, 0.0)
    p = -V @ over(suf, s**2 + alpha)
    p = p * (Delta / jnp.linalg.norm(p))
    p = jnp.where(newton_inside, gauss_newton, p)
    return p, jnp.where(newton_inside, 0.0, alpha)


def quadratic_value(R, g, s, diag=None):
    """``0.5 * ||R s||^2 + 0.5 * s^T diag s + g^T s``: the model change along ``s``."""
    q = jnp.sum((R @ s) ** 2)
    if diag is not None:
        q = q + jnp.dot(s * diag, s)
    return 0.5 * q + jnp.dot(g, s)


def quadratic_1d(R, g, s, diag, s0=None):
    """Coefficients ``a t^2 + b t + c`` of the model along ``s0 + t s``."""
    v = R @ s
    a = 0.5 * (jnp.dot(v, v) + jnp.dot(s * diag, s))
    b = jnp.dot(g, s)
    if s0 is None:
        return a, b, 0.0
    u = R @ s0
    b = b + jnp.dot(u, v) + jnp.dot(s0 * diag, s)
    c = 0.5 * jnp.dot(u, u) + jnp.dot(g, s0) + 0.5 * jnp.dot(s0 * diag, s0)
    return a, b, c


def minimize_quadratic_1d(a, b, lower, upper, c=0.0):
    """Minimum of ``a t^2 + b t + c`` on ``[lower, upper]``: ``(t, value)``."""
    extremum = -0.5 * b / jnp.where(a != 0, a, 1.0)
    inside = (a != 0) & (lower < extremum) & (extremum < upper)
    candidates = jnp.stack([lower, upper, jnp.where(inside, extremum, lower)])
    values = candidates * (a * candidates + b) + c
    best = jnp.argmin(values)
    return candidates[best], values[best]


def step_size_to_bound(x, s, lb, ub):
    """Largest ``t`` with ``x + t s`` inside the box, and which bounds it hits (+1/-1/0)."""
    nonzero = s != 0
    safe = jnp.where(nonzero, s, 1.0)
    steps = jnp.where(nonzero, jnp.maximum((lb - x) / safe, (ub - x) / safe), jnp.inf)
    smallest = jnp.min(steps)
    hits = jnp.where(steps == smallest, jnp.sign(s), 0.0)
    return smallest, hits


def intersect_trust_region(x, s, Delta):
    """The two ``t`` (ascending) with ``||x + t s|| = Delta``; ``x`` inside the region."""
    a = jnp.dot(s, s)
    b = jnp.dot(x, s)
    c = jnp.dot(x, x) - Delta**2
    d = jnp.sqrt(jnp.maximum(b * b - a * c, 0.0))
    q = -(b + jnp.where(b >= 0, d, -d))
    q = jnp.where(q == 0, -jnp.finfo(x.dtype).tiny, q)
    t1, t2 = q / jnp.where(a == 0, 1.0, a), c / q
    return jnp.minimum(t1, t2), jnp.maximum(t1, t2)


def in_bounds(x, lb, ub):
    return jnp.all((x >= lb) & (x <= ub))


def coleman_li_scaling(x, g, lb, ub):
    """Coleman-Li scaling vector ``v`` and its derivative sign ``dv``."""
    to_upper = (g < 0) & jnp.isfinite(ub)
    to_lower = (g > 0) & jnp.isfinite(lb)
    v = jnp.where(to_lower, x - lb, jnp.where(to_upper, ub - x, 1.0))
    dv = jnp.where(to_lower, 1.0, jnp.where(to_upper, -1.0, 0.0))
    return v, dv


def active_constraints(x, lb, ub, rtol=1e-10):
    """-1 where ``x`` sits on its lower bound, +1 on its upper bound, 0 otherwise."""
    lower_dist, upper_dist = x - lb, ub - x
    lower_active = jnp.isfinite(lb) & (
        lower_dist <= jnp.minimum(upper_dist, rtol * jnp.maximum(1.0, jnp.abs(lb)))
    )
    upper_active = jnp.isfinite(ub) & (
        upper_dist <= jnp.minimum(lower_dist, rtol * jnp.maximum(1.0, jnp.abs(ub)))
    )
    return jnp.where(lower_active, -1, jnp.where(upper_active, 1, 0))


def make_strictly_feasible(x, lb, ub):
    """Move points on (or outside) a bound to the nearest float strictly inside."""
    x = jnp.where(x <= lb, jnp.nextafter(lb, ub), x)
    x = jnp.where(x >= ub, jnp.nextafter(ub, lb), x)
    tight = (x < lb) | (x > ub)
    return jnp.where(tight, 0.5 * (lb + ub), x)
