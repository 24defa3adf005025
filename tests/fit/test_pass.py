"""The data passes: the chunked pass must be as accurate as Householder QR of the whole Jacobian.

Oracle: numpy.linalg.lstsq (LAPACK, Householder/SVD) on the full Jacobian, and
the analytic solution of a consistent linear system.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxpro.fit._losses import robust_scaling  # noqa: E402
from jaxpro.fit._pass import chunked_pass, direct_pass  # noqa: E402

EPS = np.finfo(float).eps
DEGREE = 9
CHUNK = 512
CHUNKS = 40


def polynomial(theta, block):
    """Monomial basis on [0, 1]: a notoriously ill-conditioned Jacobian."""
    x = block["x"]
    powers = x[None, :] ** jnp.arange(DEGREE + 1)[:, None]
    return theta @ powers - block["y"]


def _problem():
    x = np.linspace(0.0, 1.0, CHUNK * CHUNKS)
    J = x[:, None] ** np.arange(DEGREE + 1)[None, :]
    truth = np.linspace(1.0, -1.0, DEGREE + 1)
    y = J @ truth  # consistent: zero residual at the solution
    condition = np.linalg.cond(J)
    assert 1e6 < condition < 1e9, f"test needs a badly conditioned J, got cond {condition:.2e}"
    regions = ({"x": x.reshape(CHUNKS, CHUNK), "y": y.reshape(CHUNKS, CHUNK)},)
    return x, y, J, truth, condition, regions


def _solution(lin):
    return -np.linalg.solve(np.asarray(lin.R), np.asarray(lin.qtr))


def _settled(theta, regions, passes=3):
    lin = chunked_pass(polynomial, theta, regions, jnp.eye(theta.shape[0]))
    used = 1
    while bool(lin.ill_conditioned) and used < passes:
        lin = chunked_pass(polynomial, theta, regions, lin.R)
        used += 1
    return lin, used


def test_chunked_pass_is_as_accurate_as_householder():
    x, y, J, truth, condition, regions = _problem()
    theta = jnp.zeros(DEGREE + 1)
    lin, used = _settled(theta, regions)
    reference, *_ = np.linalg.lstsq(J, y, rcond=None)
    bound = 100 * condition * EPS  # Householder's forward error bound, with margin
    ours = np.linalg.norm(_solution(lin) - truth) / np.linalg.norm(truth)
    lapack = np.linalg.norm(reference - truth) / np.linalg.norm(truth)
    assert ours <= bound, (
        f"chunked pass error {ours:.2e} > {bound:.2e} (LAPACK: {lapack:.2e}, {used} passes)"
    )
    assert not bool(lin.ill_conditioned), "the factor should be settled after repeating the pass"


def test_single_unpreconditioned_gram_is_not_accurate_enough():
    """The accuracy test above can fail: plain normal equations miss its bound."""
    x, y, J, truth, condition, regions = _problem()
    theta = jnp.zeros(DEGREE + 1)
    lin = chunked_pass(polynomial, theta, regions, jnp.eye(DEGREE + 1))
    assert bool(lin.ill_conditioned), "a cond > 1e6 Gram matrix must ask for another pass"
    naive = np.linalg.norm(_solution(lin) - truth) / np.linalg.norm(truth)
    assert naive > 100 * condition * EPS, f"normal equations unexpectedly accurate ({naive:.2e})"


def test_factor_reproduces_gram_and_gradient():
    x, y, J, truth, condition, regions = _problem()
    theta = jnp.asarray(np.random.default_rng(0).normal(size=DEGREE + 1))
    lin, _ = _settled(theta, regions)
    r = J @ np.asarray(theta) - y
    R, qtr = np.asarray(lin.R), np.asarray(lin.qtr)
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-10, atol=1e-10 * np.abs(J.T @ J).max())
    np.testing.assert_allclose(R.T @ qtr, J.T @ r, rtol=1e-9, atol=1e-9 * np.abs(J.T @ r).max())
    np.testing.assert_allclose(float(lin.cost), 0.5 * r @ r, rtol=1e-12)
    assert np.allclose(np.tril(R, -1), 0.0), "R must be upper triangular"


def test_direct_pass_matches_lapack():
    x, y, J, truth, condition, regions = _problem()
    block = {"x": x, "y": y + np.sin(40 * x) * 1e-3}  # inconsistent system: nonzero residual
    lin = direct_pass(polynomial, jnp.zeros(DEGREE + 1), block)
    reference, *_ = np.linalg.lstsq(J, block["y"], rcond=None)
    got = _solution(lin)
    assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < 100 * condition * EPS


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_chunked_and_direct_agree_with_robust_loss(loss):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, CHUNK * 4)

    def model(theta, block):
        return theta[0] * jnp.exp(-theta[1] * block["x"]) + theta[2] - block["y"]

    y = 2 * np.exp(-1.5 * x) + 0.3 + rng.standard_cauchy(x.size) * 0.05
    theta = jnp.asarray([1.8, 1.2, 0.4])
    direct = direct_pass(model, theta, {"x": x, "y": y}, loss=loss, f_scale=0.1)
    regions = ({"x": x.reshape(4, CHUNK), "y": y.reshape(4, CHUNK)},)
    chunked = chunked_pass(model, theta, regions, direct.R, loss=loss, f_scale=0.1)
    np.testing.assert_allclose(float(chunked.cost), float(direct.cost), rtol=1e-12)
    np.testing.assert_allclose(float(chunked.chi2), float(direct.chi2), rtol=1e-12)
    # Where a robust loss clips rho' + 2 rho'' z at eps, r_s grows by 1/sqrt(eps);
    # any factorisation of [J_s | r_s] then carries eps * ||J_s|| * ||r_s|| of
    # rounding in J^T r (SciPy's too), so that is the scale to compare on.
    r = 2 * np.exp(-1.2 * x) * 0.9 + 0.4 - y
    _, r_factor, j_factor = (np.asarray(v) for v in robust_scaling(loss, 0.1, r))
    jac = (
        np.stack([np.exp(-1.2 * x), -1.8 * x * np.exp(-1.2 * x), np.ones_like(x)], 1)
        * j_factor[:, None]
    )
    scale = np.linalg.norm(jac) * np.linalg.norm(r * r_factor)
    np.testing.assert_allclose(
        np.asarray(chunked.gradient), np.asarray(direct.gradient), rtol=0, atol=1e-13 * scale
    )
    np.testing.assert_allclose(
        np.abs(np.asarray(chunked.R)), np.abs(np.asarray(direct.R)), rtol=1e-9, atol=1e-9
    )
