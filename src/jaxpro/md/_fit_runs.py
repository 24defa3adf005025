"""The compiled runs behind ``fit_potential``: NVT segments, samples and their gradients.

The fitted parameters are passed at call time (a dict of scalars, ``theta``), so
one compiled program serves every iteration. Pair potentials on more than
:data:`NEIGHBOR_MIN` particles run on jaxpro's neighbour list (as ``simulate``
does): the list travels with the integrator state (the *carry* ``(state,
neighbors)``), is rebuilt inside the compiled steps once a particle has moved
half the skin, and enters the differentiated code only as integer indices (its
rebuild decision sees the positions through ``stop_gradient``), so gradients
with respect to the parameters and through the trajectory are those of the
all-pairs energy. A list that overflows (a row or a cell fuller than its
capacity) is re-allocated, sized from the iteration's end positions, and the
iteration is run again from its start: never continued silently. Smaller
systems, and user energies, are evaluated as written (all pairs).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from jaxpro.errors import SimulationError

__all__ = ["NEIGHBOR_MIN", "Model"]

NEIGHBOR_MIN = 300  # simulate's rule: neighbour lists above this many particles
SKIN_OF_CUTOFF = 0.25  # simulate's skin='auto': a quarter of the cutoff
CAPACITY = 1.25  # spare room in rows and cells at allocation (simulate's default)
MAX_REALLOCATIONS = 5


class Model:
    """One system's energy, virial and NVT dynamics as functions of the parameters."""

    def __init__(self, system, names, fixed, kT, dt, sample_every):
        from jaxpro.md._jaxmd import lean

        lean()  # JAX-MD's modules without its package __init__ (4 s of a cold start)
        from jax_md import smap, space

        self.system, self.names, self.fixed = system, names, fixed
        self.kT, self.dt, self.sample_every = kT, dt, sample_every
        self.volume = system.box**system.dim
        self.reallocations = 0
        displacement, self.shift = space.periodic(system.box)
        metric = space.metric(displacement)
        potential = system.potential
        self.lister = None
        if potential is not None and system.n > NEIGHBOR_MIN:
            from jaxpro.md._neighbors import Lister

            skin = SKIN_OF_CUTOFF * potential.cutoff
            self.lister = Lister(system.box, potential.cutoff, skin, system.n, system.dim,
                                 CAPACITY)  # fmt: skip
            self._why = f"{system.n} particles > {NEIGHBOR_MIN}"
            self._pair = potential.pair_fn()
            self._force_over_r = potential.force_over_r()
        elif potential is not None:
            self._energy = smap.pair(potential.pair_fn(), metric)
            self._virial = smap.pair(potential.virial_fn(), metric)
        else:
            user = system.energy
            self._energy = lambda r, **p: user(r, **p)
            self._virial = None
        self._programs: dict[str, Any] = {}

    def describe(self) -> str:
        """How pairs are evaluated, in words (the plan's)."""
        if self.lister is None:
            return "all pairs" if self.system.potential is not None else "the user's energy"
        return (
            f"neighbour list ({self._why}):"
            f" {self.lister.describe()}, capacity x{CAPACITY:g}, carried through the"
            " differentiated steps as indices"
        )

    # -- physics (neighbors: the carry's list, None for all pairs) ----------------
    def _params(self, theta) -> dict:
        return {**theta, **self.fixed}

    def energy(self, positions, theta, neighbors=None):
        if self.lister is None:
            return self._energy(positions, **theta, **self.fixed)
        return self.lister.energy_fn(self._pair, self._params(theta))(positions, neighbors)

    def force(self, positions, theta, neighbors=None):
        import jax

        if self.lister is None:
            return -jax.grad(lambda r: self.energy(r, theta))(positions)
        force = self.lister.force_fn(self._pair, self._params(theta), self._force_over_r)
        return force(positions, neighbors)

    def virial(self, positions, theta, neighbors=None):
        import jax.numpy as jnp

        if self.lister is not None:
            return self.lister.virial_fn(self._pair, self._params(theta))(positions, neighbors)
        if self._virial is None:
            return jnp.nan
        return self._virial(positions, **theta, **self.fixed)

    def observables(self, positions, momenta, theta, neighbors=None):
        """Per-frame potential energy per particle and pressure."""
        import jax.numpy as jnp

        n, dim = self.system.n, self.system.dim
        out = {"potential_energy": self.energy(positions, theta, neighbors) / n}
        kinetic = 0.5 * jnp.sum(momenta * momenta) / self.system.mass
        virial = self.virial(positions, theta, neighbors)
        out["pressure"] = (2 * kinetic + virial) / (dim * self.volume)
        return out

    def simulator(self, theta):
        from jax_md import simulate

        if self.lister is None:
            return simulate.nvt_nose_hoover(
                lambda r, **kw: self.energy(r, theta), self.shift, self.dt, self.kT
            )
        return simulate.nvt_nose_hoover(
            lambda r, neighbor, **kw: self.force(r, theta, neighbor), self.shift, self.dt,
            self.kT,
        )  # fmt: skip

    # -- runs ----------------------------------------------------------------------------
    def initial_state(self, values, seed):
        """The carry ``(integrator state, neighbour list or None)`` at the system's start."""
        import jax
        import jax.numpy as jnp

        init_fn, _ = self.simulator(self._theta(values))
        positions = jnp.asarray(self.system.positions)
        momenta = jnp.asarray(self.system.velocities) * self.system.mass
        neighbors = None if self.lister is None else self.lister.allocate(positions)
        kwargs = {} if neighbors is None else {"neighbor": neighbors}
        state = init_fn(jax.random.PRNGKey(seed), positions, mass=self.system.mass,
                        momenta=momenta, **kwargs)  # fmt: skip
        return state, neighbors

    @staticmethod
    def _theta(values):
        import jax.numpy as jnp

        return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}

    def _stepper(self, theta):
        """``step(carry) -> carry``: one integrator step, then the list kept valid."""
        from jax import lax

        _, apply_fn = self.simulator(theta)

        def step(carry):
            state, neighbors = carry
            if neighbors is None:
                return apply_fn(state), None
            state = apply_fn(state, neighbor=neighbors)
            # the list is a function of where particles are, not of theta: no
            # derivative flows through its rebuild
            return state, self.lister.update(lax.stop_gradient(state.position), neighbors)

        return step

    def _advance(self, carry, theta, steps: int):
        from jax import lax

        state, neighbors = carry
        # the stored force was computed with the previous theta
        state = state.set(force=self.force(state.position, theta, neighbors))
        step = self._stepper(theta)
        return lax.fori_loop(0, steps, lambda _, c: step(c), (state, neighbors))

    def _frames(self, carry, theta, frames: int, scan, reweight: bool):
        import jax
        from jax import lax

        # Each step rematerialised too: a gradient then keeps one state per step of
        # the segment being differentiated, not every step's pair matrices (256 LJ
        # particles, 1,000 steps: 2.2 GB of temporaries without this)
        step = jax.checkpoint(self._stepper(theta))

        def one(c, _):
            c = lax.fori_loop(0, self.sample_every, lambda _, t: step(t), c)
            state, neighbors = c
            position, momentum = state.position, state.momentum
            out = self.observables(position, momentum, theta, neighbors)
            if reweight:
                # each frame's dU/dtheta and dA/dtheta, with the frame's own list
                out["grad_u"] = jax.grad(lambda t: self.energy(position, t, neighbors))(theta)
                out["grad_a"] = jax.jacrev(
                    lambda t: self.observables(position, momentum, t, neighbors)
                )(theta)
            return c, out

        return scan(one, carry, None, length=frames)

    @functools.cache  # noqa: B019 - one Model per fit, a few programs each
    def _program(self, kind: str, relax: int, frames: int, targets: tuple):
        import jax
        import jax.numpy as jnp
        from jax import lax

        from jaxpro.core import checkpointed_scan

        relax_fn = jax.jit(lambda carry, theta: self._advance(carry, theta, relax))
        if kind == "reweighting":

            def sample(carry, theta):
                carry = self._advance(carry, theta, 0)
                return self._frames(carry, theta, frames, lax.scan, True)

            return relax_fn, jax.jit(sample), None

        def loss_of(theta, carry, goal, scale):
            carry = self._advance(carry, theta, 0)
            final, frames_out = self._frames(carry, theta, frames, checkpointed_scan, False)
            means = {k: jnp.mean(frames_out[k]) for k in targets}
            loss = sum(((means[k] - goal[k]) / scale[k]) ** 2 for k in targets)
            return loss, (final, means)

        return relax_fn, jax.jit(jax.value_and_grad(loss_of, has_aux=True)), None

    def equilibrate(self, carry, values, steps, relax, gradient, sample_steps, targets):
        """``steps`` (rounded up to whole runs of ``relax``) at ``values``, before sampling.

        Runs the iteration's own relax program (nothing more to compile); an
        overflowing list is re-allocated and the run redone.

        Returns:
            ``(carry, steps run)``.
        """
        if relax <= 0 or steps <= 0:
            return carry, 0
        theta = self._theta(values)
        frames = sample_steps // self.sample_every
        relax_fn = self._program(gradient, relax, frames, tuple(sorted(targets)))[0]
        done = 0
        while done < steps:
            end = relax_fn(carry, theta)
            if end[1] is not None and bool(end[1].overflow):
                carry = self._reallocate(carry, end)
                continue
            carry, done = end, done + relax
        return carry, done

    def iterate(self, carry, values, relax, sample_steps, gradient, targets, scale):
        """One iteration: relax, sample, and the loss gradient's ingredients.

        A neighbour list that overflowed during the iteration is re-allocated and
        the iteration run again from ``carry``.

        Returns:
            ``(carry, means, dL/dtheta)`` with ``means`` the sampled averages.

        Raises:
            SimulationError: the list overflowed :data:`MAX_REALLOCATIONS` times.
        """
        while True:
            end, means, loss_grad = self._iterate_once(
                carry, values, relax, sample_steps, gradient, targets, scale
            )
            if end[1] is None or not bool(end[1].overflow):
                return end, means, loss_grad
            carry = self._reallocate(carry, end)

    def _reallocate(self, start, end):
        """``start`` with a larger list, sized from ``end``'s positions, placed at ``start``'s."""
        self.reallocations += 1
        if self.reallocations > MAX_REALLOCATIONS:
            raise SimulationError(
                f"the neighbour list overflowed {MAX_REALLOCATIONS} times: the system is far"
                " from uniform (a collapse or an explosion); check dt and the parameters' range"
            )
        state, neighbors = start
        extra = 0 if self.reallocations == 1 else 8 * 2 ** (self.reallocations - 2)
        sized_at = np.asarray(end[0].position)
        if not np.all(np.isfinite(sized_at)):
            # the missing pairs let particles overlap and the run blew up: size the list
            # at the start, with room growing at each attempt
            sized_at = np.asarray(state.position)
            extra += self.reallocations * max(neighbors.capacity // 4, 4)
        bigger = self.lister.allocate(sized_at, extra_capacity=extra)
        return state, self.lister.place(state.position, bigger)

    def _iterate_once(self, carry, values, relax, sample_steps, gradient, targets, scale):
        theta = self._theta(values)
        frames = sample_steps // self.sample_every
        keys = tuple(sorted(targets))
        relax_fn, run, _ = self._program(gradient, relax, frames, keys)
        carry = relax_fn(carry, theta)
        if gradient == "trajectory":
            goal = {k: float(targets[k]) for k in keys}
            (_, (carry, means)), grad = run(theta, carry, goal, {k: scale[k] for k in keys})
            return carry, {k: float(v) for k, v in means.items()}, {
                k: float(v) for k, v in grad.items()}  # fmt: skip
        carry, frames_out = run(carry, theta)
        grad_u, grad_a = frames_out["grad_u"], frames_out["grad_a"]
        beta = 1.0 / self.kT
        means, loss_grad = {}, dict.fromkeys(self.names, 0.0)
        for k in keys:
            a = np.asarray(frames_out[k])
            means[k] = float(a.mean())
            for name in self.names:
                du = np.asarray(grad_u[name])
                da = np.asarray(grad_a[k][name])
                derivative = da.mean() - beta * (np.mean(a * du) - a.mean() * du.mean())
                loss_grad[name] += 2 * (means[k] - targets[k]) / scale[k] ** 2 * derivative
        return carry, means, loss_grad
