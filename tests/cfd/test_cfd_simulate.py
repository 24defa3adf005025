"""jaxpro.cfd.simulate: its decisions (method, dt, CFL control), its result object and
its refusals of bad input (each names the argument and quotes what it got)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import jaxpro.cfd as cfd
from jaxpro.errors import InputError, SimulationError, SimulationWarning


def _centres(n: int, length: float = 2 * np.pi):
    x = (np.arange(n) + 0.5) * length / n
    return np.meshgrid(x, x, indexing="ij")


def _taylor_green(n: int) -> np.ndarray:
    x, y = _centres(n)
    return np.stack([np.sin(x) * np.cos(y), -np.cos(x) * np.sin(y)])


def test_result_reports_records_checks_and_serialises(tmp_path):
    result = cfd.simulate("taylor_green", grid=16, reynolds=20, t_end=0.5, record_every=0.1)
    assert result.flow == "taylor_green" and result.method == "spectral"
    assert result.viscosity == pytest.approx(0.05) and result.reynolds == pytest.approx(20)
    np.testing.assert_allclose(result.times, [0, 0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-12)
    for series in (result.kinetic_energy, result.enstrophy, result.divergence, result.courant):
        assert series.shape == result.times.shape
    assert result.velocity.shape == (2, 16, 16) and result.vorticity.shape == (16, 16)
    assert {c.name for c in result.checks} == {"divergence", "cfl", "analytic"}
    assert result.ok
    # dt='auto' on this flow: the CFL condition at Courant 0.5 (max|u| = 1, dx = 2 pi/16)
    assert result.dt <= 0.5 * (2 * np.pi / 16) / 2 + 1e-12
    assert any("CFL" in reason for reason in result.plan.reasons)
    text = result.summary()
    assert "taylor_green on 16 x 16 (spectral)" in text and "[pass]" in text
    payload = json.loads(result.to_json())
    assert payload["kind"] == "flow" and payload["plan"]["method"] == "spectral"
    assert len(payload["kinetic_energy"]) == 6
    out = result.save(tmp_path / "run")
    assert (out / "result.json").exists() and (out / "flow.png").exists()
    assert result.timings.compile > 0 and result.timings.total >= result.timings.run


def test_energy_spectrum_sums_to_the_kinetic_energy():
    result = cfd.simulate("decaying_turbulence", grid=32, t_end=0.2, record_every=0.2)
    k, energy = result.energy_spectrum()
    assert k[0] == 1
    # Parseval: the shells hold all the energy of the (mean-free) field
    assert energy.sum() == pytest.approx(result.kinetic_energy[-1], rel=1e-10)
    # the start field's spectrum peaks near k = 4
    assert 2 <= k[np.argmax(energy)] <= 6
    with pytest.raises(InputError, match="periodic"):
        cfd.simulate("channel", grid=(8, 8), reynolds=10, t_end=0.1).energy_spectrum()
    with pytest.raises(InputError, match="walled"):
        result.centerline_u([0.5])


def test_a_user_field_with_divergence_is_projected_and_the_plan_says_so():
    field = _taylor_green(16)
    x, _ = _centres(16)
    field[0] += 0.1 * np.sin(x)  # a gradient: div = 0.1 cos x
    with pytest.warns(SimulationWarning, match="projected"):
        result = cfd.simulate(field, viscosity=0.05, t_end=0.1)
    assert result.flow == "user" and result.method == "spectral"
    assert any("projected" in reason for reason in result.plan.reasons)
    # what is left is the Taylor-Green vortex, decaying exactly
    exact = _taylor_green(16) * np.exp(-2 * 0.05 * 0.1)
    np.testing.assert_allclose(result.velocity, exact, atol=1e-8)


def test_a_user_field_with_a_mean_flow_runs_on_finite_volumes():
    field = _taylor_green(16)
    field[0] += 0.5  # a uniform stream: Galilean-invariant, carried unchanged
    result = cfd.simulate(field, viscosity=0.05, t_end=0.2)
    assert result.method == "finite_volume"
    assert any("mean flow" in reason for reason in result.plan.reasons)
    assert result.velocity[0].mean() == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(InputError, match="mean flow"):
        cfd.simulate(field, viscosity=0.05, t_end=0.2, method="spectral")


def test_auto_dt_halves_when_the_forced_flow_speeds_up():
    # Kolmogorov forcing accelerates the flow from top speed 1 to about 2.5 by t = 2
    result = cfd.simulate("kolmogorov", grid=32, t_end=3.0, record_every=0.25)
    assert any("halved" in reason for reason in result.plan.reasons)
    assert result.courant.max() <= 1.0
    assert result.ok


def test_a_fixed_dt_that_breaks_cfl_stops_with_the_last_good_record():
    # Courant 0.6 at the start; the forced flow speeds up past 1
    with pytest.raises(SimulationError, match="Courant number") as caught:
        cfd.simulate("kolmogorov", grid=32, t_end=3.0, dt=0.06, record_every=0.24)
    partial = caught.value.partial
    assert partial is not None and np.all(np.isfinite(partial.velocity))
    assert partial.courant.max() <= 1.0
    assert partial.times[-1] < 3.0


def test_float32_runs_the_same_flow():
    result = cfd.simulate("taylor_green", grid=32, viscosity=0.05, t_end=0.5, precision="float32")
    assert result.ok
    assert "precision float32" in result.plan.reasons
    # the random start is mean-free in float32 too: still the spectral method
    turbulence = cfd.simulate("decaying_turbulence", grid=32, t_end=0.1, precision="float32")
    assert turbulence.method == "spectral"


@pytest.mark.parametrize(
    ("kwargs", "argument", "quoted"),
    [
        ({"flow": "karman"}, "flow", "karman"),
        ({"flow": np.zeros((3, 16, 16))}, "flow", "array"),
        ({"flow": np.full((2, 16, 16), np.nan)}, "flow", "NaN"),
        ({"grid": (64,)}, "grid", "(64,)"),
        ({"grid": 4}, "grid", "too coarse"),
        ({"flow": "decaying_turbulence", "grid": 16}, "grid", "at least 32"),
        ({"viscosity": 0.0}, "viscosity", "0.0"),
        ({"viscosity": -1e-3}, "viscosity", "-0.001"),
        ({"viscosity": float("nan")}, "viscosity", "nan"),
        ({"reynolds": "high"}, "reynolds", "high"),
        ({"viscosity": 0.01, "reynolds": 50}, "reynolds", "Re = 100"),
        ({"method": "lbm"}, "method", "lbm"),
        ({"flow": "lid_driven_cavity", "method": "spectral"}, "method", "walls"),
        ({"dt": 5.0}, "dt", "CFL"),
        ({"dt": "small"}, "dt", "small"),
        ({"t_end": -1.0}, "t_end", "-1.0"),
        ({"precision": "float16"}, "precision", "float16"),
        ({"domain": (1.0, 1.0)}, "domain", "named flow"),
        ({"checkpoint_dir": 3}, "checkpoint_dir", "3"),
        ({"checkpoint_every": 0}, "checkpoint_every", "0"),
        ({"frames": -1}, "frames", "-1"),
    ],
)
def test_bad_input_names_the_argument(kwargs, argument, quoted):
    kwargs = {"grid": 16, "t_end": 0.1, **kwargs}
    with pytest.raises(InputError, match=argument) as caught:
        cfd.simulate(**kwargs)
    assert caught.value.argument == argument
    assert quoted in str(caught.value)


def test_a_fixed_dt_past_the_viscous_limit_is_refused():
    # explicit diffusion on 64^2 at nu = 0.5: 0.25 h^2 / nu = 4.8e-3
    with pytest.raises(InputError, match="viscous limit"):
        cfd.simulate("taylor_green", grid=64, viscosity=0.5, dt=0.01, method="finite_volume",
                     t_end=0.1)  # fmt: skip


def test_snapshots_make_a_gif_and_missing_ones_are_named(tmp_path):
    result = cfd.simulate("taylor_green", grid=16, viscosity=0.05, t_end=1.0, record_every=0.1,
                          frames=5)  # fmt: skip
    assert result.frames.shape == (6, 16, 16)  # t = 0 and every other record
    np.testing.assert_allclose(result.frame_times, [0, 0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-12)
    np.testing.assert_array_equal(result.frames[-1], result.vorticity)
    out = result.animate(tmp_path / "vorticity.gif", fps=5)
    assert out.read_bytes()[:6] == b"GIF89a"
    with pytest.raises(InputError, match=r"path: must end in \.gif or \.mp4"):
        result.animate(tmp_path / "vorticity.avi")
    bare = cfd.simulate("taylor_green", grid=16, viscosity=0.05, t_end=0.1)
    assert bare.frames is None
    with pytest.raises(InputError, match="frames"):
        bare.animate(tmp_path / "none.gif")


def test_a_grid_too_coarse_for_the_reynolds_number_is_flagged():
    # 16^2 at Re = 1000: cell Reynolds number 62 (32^2 measured 8% off Ghia's centrelines)
    with pytest.warns(SimulationWarning, match="under-resolves"):
        result = cfd.simulate("lid_driven_cavity", grid=16, reynolds=1000, t_end=0.5)
    check = next(c for c in result.checks if c.name == "resolution")
    assert not check.passed and check.value == pytest.approx(62.5)
    assert "at least 63 cells" in check.message
    assert not result.ok
