"""only_where / for_rows: conditional work that stays conditional under vmap.

Oracles: a plain select of both branches in JAX (the same operations, so
only_where must reproduce it exactly: it only moves rows), and the same
function in NumPy, within a few ulp (XLA's and NumPy's sin are different
implementations, each within about 1 ulp of the true value).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from jaxpro.fit._batching import for_rows, only_where  # noqa: E402


def costly(a, b):
    return jnp.sin(a) * b, a + b


def choose(pred, a, b, block=4):
    cheap = (a * 0.0 - 1.0, b * 0.0 - 2.0)
    return only_where(pred, costly, cheap, a, b, block=block)


def select_both(pred, a, b):
    """Both branches computed on every row, then selected: what only_where avoids."""
    return tuple(jnp.where(pred, c, k) for c, k in zip(costly(a, b), (-1.0, -2.0), strict=True))


@pytest.mark.parametrize("needed", [0, 1, 3, 4, 5, 9, 16])
def test_batched_rows_match_rowwise_answers(needed):
    rng = np.random.default_rng(needed)
    n = 16
    a, b = rng.normal(size=n), rng.normal(size=n)
    pred = np.zeros(n, bool)
    pred[rng.choice(n, needed, replace=False)] = True
    out1, out2 = jax.jit(jax.vmap(choose))(pred, a, b)
    # exact against both branches selected by a plain jnp.where: the same JAX operations
    # on the same rows; only_where gathers and places rows, which changes no bit
    both1, both2 = jax.jit(jax.vmap(select_both))(pred, a, b)
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(both1))
    np.testing.assert_array_equal(np.asarray(out2), np.asarray(both2))
    # NumPy: sin(a)*b within 4 ulp (two sin implementations, then one rounded product);
    # a+b is a single correctly rounded IEEE addition in both libraries, hence exact
    np.testing.assert_array_max_ulp(np.asarray(out1), np.where(pred, np.sin(a) * b, -1.0), 4)
    np.testing.assert_array_equal(np.asarray(out2), np.where(pred, a + b, -2.0))


def test_unbatched_call_is_a_cond():
    assert float(jax.jit(choose)(True, 0.5, 2.0)[0]) == pytest.approx(np.sin(0.5) * 2.0, rel=1e-15)
    assert float(jax.jit(choose)(False, 0.5, 2.0)[0]) == -1.0


def test_costly_branch_runs_on_one_block_not_every_row():
    """3 of 64 rows flagged, blocks of 8: the costly branch computes 8 rows, not 64."""
    computed = []

    def spy(a):
        jax.debug.callback(lambda v: computed.append(np.size(v)), a)
        return a * 2.0

    a = jnp.arange(64.0)
    pred = jnp.zeros(64, bool).at[jnp.array([3, 40, 63])].set(True)
    out = jax.jit(jax.vmap(lambda p, v: only_where(p, spy, v, v, block=8)))(pred, a)
    jax.block_until_ready(out)
    assert sum(computed) == 8, computed
    expect = np.where(np.asarray(pred), 2.0 * np.arange(64.0), np.arange(64.0))
    np.testing.assert_array_equal(np.asarray(out), expect)


def test_unbatched_operands_are_broadcast():
    pred = jnp.array([True, False, True])
    b = 3.0  # the same for every row
    out1, _ = jax.vmap(choose, in_axes=(0, 0, None))(pred, jnp.array([0.1, 0.2, 0.3]), b)
    np.testing.assert_allclose(
        np.asarray(out1), [np.sin(0.1) * 3, -1.0, np.sin(0.3) * 3], rtol=1e-15
    )


def test_for_rows_visits_every_flagged_row_in_blocks():
    mask = np.zeros(10, bool)
    mask[[0, 2, 3, 7, 9]] = True

    def mark(rows, slot, value):  # idempotent, as for_rows requires (the last window may overlap)
        in_block = slot >= 0
        assert_rows = jnp.where(in_block, rows[jnp.maximum(slot, 0)], jnp.arange(10))
        return jnp.where(in_block & (assert_rows == jnp.arange(10)), 1.0, value)

    marked = jax.jit(lambda m: for_rows(m, mark, jnp.zeros(10), block=2))(mask)
    np.testing.assert_array_equal(np.asarray(marked), mask.astype(float))
    untouched = for_rows(jnp.zeros(10, bool), mark, jnp.full(10, 5.0), block=2)
    np.testing.assert_array_equal(np.asarray(untouched), np.full(10, 5.0))
