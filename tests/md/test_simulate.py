"""``jaxpro.md.simulate`` against conservation laws and the thermostat's target.

Oracles: conservation of energy (NVE, |dE/E| < 1e-4) and of total momentum
(to rounding in float64); the canonical mean temperature (NVT, within 5%);
the same trajectory with an ample neighbour list (the overflow path must
reproduce it); for a user energy of harmonic springs, the exact oscillation
period 2 pi sqrt(m / k).
"""

import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError, SimulationError, SimulationWarning


@pytest.fixture(scope="module")
def small():
    return md.lennard_jones_fluid(108, 0.8442, 0.72)


@pytest.fixture(scope="module")
def nve(small):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SimulationWarning)
        return md.simulate(small, "nve", steps=2000)


def test_nve_conserves_energy_and_momentum(nve):
    assert nve.ok and nve.energy_drift < 1e-4
    checks = {c.name: c for c in nve.checks}
    assert checks["energy_drift"].passed and checks["momentum"].passed
    assert checks["momentum"].value < 1e-12
    assert len(nve.times) == 201 and nve.times[-1] == pytest.approx(2000 * nve.dt)
    np.testing.assert_allclose(nve.total_energy, nve.potential_energy + nve.kinetic_energy)
    np.testing.assert_allclose(nve.temperature, 2 * nve.kinetic_energy / (3 * 107))
    assert nve.positions.shape[1:] == (108, 3) and len(nve.frame_times) == nve.positions.shape[0]


def test_auto_dt_is_chosen_from_the_potential_and_verified(nve):
    reasons = " ".join(nve.plan.reasons)
    assert "pair curvature u''=57.15 at r=1.122" in reasons
    assert "verified: 500 NVE steps" in reasons
    assert nve.dt in (0.005, 0.0025)
    assert nve.plan.settings["neighbor_list"] is False  # 108 particles: all pairs


def test_nvt_reaches_its_temperature(small):
    run = md.simulate(small, "nvt", steps=4000, kT=1.0, dt=0.005)
    checks = {c.name: c for c in run.checks}
    assert checks["temperature"].passed, checks["temperature"].message
    assert abs(run.temperature[len(run.temperature) // 2 :].mean() - 1.0) < 0.05
    assert "Nose-Hoover chain" in run.plan.method


def test_an_overflowing_neighbour_list_is_reallocated_and_the_chunk_rerun():
    """From a lattice, a list with no spare room overflows; the run equals one with room."""
    system = md.lennard_jones_fluid(256, 0.8442, 0.72)
    tight = md.simulate(system, "nve", steps=600, dt=0.005, record_every=50,
                        capacity_multiplier=1.0, neighbor_list=True)  # fmt: skip
    ample = md.simulate(system, "nve", steps=600, dt=0.005, record_every=50,
                        capacity_multiplier=2.0, neighbor_list=True)  # fmt: skip
    assert tight.plan.settings["neighbor_list"] is True
    assert tight.plan.settings["reallocations"] >= 1
    assert ample.plan.settings["reallocations"] == 0
    np.testing.assert_allclose(tight.final_positions, ample.final_positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tight.total_energy, ample.total_energy, rtol=1e-11)


def test_user_energy_harmonic_springs():
    """Springs to fixed sites: the period is exact, the energy conserved."""
    sites = md.lennard_jones_fluid(108, 0.5, 1.0).positions + 2.0  # inside a box of 10
    k = 4.0

    def springs(r, k):
        return 0.5 * k * jnp.sum((r - jnp.asarray(sites)) ** 2)

    system = md.custom_system(springs, sites + 0.01, 10.0, 0.5, params={"k": k})
    run = md.simulate(system, "nve", steps=1000)
    period = 2 * math.pi / math.sqrt(k)
    reasons = " ".join(run.plan.reasons)
    assert "largest Hessian eigenvalue 4," in reasons  # k / m: the exact stiffness
    assert f"oscillation period {period:.4g}; dt = period/100 -> 0.03" in reasons
    # Verlet's energy error on an oscillator is ~ (omega dt)^2 / 8: the trial halves dt
    assert run.dt in (0.03, 0.015, 0.0075, 0.00375)
    assert run.energy_drift < 1e-4
    assert np.all(np.isnan(run.pressure))  # no pair virial for a user energy
    # springs to fixed sites are not translation invariant: no momentum check
    assert [c.name for c in run.checks] == ["energy_drift"]
    assert "not translation invariant" in " ".join(run.plan.reasons)


def test_float32_runs_with_its_own_momentum_limit(small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulationWarning)  # float32 may drift past 1e-4
        run = md.simulate(small, "nve", steps=500, dt=0.005, precision="float32")
    assert run.final_positions.dtype == np.float32
    checks = {c.name: c for c in run.checks}
    assert checks["momentum"].limit == 1e-4 and checks["momentum"].passed


def test_a_failed_check_warns_with_advice(small):
    truncated = md.lennard_jones_fluid(108, 0.8442, 0.72, shift=False)
    with pytest.warns(SimulationWarning, match="truncated_shifted or switched"):
        run = md.simulate(truncated, "nve", steps=2000, dt=0.005)
    assert not run.ok


def test_an_exploding_run_stops_with_the_step(small):
    with pytest.raises(SimulationError, match="by step") as info:
        md.simulate(small, "nve", steps=2000, dt=0.08)
    assert 0 < info.value.step <= 2000


def test_result_summary_json_and_save(nve, tmp_path):
    text = nve.summary()
    assert "NVE simulation: 108 particles" in text and "[pass] NVE energy drift" in text
    payload = json.loads(nve.to_json())
    assert payload["kind"] == "trajectory" and payload["ok"] is True
    assert len(payload["total_energy"]) == 201
    assert payload["plan"]["settings"]["dt"] == nve.dt
    out = nve.save(tmp_path / "run")
    assert (out / "result.json").exists() and (out / "trajectory.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ensemble": "nph"}, r"ensemble: must be one of \('nve', 'nvt', 'npt'\)"),
        ({"steps": 0}, "steps: must be a positive integer"),
        ({"dt": -0.1}, "dt: must be 'auto' or a positive number"),
        ({"kT": 0.0}, "kT: must be a positive temperature"),
        ({"steps": 100, "record_every": 7}, r"record_every: must divide steps \(100\)"),
        ({"precision": "float16"}, "precision: must be 'float64' or 'float32'"),
    ],
)
def test_bad_input_names_the_argument(small, kwargs, message):
    with pytest.raises(InputError, match=message):
        md.simulate(small, **kwargs)


