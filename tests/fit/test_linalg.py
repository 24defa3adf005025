"""The batched small SVD against LAPACK (numpy.linalg.svd) as the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxpro.fit._linalg import JACOBI_MAX, batched, inverse_upper, svd  # noqa: E402


def jacobi(A):
    with batched():
        return jax.jit(svd)(jnp.asarray(A))


def _check(A, rtol):
    U, s, Vt = (np.asarray(v) for v in jacobi(A))
    expected = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(s, expected, rtol=rtol, atol=1e-14 * max(expected[0], 1e-300))
    np.testing.assert_allclose((U * s) @ Vt, A, atol=1e-13 * max(np.abs(A).max(), 1e-300))
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(A.shape[1]), atol=1e-13)
    assert np.all(np.diff(s) <= 0), "singular values must be sorted, largest first"


@pytest.mark.parametrize("n", range(1, JACOBI_MAX + 1))
@pytest.mark.parametrize("tall", [0, 3])
def test_random_matrices(n, tall):
    rng = np.random.default_rng(n + 10 * tall)
    for _ in range(5):
        _check(rng.normal(size=(n + tall, n)), rtol=1e-13)


def test_ill_conditioned_matrix_keeps_relative_accuracy():
    rng = np.random.default_rng(0)
    Q1, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    Q2, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    s = np.logspace(0, -12, 5)
    _check(Q1 @ np.diag(s) @ Q2.T, rtol=1e-6)  # LAPACK itself is only normwise accurate here


def test_rank_deficient_and_zero():
    rng = np.random.default_rng(1)
    B = rng.normal(size=(4, 2))
    _check(B @ rng.normal(size=(2, 4)), rtol=1e-12)
    U, s, Vt = jacobi(np.zeros((3, 3)))
    assert np.all(np.asarray(s) == 0) and np.all(np.isfinite(np.asarray(U)))


def test_vectorises_over_a_batch():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(100, 3, 3))
    with batched():
        s = np.asarray(jax.jit(jax.vmap(svd))(jnp.asarray(A))[1])
    np.testing.assert_allclose(s, np.linalg.svd(A, compute_uv=False), rtol=1e-13)


@pytest.mark.parametrize("n", range(1, JACOBI_MAX + 1))
def test_batched_triangular_inverse(n):
    rng = np.random.default_rng(n)
    U = np.triu(rng.normal(size=(n, n))) + 2.0 * np.eye(n) * np.sign(rng.normal(size=n))
    with batched():
        X = np.asarray(jax.jit(inverse_upper)(jnp.asarray(U)))
    np.testing.assert_allclose(X, np.linalg.inv(U), rtol=1e-12, atol=1e-13)
    assert np.all(np.tril(X, -1) == 0), "upper triangular"


def test_batched_small_helpers_equal_numpy():
    from jaxpro.fit._linalg import (
        all_finite,
        column_norms,
        dot,
        frobenius,
        largest,
        matmul,
        matvec,
        norm,
        rmatvec,
    )

    rng = np.random.default_rng(7)
    A, B, v = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=3)
    cases = {
        "dot": (lambda: dot(v, v), v @ v),
        "norm": (lambda: norm(v), np.linalg.norm(v)),
        "largest": (lambda: largest(v), v.max()),
        "matvec": (lambda: matvec(A, v), A @ v),
        "rmatvec": (lambda: rmatvec(A, v), A.T @ v),
        "matmul": (lambda: matmul(A, B), A @ B),
        "frobenius": (lambda: frobenius(A), np.linalg.norm(A)),
        "column_norms": (lambda: column_norms(A), np.linalg.norm(A, axis=0)),
    }
    for name, (fn, expected) in cases.items():
        with batched():
            got = np.asarray(jax.jit(fn)())
        np.testing.assert_allclose(got, expected, rtol=1e-14, err_msg=name)
    with batched():
        assert bool(jax.jit(lambda: all_finite(A, v))())
        bad = v.copy()
        bad[1] = np.nan
        assert not bool(jax.jit(lambda: all_finite(A, bad))())
