"""jaxpro.cfd.solver: gradients through the flow solvers against central finite
differences (float64; agreement measured at 1e-8 relative or better), and the viscosity
recovered from an observed decay by jaxpro's least squares through the solver."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro
import jaxpro.cfd as cfd
from jaxpro.errors import InputError


def _central(fun, x, eps):
    return (fun(x + eps) - fun(x - eps)) / (2 * eps)


@pytest.mark.parametrize(
    ("flow", "kwargs"),
    [
        ("taylor_green", {"grid": 16}),
        # JAX-CFD's finite-volume RK4 takes ~10 s to compile forward and reverse
        pytest.param(
            "decaying_turbulence", {"grid": 32, "method": "finite_volume"}, marks=pytest.mark.slow
        ),
        ("channel", {"grid": (8, 16), "viscosity": 0.2}),
    ],
)
def test_gradient_of_the_kinetic_energy_matches_finite_differences(flow, kwargs):
    f = cfd.solver(flow, t_end=0.5, **kwargs)

    def energy(nu, amplitude=0.0):
        start = None
        if f.initial is not None:
            direction = np.random.default_rng(0).normal(size=f.initial.shape)
            start = f.initial + amplitude * direction
        return 0.5 * jnp.mean(f(start, nu) ** 2)

    nu = 0.05
    by_viscosity = float(jax.grad(energy)(nu))
    assert by_viscosity == pytest.approx(float(_central(energy, nu, 1e-5)), rel=1e-6)
    if f.initial is not None:
        along = float(jax.grad(lambda a: energy(nu, a))(0.0))
        numeric = float(_central(lambda a: energy(nu, a), 0.0, 1e-5))
        assert along == pytest.approx(numeric, rel=1e-6, abs=1e-12)


def test_the_viscosity_is_recovered_from_an_observed_decay():
    # the observed field: decaying turbulence at nu = 0.02 after one time unit
    f = cfd.solver("decaying_turbulence", grid=32, t_end=1.0)
    observed = np.asarray(f(f.initial, 0.02))
    fit = jaxpro.least_squares(
        lambda p: (f(f.initial, p[0]) - observed).ravel(), [0.05], bounds=([1e-4], [0.2])
    )
    assert fit.x[0] == pytest.approx(0.02, rel=1e-6)
    assert f.plan.method == "spectral" and f.steps >= 1


def test_solver_refuses_what_it_cannot_run():
    channel = cfd.solver("channel", grid=(8, 16), t_end=0.5, viscosity=0.1)
    with pytest.raises(InputError, match="viscosity"):
        channel(None, 100.0)  # beyond the explicit viscous limit of its fixed dt
    with pytest.raises(InputError, match="velocity0"):
        channel(np.zeros((2, 8, 16)), 0.1)
    with pytest.raises(InputError, match="viscosity"):
        cfd.solver("taylor_green", grid=16)(np.zeros((2, 16, 16)), -1.0)
    with pytest.raises(InputError, match="t_end"):
        cfd.solver("taylor_green", grid=16, t_end=0.0)
