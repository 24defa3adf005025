"""RDF and MSD against exact cases: an ideal gas, an FCC crystal, free flight, a known liquid.

Oracles: g(r) = 1 for uniform random points; 12 nearest neighbours at a/sqrt(2)
in FCC; MSD = <v^2> t^2 for particles in free flight (a zero user energy);
the Lennard-Jones liquid near its triple point (rho = 0.8442, T = 0.72) has
its first g(r) peak at r = 1.09 +- 0.03 with height 2.9 +- 0.4 and a
diffusion coefficient of about 0.03 (Verlet's and later tables).
"""

import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.md._observables import mean_squared_displacement, radial_distribution


def test_ideal_gas_has_g_equal_to_one():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 10.0, size=(20, 1000, 3))
    rdf = radial_distribution(frames, 10.0, bins=20, r_max=5.0)
    assert np.all(np.abs(rdf.g[2:] - 1.0) < 0.05), rdf.g  # small shells are noisy


def test_fcc_crystal_has_twelve_nearest_neighbours():
    system = md.lennard_jones_fluid(500, 1.0, 1.0)
    rdf = radial_distribution(system.positions[None], system.box, bins=400)
    a = system.box / 5
    peak, _ = rdf.first_peak()
    assert peak == pytest.approx(a / np.sqrt(2), abs=rdf.r[1] - rdf.r[0])
    assert rdf.coordination(0.5 * (a / np.sqrt(2) + a)) == pytest.approx(12.0, abs=1e-9)


def test_free_flight_msd_is_ballistic_and_unwraps_the_box():
    rng = np.random.default_rng(1)
    box, v = 5.0, rng.normal(size=(200, 3))
    times = np.arange(40) * 0.1
    paths = rng.uniform(0, box, size=(200, 3)) + times[:, None, None] * v  # crosses the box
    msd = mean_squared_displacement(np.mod(paths, box), times, box)
    np.testing.assert_allclose(msd.msd, np.mean(np.sum(v * v, axis=1)) * msd.times**2, rtol=1e-10)
    assert msd.reliable


def test_lennard_jones_liquid_structure_and_diffusion():
    system = md.lennard_jones_fluid(256, 0.8442, 0.72)
    run = md.simulate(system, "nvt", steps=4000, dt=0.005, record_every=20, frames=200)
    peak, height = run.rdf().first_peak()
    assert peak == pytest.approx(1.09, abs=0.04)
    assert height == pytest.approx(2.9, abs=0.4)
    msd = run.msd()
    assert msd.reliable and 0.015 < msd.diffusion < 0.05, msd.diffusion
    figure = run.rdf().plot()
    assert figure.axes[0].get_xlabel() == "r"
