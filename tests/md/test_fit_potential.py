"""``fit_potential``: gradients through the simulation, and recovering known parameters.

Oracles: central finite differences of the same deterministic run (the
trajectory gradient must match them; the run is short, so the dynamics'
sensitivity stays small; slow); observables simulated at known parameters
(sigma = epsilon = 1), which the fit must recover within 2% (slow); the
all-pairs model for the neighbour-list one (same run, same gradients, to
1e-9 relative in float64: only the order of the pair sums differs).
"""

import dataclasses

import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError
from jaxpro.md import _fit_runs
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
    # the lattice melts at the starting parameters first: sample_steps, in runs of 50
    assert "equilibrated 200 steps at the starting parameters" in " ".join(fit.plan.reasons)
    assert fit.plan.settings["equilibration_steps"] == 200
    assert "pairs: all pairs" in fit.plan.reasons[1] and not fit.plan.settings["neighbor_list"]
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
        ({"relax_steps": -1}, "relax_steps: must be a non-negative integer"),
        ({"equilibration_steps": 2.5}, "equilibration_steps: must be a non-negative integer"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    system = md.lennard_jones_fluid(108, 0.8, 1.2)
    arguments = {"targets": {"pressure": 2.0}, **kwargs}
    with pytest.raises(InputError, match=message):
        md.fit_potential(system, **arguments)


# slow: 108 particles (all pairs) ~35 s; 2,048 (neighbour list, beyond the all-pairs
# limit it had) ~2.5 minutes
@pytest.mark.slow
@pytest.mark.parametrize(("n", "reference_steps", "sample_steps", "relax_steps"),
                         [(108, 8000, 3000, 500), (2048, 4000, 1500, 300)])  # fmt: skip
def test_recovers_sigma_and_epsilon_within_two_percent(n, reference_steps, sample_steps,
                                                       relax_steps):  # fmt: skip
    truth = md.lennard_jones_fluid(n, 0.8, 1.2)
    reference = md.simulate(truth, "nvt", steps=reference_steps, dt=0.005, record_every=20)
    kept = slice(len(reference.times) // 4, None)
    targets = {"potential_energy": float(reference.potential_energy[kept].mean() / n),
               "pressure": float(reference.pressure[kept].mean())}  # fmt: skip
    fit = md.fit_potential(truth, targets, initial={"sigma": 0.95, "epsilon": 1.1},
                           iterations=30, learning_rate=0.02, sample_steps=sample_steps,
                           relax_steps=relax_steps)  # fmt: skip
    assert fit.plan.settings["neighbor_list"] == (n > 300)
    if n > 300:
        assert any(f"neighbour list ({n} particles > 300)" in r for r in fit.plan.reasons)
    assert fit.values["sigma"] == pytest.approx(1.0, rel=0.02)
    assert fit.values["epsilon"] == pytest.approx(1.0, rel=0.02)
    assert np.isfinite(fit.history[-1]["loss"])


# the 400-particle iteration compared on the list and on all pairs
LIST_VALUES = {"sigma": 1.02, "epsilon": 0.97}
LIST_TARGETS = {"potential_energy": -4.5, "pressure": 1.0}
LIST_SCALE = {"potential_energy": 5.5, "pressure": 2.0}


def _models(system, monkeypatch, sample_every=5):
    """The same system's model on neighbour lists and on all pairs."""
    lists = Model(system, ("sigma", "epsilon"), {}, 1.2, 0.005, sample_every)
    monkeypatch.setattr(_fit_runs, "NEIGHBOR_MIN", system.n)  # lists only above n: all pairs
    plain = Model(system, ("sigma", "epsilon"), {}, 1.2, 0.005, sample_every)
    assert lists.lister is not None and plain.lister is None
    return lists, plain


def _assert_same_iteration(a, b, rtol=1e-9):
    (carry_a, means_a, grad_a), (carry_b, means_b, grad_b) = a, b
    np.testing.assert_allclose(carry_a[0].position, carry_b[0].position, rtol=0, atol=1e-9)
    for name in means_b:
        assert means_a[name] == pytest.approx(means_b[name], rel=rtol), name
    for name in grad_b:
        assert grad_a[name] == pytest.approx(grad_b[name], rel=rtol), name


def test_neighbour_list_fit_equals_all_pairs_and_survives_an_overflowing_list(monkeypatch):
    """400 particles (above simulate's 300: lists). Started from a list too small for its
    rows (flagged when built), an iteration (relax, sample, reweighting gradient) is run
    again on a re-allocated list, and equals the all-pairs iteration: the truncated list's
    run is never kept, and the list carried through the steps changes nothing else."""
    import jax

    system = md.lennard_jones_fluid(400, 0.8, 1.2)
    values, targets, scale = LIST_VALUES, LIST_TARGETS, LIST_SCALE
    with jax.enable_x64(True):
        lists, plain = _models(system, monkeypatch)
        assert "neighbour list (400 particles > 300)" in lists.describe()
        reference = plain.iterate(plain.initial_state(values, 0), values, 10, 20,
                                  "reweighting", targets, scale)  # fmt: skip
        state, good = lists.initial_state(values, 0)
        small = lists.lister._fresh(state.position, system.box, good.capacity // 2,
                                    good.cell_capacity, good.builds)  # fmt: skip
        assert bool(small.overflow) and small.capacity < good.capacity
        again = lists.iterate((state, small), values, 10, 20, "reweighting", targets, scale)
        assert lists.reallocations == 1 and not bool(again[0][1].overflow)
        _assert_same_iteration(again, reference)


def test_a_list_that_keeps_overflowing_stops_with_a_simulation_error(monkeypatch):
    import jax

    from jaxpro.errors import SimulationError

    system = md.lennard_jones_fluid(400, 0.8, 1.2)
    values = {"sigma": 1.0, "epsilon": 1.0}
    with jax.enable_x64(True):
        lists = Model(system, ("sigma",), {"epsilon": 1.0}, 1.2, 0.005, 5)
        state, good = lists.initial_state(values, 0)
        # every re-allocation comes back flagged: the loop must give up, not spin
        monkeypatch.setattr(lists.lister.__class__, "place",
                            lambda self, positions, like, box=None: dataclasses.replace(
                                like, overflow=np.asarray(True)))  # fmt: skip
        flagged = dataclasses.replace(good, overflow=np.asarray(True))
        monkeypatch.setattr(lists, "_iterate_once",
                            lambda carry, *a: (carry, {}, {}))  # fmt: skip
        with pytest.raises(SimulationError, match="overflowed 5 times"):
            lists.iterate((state, flagged), {"sigma": 1.0}, 10, 20, "reweighting",
                          {"pressure": 1.0}, {"pressure": 2.0})  # fmt: skip


@pytest.mark.slow  # ~20 s: the differentiated programs of both models compile
def test_neighbour_list_trajectory_gradient_equals_all_pairs(monkeypatch):
    import jax

    system = md.lennard_jones_fluid(400, 0.8, 1.2)
    values, targets, scale = LIST_VALUES, LIST_TARGETS, LIST_SCALE
    with jax.enable_x64(True):
        lists, plain = _models(system, monkeypatch)
        _assert_same_iteration(
            lists.iterate(lists.initial_state(values, 0), values, 10, 20, "trajectory",
                          targets, scale),
            plain.iterate(plain.initial_state(values, 0), values, 10, 20, "trajectory",
                          targets, scale),
        )  # fmt: skip


@pytest.mark.slow  # ~15 s: 1,728 particles, a list built from cells
def test_cell_built_list_energy_virial_force_and_parameter_gradient_equal_all_pairs(
    monkeypatch,
):
    import jax

    system = md.lennard_jones_fluid(1728, 0.8, 1.2)  # box 12.9: 4 cells of 3.125 a side
    with jax.enable_x64(True):
        lists, plain = _models(system, monkeypatch)
        assert lists.lister.cells >= 4
        positions = np.asarray(system.positions) + np.random.default_rng(0).normal(
            0.0, 0.05, (system.n, 3))  # fmt: skip
        neighbors = lists.lister.allocate(positions)
        theta = lists._theta({"sigma": 1.03, "epsilon": 0.95})
        for name in ("energy", "virial", "force"):
            np.testing.assert_allclose(getattr(lists, name)(positions, theta, neighbors),
                                       getattr(plain, name)(positions, theta), rtol=1e-10,
                                       atol=1e-10, err_msg=name)  # fmt: skip
        grad_lists = jax.grad(lambda t: lists.energy(positions, t, neighbors))(theta)
        grad_plain = jax.grad(lambda t: plain.energy(positions, t))(theta)
        for name in theta:
            assert float(grad_lists[name]) == pytest.approx(float(grad_plain[name]), rel=1e-10)
