"""Small dense linear algebra that vectorises across a batch of fits.

XLA's CPU backend implements ``svd`` and ``eigh`` as one LAPACK call per
matrix: under ``vmap`` over 100,000 independent fits, an SVD of a 3x3 matrix
costs ~1.5 microseconds each, serially. The solver's matrices are ``p x p``
with small ``p``, so for ``p <= JACOBI_MAX`` jaxpro uses a one-sided Jacobi
SVD written with element-wise operations (unrolled over column pairs), which
batches into wide vector instructions and is accurate to high relative
precision. Outside a batch LAPACK is as fast and much cheaper to compile, so
the Jacobi path is used only while a batched program is traced
(:func:`batched`).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools

import jax.numpy as jnp
from jax import lax

__all__ = ["JACOBI_MAX", "batched", "svd"]

JACOBI_MAX = 8
_SWEEPS = 12  # quadratic convergence: ample for p <= 8 in float64
_BATCHED = contextvars.ContextVar("jaxpro_batched_linalg", default=False)


@contextlib.contextmanager
def batched():
    """While tracing a program that will be vmapped over many fits."""
    token = _BATCHED.set(True)
    try:
        yield
    finally:
        _BATCHED.reset(token)


def _jacobi_svd(A):
    """One-sided Jacobi SVD of an ``m x n`` matrix, ``m >= n``: thin ``(U, s, Vt)``, ``s`` descending."""
    n = A.shape[-1]
    cols = [A[:, j] for j in range(n)]
    vcols = [jnp.zeros(n, A.dtype).at[j].set(1.0) for j in range(n)]
    tiny = jnp.finfo(A.dtype).tiny
    eps = jnp.finfo(A.dtype).eps

    def sweep(state):
        cols, vcols, _, count = state
        cols, vcols = list(cols), list(vcols)
        off = jnp.zeros((), A.dtype)
        for i, j in itertools.combinations(range(n), 2):
            alpha = jnp.sum(cols[i] * cols[i])
            beta = jnp.sum(cols[j] * cols[j])
            gamma = jnp.sum(cols[i] * cols[j])
            scale = jnp.sqrt(alpha * beta)
            off = jnp.maximum(off, jnp.abs(gamma) / jnp.maximum(scale, tiny))
            rotate = jnp.abs(gamma) > eps * scale
            zeta = (beta - alpha) / (2.0 * jnp.where(rotate, gamma, 1.0))
            t = jnp.sign(zeta) / (jnp.abs(zeta) + jnp.sqrt(1.0 + zeta * zeta))
            t = jnp.where(zeta == 0, 1.0, t)
            c = jnp.where(rotate, 1.0 / jnp.sqrt(1.0 + t * t), 1.0)
            s = jnp.where(rotate, c * t, 0.0)
            cols[i], cols[j] = c * cols[i] - s * cols[j], s * cols[i] + c * cols[j]
            vcols[i], vcols[j] = c * vcols[i] - s * vcols[j], s * vcols[i] + c * vcols[j]
        return tuple(cols), tuple(vcols), off, count + 1

    def unconverged(state):
        return (state[3] < _SWEEPS) & (state[2] > eps)

    cols, vcols, _, _ = lax.while_loop(
        unconverged, sweep, (tuple(cols), tuple(vcols), jnp.asarray(1.0, A.dtype), 0)
    )
    norms = [jnp.sqrt(jnp.sum(c * c)) for c in cols]
    # descending order by a compare-exchange network: element-wise selects
    # fuse across the batch, where a sort and gathers would not
    triples = list(zip(norms, cols, vcols, strict=True))
    for end in range(n - 1, 0, -1):
        for i in range(end):
            (s1, c1, v1), (s2, c2, v2) = triples[i], triples[i + 1]
            swap = s1 < s2
            triples[i] = (
                jnp.where(swap, s2, s1),
                jnp.where(swap, c2, c1),
                jnp.where(swap, v2, v1),
            )
            triples[i + 1] = (
                jnp.where(swap, s1, s2),
                jnp.where(swap, c1, c2),
                jnp.where(swap, v1, v2),
            )
    s = jnp.stack([t[0] for t in triples])
    U = jnp.stack([c / jnp.where(sv > 0, sv, 1.0) for sv, c, _ in triples], axis=1)
    Vt = jnp.stack([v for _, _, v in triples])
    return U, s, Vt


def svd(A):
    """Thin SVD ``(U, s, Vt)`` of a small matrix.

    Inside :func:`batched`, matrices with ``m >= n`` and ``n <= JACOBI_MAX`` use
    the vectorising Jacobi SVD; everything else uses LAPACK.

    Columns of ``U`` for zero singular values are zero (not completed to an
    orthonormal basis); every caller multiplies them by those zero values.
    """
    m, n = A.shape
    if _BATCHED.get() and m >= n and n <= JACOBI_MAX:
        return _jacobi_svd(A)
    return jnp.linalg.svd(A, full_matrices=False)


def _small(n: int) -> bool:
    return _BATCHED.get() and n <= JACOBI_MAX


def _entries(v):
    return [v[..., i] for i in range(v.shape[-1])]


def dot(a, b):
    """``a . b`` for vectors (a sum of products in a batch, fused with what follows)."""
    if not _small(a.shape[-1]):
        return jnp.dot(a, b)
    return sum(u * w for u, w in zip(_entries(a), _entries(b), strict=True))


def norm(v):
    """Euclidean norm of a vector."""
    if not _small(v.shape[-1]):
        return jnp.linalg.norm(v)
    return jnp.sqrt(dot(v, v))


def largest(v):
    """The largest entry of a vector."""
    if not _small(v.shape[-1]):
        return jnp.max(v)
    entries = _entries(v)
    out = entries[0]
    for e in entries[1:]:
        out = jnp.maximum(out, e)
    return out


def matvec(A, v):
    """``A @ v``."""
    if not _small(A.shape[-1]):
        return A @ v
    return jnp.stack([dot(A[i], v) for i in range(A.shape[0])])


def rmatvec(A, v):
    """``A.T @ v``."""
    if not _small(A.shape[0]):
        return A.T @ v
    return jnp.stack([dot(A[:, j], v) for j in range(A.shape[1])])


def matmul(A, B):
    """``A @ B`` for small matrices."""
    if not (_small(A.shape[-1]) and _small(B.shape[-1])):
        return A @ B
    return jnp.stack([rmatvec(B, A[i]) for i in range(A.shape[0])])


def frobenius(A):
    """Frobenius norm of a small matrix."""
    if not (_small(A.shape[0]) and _small(A.shape[-1])):
        return jnp.sqrt(jnp.sum(A * A))
    return jnp.sqrt(sum(dot(A[i], A[i]) for i in range(A.shape[0])))


def column_norms(A):
    """Euclidean norms of the columns of ``A``."""
    if not _small(A.shape[0]):
        return jnp.sqrt(jnp.sum(A * A, axis=0))
    return jnp.stack([norm(A[:, j]) for j in range(A.shape[1])])


def all_finite(*arrays):
    """Whether every entry of every array is finite (one test per fit in a batch)."""
    flags = [jnp.isfinite(a) for a in arrays]
    if all(f.size <= JACOBI_MAX * JACOBI_MAX for f in flags) and _BATCHED.get():
        out = jnp.asarray(True)
        for f in flags:
            for e in jnp.ravel(f):
                out = out & e
        return out
    return jnp.all(jnp.stack([jnp.all(f) for f in flags]))


def cholesky_upper(S):
    """Upper-triangular ``U`` with ``U^T U = S`` (NaN where ``S`` is not positive definite)."""
    n = S.shape[-1]
    if not _small(n):
        return jnp.linalg.cholesky(S).T
    U = [[jnp.zeros((), S.dtype)] * n for _ in range(n)]
    for j in range(n):
        d = S[j, j] - sum((U[k][j] * U[k][j] for k in range(j)), jnp.zeros((), S.dtype))
        U[j][j] = jnp.sqrt(d)  # NaN for d < 0, as LAPACK's failure shows through
        for i in range(j + 1, n):
            off = S[j, i] - sum((U[k][j] * U[k][i] for k in range(j)), jnp.zeros((), S.dtype))
            U[j][i] = off / U[j][j]
    return jnp.stack([jnp.stack(row) for row in U])


def solve_upper(U, b, *, transpose: bool = False):
    """Solve ``U z = b`` (or ``U^T z = b``) for upper-triangular ``U`` and a vector ``b``."""
    n = U.shape[-1]
    if not _small(n):
        from jax.scipy.linalg import solve_triangular

        return solve_triangular(U, b, lower=False, trans="T" if transpose else 0)
    z = [None] * n
    order = range(n) if transpose else range(n - 1, -1, -1)
    for i in order:
        if transpose:  # forward substitution with the lower-triangular U^T
            known = sum((U[k, i] * z[k] for k in range(i)), jnp.zeros((), U.dtype))
        else:
            known = sum((U[i, k] * z[k] for k in range(i + 1, n)), jnp.zeros((), U.dtype))
        z[i] = (b[i] - known) / U[i, i]
    return jnp.stack(z)


def inverse_upper(U):
    """``U^{-1}`` for upper-triangular ``U`` (itself upper triangular)."""
    n = U.shape[-1]
    if not _small(n):
        from jax.scipy.linalg import solve_triangular

        return solve_triangular(U, jnp.eye(n, dtype=U.dtype), lower=False)
    # n divisions (one per diagonal entry), then products: divisions are the
    # costly operations in a batch, and XLA does not share them between columns
    inverse_diagonal = [1.0 / U[i, i] for i in range(n)]
    zero = jnp.zeros((), U.dtype)
    X = [[zero] * n for _ in range(n)]
    for j in range(n):
        X[j][j] = inverse_diagonal[j]
        for i in range(j - 1, -1, -1):
            X[i][j] = -inverse_diagonal[i] * sum(U[i, k] * X[k][j] for k in range(i + 1, j + 1))
    return jnp.stack([jnp.stack(row) for row in X])


def condition_exceeds(U, limit):
    """Whether the triangular ``U``'s condition number exceeds ``limit``.

    Exact (singular values) for one fit; in a batch, the ratio of the largest
    to the smallest diagonal entry, a lower bound that is cheap to vectorise
    (it decides only whether a pass is repeated).
    """
    if _small(U.shape[-1]):
        d = jnp.abs(jnp.diag(U))
        return jnp.min(d) * limit < jnp.max(d)
    s = jnp.linalg.svd(U, compute_uv=False)
    return s[-1] * limit < s[0]
