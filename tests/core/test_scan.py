"""``checkpointed_scan`` equals ``lax.scan`` (values and gradients) in O(sqrt(length)) memory.

Oracles: ``lax.scan`` itself (values and ``jax.grad`` through it, agreement
to 1e-12 relative in float64: the same operations in the same order, so any
difference is rounding) and XLA's own ``memory_analysis`` of the compiled
gradient (temporary bytes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxpro.core import checkpointed_scan
from jaxpro.core._scan import segment_length
from jaxpro.errors import InputError


def step(carry, x):
    """A nonlinear step with a per-step input and a per-step output."""
    position, velocity = carry
    force = -jnp.sin(position) * x["k"] - 0.01 * velocity
    velocity = velocity + 0.05 * force
    position = position + 0.05 * velocity
    return (position, velocity), jnp.sum(position**2) + x["t"]


def inputs(n, width=4):
    rng = np.random.default_rng(n)
    return {"k": jnp.asarray(1.0 + 0.1 * rng.random((n, width))), "t": jnp.arange(n) * 1e-3}


def loss(scan, theta, xs, **kwargs):
    init = (theta, jnp.zeros_like(theta))
    (position, velocity), ys = scan(step, init, xs, **kwargs)
    return jnp.sum(position * velocity) + jnp.sum(ys) * 1e-3


@pytest.mark.parametrize(("n", "segment"), [(100, None), (37, None), (37, 5), (5, 8), (1, None)])
def test_values_and_gradients_equal_lax_scan(n, segment):
    xs = inputs(n)
    theta = jnp.linspace(0.1, 0.9, 4)
    init = (theta, jnp.zeros(4))
    want_carry, want_ys = lax.scan(step, init, xs)
    got_carry, got_ys = checkpointed_scan(step, init, xs, segment=segment)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12)
    for g, w in zip(got_carry, want_carry, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    want = jax.grad(lambda t: loss(lax.scan, t, xs))(theta)
    got = jax.jit(jax.grad(lambda t: loss(checkpointed_scan, t, xs, segment=segment)))(theta)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_without_xs_and_with_no_outputs():
    def decay(c, _):
        return c * 0.99 + jnp.sin(c) * 1e-3, None

    want = jax.grad(lambda c: lax.scan(decay, c, None, length=50)[0])(1.3)
    got = jax.grad(lambda c: checkpointed_scan(decay, c, length=50)[0])(1.3)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    carry, ys = checkpointed_scan(decay, 1.3, length=0)
    assert float(carry) == 1.3 and ys is None


def temp_bytes(scan, n, width=5_000):
    """XLA's temporary memory for the gradient through ``n`` steps."""

    def f(carry, _):
        return jnp.sin(carry) * 0.999 + 0.001 * carry * carry, None

    def loss_of(theta):
        return jnp.sum(scan(f, theta, None, length=n)[0])

    compiled = jax.jit(jax.grad(loss_of)).lower(jnp.ones(width)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_memory_grows_sub_linearly_with_length():
    """10x the steps: < 4x the temporary memory (plain scan: about 10x)."""
    short, long = 100, 1000
    ratio = temp_bytes(checkpointed_scan, long) / temp_bytes(checkpointed_scan, short)
    plain = temp_bytes(lax.scan, long) / temp_bytes(lax.scan, short)
    assert ratio < 4.0, ratio
    assert plain > 8.0, plain  # the oracle: XLA really keeps every step of a plain scan
    assert temp_bytes(checkpointed_scan, long) * 5 < temp_bytes(lax.scan, long)


def test_default_segment_is_the_square_root():
    assert [segment_length(n) for n in (0, 1, 2, 4, 5, 100, 101, 1000)] == [
        1, 1, 2, 2, 3, 10, 11, 32,
    ]  # fmt: skip


def test_bad_input_names_the_argument():
    with pytest.raises(InputError, match=r"f: must be a callable"):
        checkpointed_scan(3, 0.0, length=3)
    with pytest.raises(InputError, match=r"length: is needed when xs is None"):
        checkpointed_scan(lambda c, x: (c, None), 0.0)
    with pytest.raises(InputError, match=r"length: is 4 but xs has 3 steps"):
        checkpointed_scan(lambda c, x: (c, None), 0.0, jnp.zeros(3), length=4)
    with pytest.raises(InputError, match=r"xs: every leaf needs the same leading"):
        checkpointed_scan(lambda c, x: (c, None), 0.0, {"a": jnp.zeros(3), "b": jnp.zeros(2)})
    with pytest.raises(InputError, match=r"segment: must be a positive integer \(got 0\)"):
        checkpointed_scan(lambda c, x: (c, None), 0.0, length=3, segment=0)
    with pytest.raises(InputError, match=r"length: must be a non-negative integer \(got -2\)"):
        checkpointed_scan(lambda c, x: (c, None), 0.0, length=-2)
