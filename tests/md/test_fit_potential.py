"""``fit_potential``: gradients through the simulation, and recovering known parameters.

Oracles: central finite differences of the same deterministic run (the
trajectory gradient must match them; the run is short, so the dynamics'
sensitivity stays small; slow); observables simulated at known parameters
(sigma = epsilon = 1), which the fit must recover within 2% (slow).
"""

import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError
from jaxpro.md._fit_runs import Model


@pytest.mark.slow  # ~25 s, most of it compiling the differentiated run
def test_gradient_through_the_simulation_matches_finite_differences():
    """With the C1 switched form: a truncated-and-shifted potential's force jumps at the
    cutoff, and differentiating a run through those jumps misses their timing (finite
    differences see it: 12% apart here), so only a smooth force gives a trajectory gradient
    to check. The switch's second derivative still jumps, so central differences are
    first-order accurate across those events: agreement to 2e-4 (measured 6e-5)."""
    import jax

    system = md.lennard_jones_fluid(108, 0.8, 1.2, form="switched")
    with jax.enable_x64(True):
        model = Model(system, ("sigma", "epsilon"), {}, 1.2, 0.005, 10)
        state = model.initial_state({"sigma": 1.0, "epsilon": 1.0}, 0)
        keys = ("potential_energy", "pressure")
        _, run, _ = model._program("trajectory", 0, 5, keys)  # 50 steps, checkpointed
        goal = {"potential_energy": -4.0, "pressure": 2.0}
        scale = {"potential_energy": 5.0, "pressure": 3.0}

        def loss(sigma, epsilon):
            theta = model._theta({"sigma": sigma, "epsilon": epsilon})
            (value, _), grad = run(theta, state, goal, scale)
            return float(value), {k: float(v) for k, v in grad.items()}

        _, grad = loss(1.0, 1.0)
        h = 1e-5
        for name in ("sigma", "epsilon"):
            up = loss(1.0 + h * (name == "sigma"), 1.0 + h * (name == "epsilon"))[0]
            down = loss(1.0 - h * (name == "sigma"), 1.0 - h * (name == "epsilon"))[0]
            assert grad[name] == pytest.approx((up - down) / (2 * h), rel=2e-4), name


def test_a_short_fit_reports_its_history_and_plan():
    system = md.lennard_jones_fluid(108, 0.8, 1.2)
    fit = md.fit_potential(system, {"potential_energy": -4.5}, ("epsilon",), iterations=3,
                           sample_steps=200, relax_steps=50)  # fmt: skip
    assert len(fit.history) == 3 and set(fit.values) == {"epsilon"}
    assert "gradient by reweighting" in " ".join(fit.plan.reasons)
    assert "fit_potential: 3 iterations" in fit.summary()
    assert fit.to_dict()["kind"] == "potential_fit"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": {}}, "targets: must map some of"),
        ({"targets": {"density": 1.0}}, "targets: names an unknown observable"),
        ({"parameters": ("width",)}, "parameters: names no parameter of the system"),
        ({"gradient": "adjoint"}, "gradient: must be one of"),
        ({"iterations": 0}, "iterations: must be a positive integer"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    system = md.lennard_jones_fluid(108, 0.8, 1.2)
    arguments = {"targets": {"pressure": 2.0}, **kwargs}
    with pytest.raises(InputError, match=message):
        md.fit_potential(system, **arguments)


@pytest.mark.slow
def test_recovers_sigma_and_epsilon_within_two_percent():
    truth = md.lennard_jones_fluid(108, 0.8, 1.2)
    reference = md.simulate(truth, "nvt", steps=8000, dt=0.005, record_every=20)
    kept = slice(len(reference.times) // 4, None)
    targets = {"potential_energy": float(reference.potential_energy[kept].mean() / 108),
               "pressure": float(reference.pressure[kept].mean())}  # fmt: skip
    fit = md.fit_potential(truth, targets, initial={"sigma": 0.95, "epsilon": 1.1},
                           iterations=30, learning_rate=0.02, sample_steps=3000,
                           relax_steps=500)  # fmt: skip
    assert fit.values["sigma"] == pytest.approx(1.0, rel=0.02)
    assert fit.values["epsilon"] == pytest.approx(1.0, rel=0.02)
    assert np.isfinite(fit.history[-1]["loss"])
