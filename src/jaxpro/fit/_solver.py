"""What LM and TRF share: the state they loop over, their options, the objective interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jaxpro.fit._pass import Linearization

# status while the loop runs; final codes follow SciPy (0 max_nfev, 1 gtol,
# 2 ftol, 3 xtol, 4 ftol and xtol) plus -3: non-finite cost at the start.
RUNNING = -100
NONFINITE_START = -3


class Objective(NamedTuple):
    """The problem as a solver sees it.

    Attributes:
        evaluate: ``evaluate(theta, reference_R, repeat_if) -> Linearization``:
            one data pass preconditioned by ``reference_R``; a chunked pass whose
            factor came out inaccurate is repeated (with its own ``R``) while
            ``repeat_if(lin)`` holds, e.g. only for a trial the solver accepts.
            The pass appears once in the compiled program either way.
    """

    evaluate: Callable[..., Linearization]


class Options(NamedTuple):
    """Termination and scaling settings (arrays are traced, bools are static)."""

    ftol: Any
    xtol: Any
    gtol: Any
    max_nfev: Any
    x_scale: Any  # array of variable scales, used when jac_scale is False
    jac_scale: bool  # scale variables by the Jacobian's column norms
    n_rows: Any  # number of residuals (rank threshold of the trust-region solve)

    @property
    def rounding(self):
        """Relative rounding error of a cost summed over ``n_rows`` terms.

        A predicted relative reduction below it cannot be observed: the fit is
        as converged as float64 allows, and the actual reduction is noise.
        """
        return 4.0 * float(jnp.finfo(jnp.float64).eps) * jnp.sqrt(jnp.maximum(self.n_rows, 1.0))


class SolverState(NamedTuple):
    x: jax.Array
    lin: Linearization
    nfev: jax.Array
    njev: jax.Array
    nit: jax.Array
    status: jax.Array
    extra: Any  # method-specific


def final_newton_step(lin: Linearization, options: Options):
    """The Gauss-Newton step at a point where it can no longer be checked.

    When the full Gauss-Newton step's predicted reduction, ``0.5 ||qtr||^2``,
    is below the cost's rounding, another data pass could not tell whether it
    helps; the linear model is exact to far better than that at this scale, so
    the step is taken without a pass and the fit stops (one pass saved, and the
    last digits gained rather than left on the table).

    Returns:
        ``(step, usable)``.
    """
    decrement = 0.5 * jnp.sum(lin.qtr**2) / jnp.maximum(lin.cost, jnp.finfo(lin.cost.dtype).tiny)
    step = -solve_triangular(lin.R, lin.qtr, lower=False)
    usable = lin.finite & (decrement <= options.rounding) & jnp.all(jnp.isfinite(step))
    return step, usable


def column_norms(R: jax.Array) -> jax.Array:
    """Column norms of J, read off its triangular factor."""
    return jnp.sqrt(jnp.sum(R * R, axis=0))


def select(pred, on_true, on_false):
    """Elementwise ``where`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
