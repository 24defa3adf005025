"""``fixed_point``'s implicit gradients against the analytic derivative and finite differences.

Oracles: for ``x = cos(a x) + b`` the implicit function theorem in closed form,
``dx/da = -x sin(a x) / (1 + a sin(a x))`` and ``dx/db = 1 / (1 + a sin(a x))``;
for a vector equation, central finite differences of the converged solution
(step 1e-6, agreement 1e-7 relative, the differences' own truncation error).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro.core import fixed_point
from jaxpro.errors import InputError


def cosine(x, a, b):
    return jnp.cos(a * x) + b


def test_scalar_solution_and_gradients_match_the_closed_form():
    a, b = 0.7, 0.3
    x = fixed_point(cosine, 0.0, a, b, tol=1e-14)
    assert abs(float(cosine(x, a, b) - x)) < 1e-13
    da, db = jax.grad(lambda a, b: fixed_point(cosine, 0.0, a, b, tol=1e-14), argnums=(0, 1))(a, b)
    s = np.sin(a * float(x))
    np.testing.assert_allclose(float(da), -float(x) * s / (1 + a * s), rtol=1e-10)
    np.testing.assert_allclose(float(db), 1 / (1 + a * s), rtol=1e-10)


def layer(x, params):
    """A small equilibrium layer x = tanh(W x + u), a contraction for small W."""
    return {"h": jnp.tanh(params["W"] @ x["h"] + params["u"])}


def test_pytree_gradients_match_finite_differences_and_jit():
    rng = np.random.default_rng(0)
    params = {"W": jnp.asarray(0.3 * rng.normal(size=(5, 5)) / np.sqrt(5)),
              "u": jnp.asarray(rng.normal(size=5))}  # fmt: skip
    x0 = {"h": jnp.zeros(5)}

    def objective(p):
        return jnp.sum(fixed_point(layer, x0, p, tol=1e-14)["h"] ** 2)

    grads = jax.jit(jax.grad(objective))(params)
    step = 1e-6
    for name in ("W", "u"):
        flat = np.asarray(params[name]).ravel()
        numeric = np.empty_like(flat)
        for i in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[i] += step
            down[i] -= step
            shaped = params[name].shape
            f_up = objective({**params, name: jnp.asarray(up.reshape(shaped))})
            f_down = objective({**params, name: jnp.asarray(down.reshape(shaped))})
            numeric[i] = (float(f_up) - float(f_down)) / (2 * step)
        np.testing.assert_allclose(np.asarray(grads[name]).ravel(), numeric, rtol=1e-7, atol=1e-9)


def test_no_gradient_flows_to_the_start_and_memory_does_not_follow_iterations():
    g = jax.grad(lambda x0: fixed_point(cosine, x0, 0.7, 0.3))(0.5)
    assert float(g) == 0.0
    # the backward pass keeps the solution only: its temporaries do not grow with max_iter
    sizes = []
    for max_iter in (50, 5000):

        def total(a, max_iter=max_iter):
            return fixed_point(cosine, jnp.zeros(1000), a, 0.3, max_iter=max_iter).sum()

        compiled = jax.jit(jax.grad(total)).lower(0.7).compile()
        sizes.append(compiled.memory_analysis().temp_size_in_bytes)
    assert sizes[0] == sizes[1]


def test_bad_input_names_the_argument():
    with pytest.raises(InputError, match="f: must be a callable"):
        fixed_point("cos", 0.0)
    with pytest.raises(InputError, match=r"tol: must be a positive number \(got 0\)"):
        fixed_point(cosine, 0.0, 1.0, 0.0, tol=0)
    with pytest.raises(InputError, match=r"max_iter: must be a positive integer \(got 2.5\)"):
        fixed_point(cosine, 0.0, 1.0, 0.0, max_iter=2.5)
