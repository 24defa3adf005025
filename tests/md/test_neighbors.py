"""jaxpro's neighbour list (``jaxpro.md._neighbors``) against brute force.

Oracles: the set of pairs within cutoff + skin by an all-pairs NumPy minimum-
image sum; forces equal to minus the gradient of JAX-MD's all-pairs energy and
the virial to its all-pairs sum (float64, 1e-10 relative); overflow of a row
or of a cell is flagged, never silent; a rebuild comes only after half a skin.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.md import _engine as eng
from jaxpro.md._neighbors import Lister


def brute_pairs(positions, box, reach):
    d = positions[:, None, :] - positions[None, :, :]
    d -= box * np.round(d / box)
    close = np.sum(d * d, axis=-1) < reach**2
    np.fill_diagonal(close, False)
    return [set(np.flatnonzero(row)) for row in close]


def jostled(n, scale=0.08, seed=0):
    system = md.lennard_jones_fluid(n, 0.8442, 0.72)
    rng = np.random.default_rng(seed)
    moved = np.mod(system.positions + rng.normal(scale=scale, size=system.positions.shape),
                   system.box)  # fmt: skip
    return system, moved


@pytest.mark.parametrize(("n", "cells"), [(256, 0), (1372, 4)])
def test_lists_hold_exactly_the_pairs_within_reach(n, cells):
    with jax.enable_x64(True):
        system, moved = jostled(n)
        lister = Lister(system.box, 2.5, 0.3, n, 3)
        assert lister.cells == cells
        nbrs = lister.allocate(jnp.asarray(moved))
        assert not bool(nbrs.overflow)
        idx = np.asarray(nbrs.idx)
        want = brute_pairs(moved, system.box, 2.8)
        for i in range(n):
            row = idx[i][idx[i] < n]
            assert len(row) == len(set(row)) and set(row) == want[i]


# truncated and truncated_shifted: the closed-form -u'(r)/r in r^2; switched: autodiff
@pytest.mark.parametrize("form", ["truncated", "truncated_shifted", "switched"])
def test_forces_and_virial_equal_the_all_pairs_gradient_and_sum(form):
    with jax.enable_x64(True):
        system, moved = jostled(1372, seed=1)
        system = md.lennard_jones_fluid(1372, 0.8442, 0.72, form=form)
        positions = jnp.asarray(moved)
        listed = eng.build_engine(system, neighbors=True, skin=0.3, capacity=1.25)
        plain = eng.build_engine(system, neighbors=False, skin=0.3, capacity=1.25)
        nbrs = listed.allocate(positions)
        want = -jax.grad(plain.energy)(positions)
        got = listed.force(positions, neighbor=nbrs)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * float(jnp.max(abs(want))))
        assert float(listed.energy(positions, neighbor=nbrs)) == pytest.approx(
            float(plain.energy(positions)), rel=1e-12
        )
        assert float(listed.virial(positions, neighbor=nbrs)) == pytest.approx(
            float(plain.virial(positions)), rel=1e-10
        )


def test_a_full_row_or_a_full_cell_is_flagged():
    with jax.enable_x64(True):
        system, moved = jostled(1372)
        lister = Lister(system.box, 2.5, 0.3, 1372, 3)
        positions = jnp.asarray(moved)
        nbrs = lister.allocate(positions)
        # squeeze the box's contents towards one corner: rows and cells overfill
        squeezed = positions * 0.7
        after = lister.update(squeezed, nbrs)
        assert bool(after.overflow) and int(after.builds) == 2
        # rows exactly as full as the fullest one pass; one slot fewer overflows
        fullest = max(len(row) for row in brute_pairs(moved, system.box, 2.8))
        exact = lister._fresh(positions, system.box, fullest, nbrs.cell_capacity, nbrs.builds)
        assert not bool(exact.overflow)
        short = lister._fresh(positions, system.box, fullest - 1, nbrs.cell_capacity, nbrs.builds)
        assert bool(short.overflow)


def test_a_rebuild_waits_for_half_a_skin():
    with jax.enable_x64(True):
        system, moved = jostled(500)
        lister = Lister(system.box, 2.5, 0.4, 500, 3)
        nbrs = lister.allocate(jnp.asarray(moved))
        step = np.zeros_like(moved)
        step[7, 0] = 0.19  # under skin / 2 = 0.2: the list stands
        same = lister.update(jnp.asarray(moved + step), nbrs)
        assert int(same.builds) == 1
        step[7, 0] = 0.21
        rebuilt = lister.update(jnp.asarray(np.mod(moved + step, system.box)), nbrs)
        assert int(rebuilt.builds) == 2
        np.testing.assert_allclose(rebuilt.reference, np.mod(moved + step, system.box))