def test_overlapping_particles_are_relaxed_by_fire_first():
    sites = md.lennard_jones_fluid(108, 0.8442, 0.72)
    overlapping = sites.positions.copy()
    overlapping[1] = overlapping[0] + 0.3  # LJ force ~ 1e7
    system = md.System(**{**sites.__dict__, "positions": overlapping})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulationWarning)  # 200 steps: T has not settled
        run = md.simulate(system, "nvt", steps=200, dt=0.002)
    note = next(r for r in run.plan.reasons if "FIRE" in r)
    assert "overlapping start (force" in note and "brought the largest force to" in note
    assert np.all(np.isfinite(run.total_energy))


def test_not_a_system_and_coincident_particles_are_refused():
    with pytest.raises(InputError, match=r"system: must be a jaxpro\.md System"):
        md.simulate("lj")
    sites = md.lennard_jones_fluid(108, 0.8442, 0.72)
    same = sites.positions.copy()
    same[1] = same[0]
    system = md.System(**{**sites.__dict__, "positions": same})
    with pytest.raises(InputError, match="system: has particles at the same position"):
        md.simulate(system, steps=10, dt=0.001)


def test_a_second_run_of_a_cell_listed_system_reuses_its_compiled_program():
    # 864 particles: box 10.1 > 3 (cutoff + skin), so JAX-MD builds a cell list,
    # whose fresh closures once made the second run's list mismatch the program
    system = md.lennard_jones_fluid(864, 0.8442, 0.72)
    first = md.simulate(system, "nve", steps=20, dt=0.002, record_every=10)
    second = md.simulate(system, "nve", steps=20, dt=0.002, record_every=10)
    assert second.timings.compile == 0.0
    np.testing.assert_array_equal(first.final_positions, second.final_positions)


def test_float32_and_float64_runs_of_one_system_each_get_their_program(small):
    single = md.simulate(small, "nve", steps=20, dt=0.002, record_every=10, precision="float32")
    double = md.simulate(small, "nve", steps=20, dt=0.002, record_every=10)
    assert single.final_positions.dtype == np.float32
    assert double.final_positions.dtype == np.float64
    np.testing.assert_allclose(single.final_positions, double.final_positions, atol=1e-4)
