"""Systems and pair potentials against closed forms and a brute-force NumPy sum.

Oracles: the Lennard-Jones, Morse and soft-sphere formulas written out in
NumPy; the minimum-image sum over all pairs for the system energy; the volume
derivative of the energy (central differences) for the virial pressure; the
FCC lattice's nearest-neighbour distance ``a / sqrt(2)``.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError
from jaxpro.md import _engine as eng

# JAX-MD 0.2.29's cell list under float64 (simulate itself filters this)
pytestmark = pytest.mark.filterwarnings("ignore:scatter inputs have incompatible types")


def lj(r, sigma=1.0, epsilon=1.0):
    return 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)


def brute_energy(system, pair):
    d = system.positions[:, None] - system.positions[None]
    d -= system.box * np.round(d / system.box)
    r = np.linalg.norm(d, axis=-1)[np.triu_indices(system.n, 1)]
    return float(np.sum(pair(r)))


def test_fcc_start_with_exact_temperature_and_zero_momentum():
    system = md.lennard_jones_fluid(108, 0.8442, 0.72)
    assert system.box == pytest.approx((108 / 0.8442) ** (1 / 3), rel=1e-14)
    assert np.all((system.positions >= 0) & (system.positions < system.box))
    d = system.positions[:, None] - system.positions[None]
    d -= system.box * np.round(d / system.box)
    r = np.linalg.norm(d, axis=-1) + np.eye(108) * 99
    assert r.min() == pytest.approx(system.box / 3 / math.sqrt(2), rel=1e-12)  # FCC, a = box/3
    np.testing.assert_allclose(system.velocities.sum(axis=0), 0.0, atol=1e-12)
    temperature = np.sum(system.velocities**2) / (3 * (108 - 1))
    assert temperature == pytest.approx(0.72, rel=1e-12)


def test_simple_cubic_for_other_counts_and_two_dimensions():
    system = md.lennard_jones_fluid(100, 0.5, 1.0, dim=2, cutoff=2.5)
    assert system.positions.shape == (100, 2) and system.dim == 2
    assert len(np.unique(np.round(system.positions, 9), axis=0)) == 100


def test_potential_forms_match_their_definitions():
    r = np.array([0.95, 1.12, 1.7, 2.2, 2.45, 2.6])
    truncated = md.lennard_jones_fluid(500, 0.8, 1.0, shift=False).potential.pair_fn()
    shifted = md.lennard_jones_fluid(500, 0.8, 1.0).potential.pair_fn()
    switched = md.lennard_jones_fluid(500, 0.8, 1.0, form="switched", onset=2.0).potential
    p = {"sigma": 1.0, "epsilon": 1.0}
    np.testing.assert_allclose(truncated(jnp.asarray(r), **p), np.where(r < 2.5, lj(r), 0.0),
                               rtol=1e-13)  # fmt: skip
    np.testing.assert_allclose(shifted(jnp.asarray(r), **p),
                               np.where(r < 2.5, lj(r) - lj(2.5), 0.0), rtol=1e-13, atol=1e-16)  # fmt: skip
    s = switched.pair_fn()(jnp.asarray(r), **p)
    rc2, ro2, r2 = 2.5**2, 2.0**2, r**2
    switch = np.where(r < 2.0, 1.0, np.where(r < 2.5, (rc2 - r2) ** 2 * (rc2 + 2 * r2 - 3 * ro2)
                                             / (rc2 - ro2) ** 3, 0.0))  # fmt: skip
    np.testing.assert_allclose(s, lj(r) * switch, rtol=1e-13)
    # the switch is C1: value and slope vanish at the cutoff
    slope = jax.grad(lambda x: switched.pair_fn()(x, **p))(2.5 - 1e-7)
    assert abs(float(slope)) < 1e-5


def test_pair_functions_are_safe_at_zero_distance():
    for system in (md.lennard_jones_fluid(500, 0.8, 1.0), md.morse_fluid(500, 0.8, 1.0),
                   md.soft_sphere_system(500, 1.2, 0.1)):  # fmt: skip
        u = system.potential.pair_fn()
        p = system.potential.params
        assert float(u(jnp.asarray(0.0), **p)) == 0.0
        assert float(jax.grad(lambda x, u=u, p=p: u(x, **p))(0.0)) == 0.0


def test_morse_and_soft_sphere_shapes():
    morse = md.morse_fluid(500, 0.8, 1.0, alpha=4.0, r0=1.1, epsilon=2.0, shift=False)
    u = morse.potential.pair_fn()
    assert float(u(jnp.asarray(1.1), **morse.potential.params)) == pytest.approx(-2.0, rel=1e-12)
    soft = md.soft_sphere_system(500, 1.2, 0.1, sigma=1.0, epsilon=3.0, alpha=2.0)
    v = soft.potential.pair_fn()
    assert float(v(jnp.asarray(0.5), **soft.potential.params)) == pytest.approx(3.0 / 2 * 0.25)
    assert float(v(jnp.asarray(1.01), **soft.potential.params)) == 0.0


@pytest.mark.parametrize("form", ["truncated", "truncated_shifted", "switched"])
def test_system_energy_equals_the_minimum_image_sum(form):
    with jax.enable_x64(True):
        system = md.lennard_jones_fluid(500, 0.8442, 0.72, form=form)
        rng = np.random.default_rng(1)
        moved = np.mod(system.positions + rng.normal(scale=0.05, size=system.positions.shape),
                       system.box)  # fmt: skip
        system = dataclasses.replace(system, positions=moved)
        u = system.potential.pair_fn()
        want = brute_energy(system, lambda r: np.asarray(u(jnp.asarray(r), sigma=1.0, epsilon=1.0)))
        for lists in (False, True):
            engine = eng.build_engine(system, neighbors=lists, skin=0.3, capacity=1.5)
            positions = jnp.asarray(moved)
            kwargs = {"neighbor": engine.allocate(positions)} if lists else {}
            assert float(engine.energy(positions, **kwargs)) == pytest.approx(want, rel=1e-12)


def test_virial_pressure_equals_the_volume_derivative_of_the_energy():
    """W / (d V) = -dU/dV with the particles scaled with the box."""
    with jax.enable_x64(True):
        system = md.lennard_jones_fluid(256, 0.7, 1.0, form="switched")
        rng = np.random.default_rng(2)
        moved = np.mod(system.positions + rng.normal(scale=0.05, size=system.positions.shape),
                       system.box)  # fmt: skip

        def energy_at(scale):
            scaled = dataclasses.replace(system, positions=moved * scale, box=system.box * scale)
            engine = eng.build_engine(scaled, neighbors=False, skin=0.3, capacity=1.5)
            return engine, float(engine.energy(jnp.asarray(moved * scale)))

        engine, _ = energy_at(1.0)
        virial = float(engine.virial(jnp.asarray(moved)))
        h = 1e-5
        volume = system.box**3
        dU_dV = (energy_at(1 + h)[1] - energy_at(1 - h)[1]) / (
            volume * ((1 + h) ** 3 - (1 - h) ** 3)
        )
        assert virial / (3 * volume) == pytest.approx(-dU_dV, rel=1e-7)


def test_long_range_corrections_match_the_closed_form():
    from jaxpro.md._potentials import tail_energy_per_particle, tail_pressure

    potential = md.lennard_jones_fluid(500, 0.8, 1.0, cutoff=3.0, shift=False).potential
    x = (1 / 3.0) ** 3
    assert tail_energy_per_particle(potential, 0.8, 3) == pytest.approx(
        8 / 3 * math.pi * 0.8 * (x**3 / 3 - x), rel=1e-14)  # fmt: skip
    assert tail_pressure(potential, 0.8, 3) == pytest.approx(
        16 / 3 * math.pi * 0.64 * (2 * x**3 / 3 - x), rel=1e-14)  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: md.lennard_jones_fluid(500, 0.0, 1.0), "density: must be positive"),
        (lambda: md.lennard_jones_fluid(500, 0.8, -1.0), "temperature: must be positive"),
        (lambda: md.lennard_jones_fluid(32, 0.8442, 1.0), "smaller than twice the cutoff"),
        (lambda: md.lennard_jones_fluid(500, 0.8, 1.0, form="smooth"), "form: must be one of"),
        (lambda: md.lennard_jones_fluid(500, 0.8, 1.0, dim=4), "dim: must be 2 or 3"),
        (lambda: md.lennard_jones_fluid(1, 0.8, 1.0), "n: must be an integer of at least 2"),
        (lambda: md.lennard_jones_fluid(500, 0.8, 1.0, form="switched", onset=3.0),
         "onset: must be below the cutoff"),
        (lambda: md.custom_system(3, np.zeros((4, 3)), 5.0, 1.0), "energy: must be a callable"),
        (lambda: md.custom_system(lambda r: 0.0, np.zeros(4), 5.0, 1.0),
         "positions: must have shape"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(InputError, match=message):
        call()
