"""One pass over the data: the cost and the linearised problem at a parameter vector.

Every solver iteration needs, at the trial parameters ``theta``,

- the cost ``0.5 * sum(rho(r**2))``,
- a ``p x p`` upper-triangular factor ``R`` with ``R^T R = J^T J`` and the
  projected residual ``qtr`` with ``R^T qtr = J^T r``.

``R`` and ``qtr`` carry everything LM and TRF need from the Jacobian (column
norms, gradient, the trust-region subproblem), so the ``n x p`` Jacobian is
never kept: memory beyond the data is O(chunk * p + p**2).

Two passes produce them:

- :func:`direct_pass` for data that fit in one block: Householder QR of
  ``[J | r]`` (LAPACK), exact to rounding.
- :func:`chunked_pass` for long data: over fixed-size chunks it accumulates the
  Gram matrix of ``[J P^{-1} | r]``, where ``P`` is the triangular factor from
  the previous pass. With a good ``P`` the transformed columns are nearly
  orthonormal, so the Gram matrix is perfectly conditioned and its Cholesky
  factor ``C`` gives ``R = C P`` to Householder accuracy (this is CholeskyQR2,
  whose first stage is the previous iteration). When ``J P^{-1}`` is not well
  conditioned (first pass, large steps) the pass says so and the caller repeats
  it with the new ``R`` as ``P``; each repetition squares away the remaining
  ill-conditioning, and costs are exact regardless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpro.fit._linalg import (
    all_finite,
    cholesky_upper,
    condition_exceeds,
    inverse_upper,
    largest,
    matmul,
    rmatvec,
    solve_upper,
)
from jaxpro.fit._losses import robust_scaling

__all__ = ["Linearization", "chunked_pass", "direct_pass"]

# cond(J P^{-1}) above this makes the pass ask to be repeated: the Gram matrix then
# loses about 2*log10(1e4) = 8 digits, still far more than the step needs, but
# the final factor (covariance) should not.
_CONDITION_LIMIT = 1e4


class Linearization(NamedTuple):
    """The linearised least-squares problem at one parameter vector.

    Attributes:
        cost: ``0.5 * sum(rho)`` (``0.5 * chi2`` for the linear loss).
        R: ``(p, p)`` upper-triangular factor of the (loss-scaled) Jacobian.
        qtr: ``(p,)`` projected residual, ``R^T qtr = J^T r``.
        chi2: sum of squared weighted residuals, without the robust loss.
        finite: whether cost, R and qtr are all finite.
        ill_conditioned: the chunked pass's preconditioner was poor; repeat the
            pass with this ``R`` to get full accuracy.
    """

    cost: jax.Array
    R: jax.Array
    qtr: jax.Array
    chi2: jax.Array
    finite: jax.Array
    ill_conditioned: jax.Array

    @property
    def gradient(self) -> jax.Array:
        """``J^T r``, the gradient of the cost."""
        return rmatvec(self.R, self.qtr)


Residual = Callable[[jax.Array, object], jax.Array]


def _scaled_terms(residual: Residual, theta, block, loss, f_scale, basis=None):
    """Residuals and transposed Jacobian ``(p, m)`` with the robust loss applied.

    Args:
        basis: optional ``(p, p)`` matrix ``B``; the Jacobian returned is then
            ``J B`` (derivatives along B's columns), for the same work as ``J``.

    Returns:
        ``(r_s, jac_t, cost_terms, r)``: scaled residuals and Jacobian rows, the
        per-point robust cost terms (None for the linear loss, whose cost is
        ``0.5 * sum(r**2)``) and the raw weighted residuals.
    """
    p = theta.shape[0]

    def at(t):
        return residual(t, block)

    m = jax.eval_shape(at, theta).shape[0]
    if p <= m:
        # forward mode: p directional derivatives, fused with the residual itself
        tangents = jnp.eye(p, dtype=theta.dtype) if basis is None else basis.T
        r, jac_t = jax.vmap(lambda e: jax.jvp(at, (theta,), (e,)), out_axes=(None, 0))(tangents)
    else:
        # more parameters than residuals: m reverse-mode sweeps are cheaper
        r, pullback = jax.vjp(at, theta)
        jac_t = jax.vmap(pullback)(jnp.eye(m, dtype=r.dtype))[0].T
        if basis is not None:
            jac_t = basis.T @ jac_t
    if loss == "linear":
        return r, jac_t, None, r
    cost_terms, r_factor, j_factor = robust_scaling(loss, f_scale, r)
    return r * r_factor, jac_t * j_factor, cost_terms, r


def direct_pass(residual: Residual, theta, block, *, loss="linear", f_scale=1.0) -> Linearization:
    """Householder QR of ``[J | r]`` over the whole block.

    Args:
        residual: ``residual(theta, block) -> r`` of shape ``(m,)``.
        theta: parameters, shape ``(p,)``.
        block: the data the residual reads.
        loss, f_scale: robust loss settings.
    """
    r_s, jac_t, cost_terms, r = _scaled_terms(residual, theta, block, loss, f_scale)
    chi2 = jnp.sum(r * r)
    cost = 0.5 * (chi2 if cost_terms is None else jnp.sum(cost_terms))
    p = theta.shape[0]
    stacked = jnp.concatenate([jac_t, r_s[None, :]], axis=0).T
    if stacked.shape[0] < p + 1:  # fewer residuals than p + 1: zero rows change nothing
        stacked = jnp.pad(stacked, ((0, p + 1 - stacked.shape[0]), (0, 0)))
    full = jnp.linalg.qr(stacked, mode="r")
    R, qtr = full[:p, :p], full[:p, p]
    finite = all_finite(cost, R, qtr)
    return Linearization(cost, R, qtr, chi2, finite, jnp.asarray(False))


def _pair_sums(columns, extras=()):
    """Sums of all products ``columns[i] * columns[j]`` (i <= j), then of ``extras``, in one reduction.

    A single variadic ``lax.reduce`` lets XLA compute every entry in one loop
    over the chunk, about 30% faster on CPU than ``A @ A.T`` for the tall, thin
    shapes of a least-squares chunk. The sums stay a flat vector inside the
    scan: assembling the matrix there (a scatter) fuses with the reduction and
    made it twice as slow.
    """
    n = len(columns)
    operands = tuple(columns[i] * columns[j] for i in range(n) for j in range(i, n)) + tuple(extras)
    zeros = tuple(jnp.zeros((), columns[0].dtype) for _ in operands)
    sums = lax.reduce(
        operands, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), (0,)
    )
    return jnp.stack(sums)


def _symmetric(pair_sums, n):
    """The ``n x n`` symmetric matrix from :func:`_pair_sums`' upper-triangle order."""
    # static positions: slices and a stack (a scatter would not fuse under vmap)
    position = {}
    for k, (i, j) in enumerate(zip(*np.triu_indices(n), strict=True)):
        position[i, j] = position[j, i] = k
    return jnp.stack([jnp.stack([pair_sums[position[i, j]] for j in range(n)]) for i in range(n)])


def chunk_sums(
    residual: Residual, theta, regions, reference, *, loss="linear", f_scale=1.0, axis_name=None
):
    """The pass's raw accumulation: pair sums of ``[J P^{-1} | r]`` (and robust cost terms).

    Sums from separate calls (chunks streamed from disk, say) add up; the
    total goes to :func:`linearize_sums`. Arguments as for :func:`chunked_pass`.
    """
    p = theta.shape[0]
    # P^{-1}, upper triangular; None: the identity, known while tracing (the
    # derivatives along unit vectors then need no product with it)
    inverse = None if reference is None else inverse_upper(reference)
    robust = loss != "linear"

    def sums(block):
        # the columns of J P^{-1} directly: derivatives along the columns of P^{-1}
        r_s, jac_t, cost_terms, r = _scaled_terms(residual, theta, block, loss, f_scale, inverse)
        return _pair_sums([*jac_t, r_s], (cost_terms, r * r) if robust else ())

    def accumulate(total, block):
        return total + sums(block), None

    total = jnp.zeros(sums_size(p, loss), theta.dtype)
    if axis_name is not None:
        # each device accumulates its own chunks: the running sum varies over the axis
        total = lax.pcast(total, (axis_name,), to="varying")
    for region in regions:
        count = jax.tree.leaves(region)[0].shape[0]
        if count == 1:  # no loop for a single chunk (it fuses better, e.g. under vmap)
            total = total + sums(jax.tree.map(lambda a: a[0], region))
        elif count > 1:
            total, _ = lax.scan(accumulate, total, region)
    if axis_name is not None:
        total = lax.psum(total, axis_name)
    return total


def ranged_chunk_sums(residual: Residual, theta, ranged):
    """:func:`chunk_sums` (linear loss, no preconditioner) over chosen chunks of each region.

    Args:
        ranged: ``(region, start, stop)`` triples; chunks ``start <= i < stop``
            (traced integers) of each region are summed. One loop per region
            whatever the range, so a program that sums different ranges of the
            same regions (a warm start's chunk, then the rest) holds one copy
            of the pass.
    """
    p = theta.shape[0]

    def sums(block):
        r_s, jac_t, _, _ = _scaled_terms(residual, theta, block, "linear", 1.0, None)
        return _pair_sums([*jac_t, r_s])

    total = jnp.zeros(sums_size(p, "linear"), theta.dtype)
    for region, start, stop in ranged:

        def accumulate(i, total, region=region):
            return total + sums(jax.tree.map(lambda a: a[i], region))

        total = lax.fori_loop(start, stop, accumulate, total)
    return total


def sums_size(p: int, loss) -> int:
    """Length of the vector :func:`chunk_sums` returns."""
    return (p + 1) * (p + 2) // 2 + (0 if loss == "linear" else 2)


def linearize_sums(total, reference, loss="linear") -> Linearization:
    """The linearisation from accumulated :func:`chunk_sums`."""
    p = reference.shape[0]
    n_pairs = (p + 1) * (p + 2) // 2
    G = _symmetric(total, p + 1)
    if loss != "linear":
        cost, chi2 = 0.5 * total[n_pairs], total[n_pairs + 1]
    else:
        cost, chi2 = 0.5 * G[p, p], G[p, p]
    return _factor_gram(G, reference, cost, chi2)


def chunked_pass(
    residual: Residual, theta, regions, reference, *, loss="linear", f_scale=1.0, axis_name=None
) -> Linearization:
    """Accumulate the preconditioned Gram matrix over chunks and factor it.

    Args:
        residual: ``residual(theta, block) -> r`` for one chunk.
        theta: parameters, shape ``(p,)``.
        regions: sequence of pytrees whose leaves have a leading axis of
            chunks; each is scanned (a region may have zero chunks).
        reference: ``(p, p)`` upper-triangular preconditioner ``P`` (the previous ``R``).
        loss, f_scale: robust loss settings.
        axis_name: inside ``shard_map``, the mesh axis the chunks are split over;
            the partial sums of every device (and process) are added with ``psum``.
    """
    total = chunk_sums(
        residual, theta, regions, reference, loss=loss, f_scale=f_scale, axis_name=axis_name
    )
    return linearize_sums(total, reference, loss)


def _factor_gram(G, reference, cost, chi2) -> Linearization:
    """``R`` and ``qtr`` from the Gram matrix of ``[J P^{-1} | r]``.

    ``S = (J P^{-1})^T (J P^{-1})`` is close to the identity when ``P`` is a good
    preconditioner, and its Cholesky factor ``C`` then gives ``R = C P``. A
    small diagonal shift (relative ``p * eps``, the rounding level of ``S``)
    keeps the factorisation defined when ``J`` is rank-deficient; LM and TRF
    regularise those directions anyway. The condition of ``C`` decides whether
    the pass must be repeated with ``R`` as the new preconditioner.
    """
    p = reference.shape[0]
    S, b = G[:p, :p], G[:p, p]
    eps = jnp.finfo(G.dtype).eps
    scale = jnp.maximum(largest(jnp.stack([S[i, i] for i in range(p)])), jnp.finfo(G.dtype).tiny)
    eye = jnp.eye(p, dtype=G.dtype)
    C = cholesky_upper(S + (p * eps * scale) * eye)
    # Far from the answer an unpreconditioned S can be indefinite at rounding
    # level; a larger shift still yields a factor, which the repeat then refines.
    rescue = cholesky_upper(S + (1e-6 * scale) * eye)
    C = jnp.where(all_finite(C), C, rescue)
    R = matmul(C, reference)
    qtr = solve_upper(C, b, transpose=True)
    ill = condition_exceeds(C, _CONDITION_LIMIT)
    finite = all_finite(cost, R, qtr)
    return Linearization(cost, R, qtr, chi2, finite, ill & finite)
