"""``simulate(..., "npt")``: the barostat against the NVT equation of state, restarts, input.

Oracle: closure between two ensembles. An NVT run at density rho0 measures the
virial pressure P0; an NPT run at pressure P0 started elsewhere (rho = 0.75)
must settle at rho0 (within 1.5%: the NVT pressure's standard error moves the
NPT density by about 0.2%, the NPT density's own by about 0.4%), with the
mean pressure within 3 standard errors of its target and the temperature
within 5%. With long-range corrections the barostat must feel the tail
pressure too, or the density comes out about 5% low. A resumed NPT run
repeats the uninterrupted one bit for bit (positions, velocities, box).
"""

import warnings

import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError, SimulationError, SimulationWarning
from jaxpro.md._reference import block_mean


@pytest.mark.parametrize("tails", [pytest.param(False, marks=pytest.mark.slow), True])
def test_npt_settles_at_the_density_whose_nvt_pressure_it_targets(tails):
    rho0, kT = 0.80, 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("error", SimulationWarning)
        fixed = md.simulate(md.lennard_jones_fluid(256, rho0, kT, long_range_correction=tails,
                                                   shift=not tails), "nvt", steps=2000,
                            dt=0.005, record_every=10)  # fmt: skip
        p0, p0_error = block_mean(fixed.pressure[100:])
        start = md.lennard_jones_fluid(256, 0.75, kT, long_range_correction=tails,
                                       shift=not tails)  # fmt: skip
        run = md.simulate(start, "npt", steps=4000, dt=0.005, pressure=p0, record_every=10)
    density = run.extra["density"]
    assert density[0] == pytest.approx(0.75)
    mean, error = block_mean(density[200:])
    assert mean == pytest.approx(rho0, rel=0.015), (mean, error, p0, p0_error)
    checks = {c.name: c for c in run.checks}
    assert set(checks) == {"momentum", "temperature", "pressure"} and run.ok
    assert run.volume[-1] == pytest.approx(run.box**3)
    assert run.plan.settings["pressure"] == p0 and run.plan.settings["neighbor_list"]
    # frames come back in real units, inside their own box
    assert np.all(run.positions[-1] >= -1e-9) and np.all(run.positions[-1] <= run.frame_box[-1])
    peak, _ = run.rdf().first_peak()
    assert 1.0 < peak < 1.2


def test_npt_resumes_bit_for_bit(tmp_path):
    system = md.lennard_jones_fluid(256, 0.78, 0.9)

    def run(steps, folder=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SimulationWarning)
            return md.simulate(system, "npt", steps=steps, dt=0.005, pressure=1.5,
                               record_every=20, checkpoint_dir=folder,
                               checkpoint_every=200 if folder else None)  # fmt: skip

    run(400, tmp_path / "a")  # a run that stopped at step 400
    resumed = run(800, tmp_path / "a")
    assert any("resumed from step 400" in r for r in resumed.plan.reasons)
    # uninterrupted, chunked alike (lists re-allocated at the same chunk ends)
    straight = run(800, tmp_path / "b")
    np.testing.assert_array_equal(resumed.final_positions, straight.final_positions)
    np.testing.assert_array_equal(resumed.final_velocities, straight.final_velocities)
    np.testing.assert_array_equal(resumed.volume, straight.volume)
    np.testing.assert_array_equal(resumed.pressure, straight.pressure)
    np.testing.assert_array_equal(resumed.total_energy, straight.total_energy)


def test_a_box_squeezed_under_twice_the_cutoff_stops_the_run():
    # a dilute gas at a huge pressure collapses: its box falls under 2 r_c = 5
    system = md.lennard_jones_fluid(108, 0.4, 1.0)
    with pytest.raises(SimulationError, match="under twice the cutoff"):
        md.simulate(system, "npt", steps=4000, dt=0.002, pressure=200.0, barostat_tau=0.2,
                    record_every=20)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ensemble": "npt"}, "pressure: is needed for ensemble='npt'"),
        ({"ensemble": "npt", "pressure": float("nan")}, "pressure: must be a finite number"),
        ({"ensemble": "npt", "pressure": "1"}, "pressure: must be a finite number"),
        ({"ensemble": "nvt", "pressure": 1.0}, "pressure: is only for ensemble='npt'"),
    ],
)
def test_bad_npt_input_names_the_argument(kwargs, message):
    system = md.lennard_jones_fluid(108, 0.8, 1.0)
    with pytest.raises(InputError, match=message):
        md.simulate(system, steps=10, **kwargs)


def test_npt_needs_a_pair_potential():
    def springs(positions, k):
        return 0.5 * k * (positions**2).sum()

    base = md.lennard_jones_fluid(108, 0.8, 1.0)
    system = md.custom_system(springs, base.positions, box=base.box, temperature=1.0,
                              params={"k": 1.0})  # fmt: skip
    with pytest.raises(InputError, match="system: needs a pair potential"):
        md.simulate(system, "npt", steps=10, pressure=1.0)
