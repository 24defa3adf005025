"""The compiled runs behind ``fit_potential``: NVT segments, samples and their gradients.

Energies are evaluated over all pairs (``jax_md.smap.pair``) with the fitted
parameters passed at call time, so one compiled program serves every
iteration. The parameters enter as a dict of scalars (``theta``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from jaxpro.errors import InputError

__all__ = ["Model"]

MAX_PARTICLES = 2000  # all pairs: beyond this a neighbour list would be needed


class Model:
    """One system's energy, virial and NVT dynamics as functions of the parameters."""

    def __init__(self, system, names, fixed, kT, dt, sample_every):
        from jaxpro.md._jaxmd import lean

        lean()  # JAX-MD's modules without its package __init__ (4 s of a cold start)
        from jax_md import smap, space

        if system.n > MAX_PARTICLES:
            raise InputError(
                f"has {system.n} particles; fit_potential evaluates all pairs and takes at most"
                f" {MAX_PARTICLES} (fit a smaller box: the parameters do not depend on its size)",
                argument="system",
            )
        self.system, self.names, self.fixed = system, names, fixed
        self.kT, self.dt, self.sample_every = kT, dt, sample_every
        self.volume = system.box**system.dim
        displacement, self.shift = space.periodic(system.box)
        metric = space.metric(displacement)
        if system.potential is not None:
            self._energy = smap.pair(system.potential.pair_fn(), metric)
            self._virial = smap.pair(system.potential.virial_fn(), metric)
        else:
            user = system.energy
            self._energy = lambda r, **p: user(r, **p)
            self._virial = None
        self._programs: dict[str, Any] = {}

    # -- physics -----------------------------------------------------------------
    def energy(self, positions, theta):
        return self._energy(positions, **theta, **self.fixed)

    def observables(self, positions, momenta, theta):
        """Per-frame potential energy per particle and pressure."""
        import jax.numpy as jnp

        n, dim = self.system.n, self.system.dim
        out = {"potential_energy": self.energy(positions, theta) / n}
        kinetic = 0.5 * jnp.sum(momenta * momenta) / self.system.mass
        virial = (
            self._virial(positions, **theta, **self.fixed) if self._virial is not None
            else jnp.nan
        )  # fmt: skip
        out["pressure"] = (2 * kinetic + virial) / (dim * self.volume)
        return out

    def simulator(self, theta):
        from jax_md import simulate

        return simulate.nvt_nose_hoover(
            lambda r, **kw: self.energy(r, theta), self.shift, self.dt, self.kT
        )

    # -- runs --------------------------------------------------------------------------
    def initial_state(self, values, seed):
        import jax
        import jax.numpy as jnp

        init_fn, _ = self.simulator(self._theta(values))
        momenta = jnp.asarray(self.system.velocities) * self.system.mass
        return init_fn(jax.random.PRNGKey(seed), jnp.asarray(self.system.positions),
                       mass=self.system.mass, momenta=momenta)  # fmt: skip

    @staticmethod
    def _theta(values):
        import jax.numpy as jnp

        return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}

    def _advance(self, state, theta, steps: int):
        import jax
        from jax import lax

        _, apply_fn = self.simulator(theta)
        force = -jax.grad(lambda r: self.energy(r, theta))(state.position)
        state = state.set(force=force)  # the stored force was computed with the old theta
        return lax.fori_loop(0, steps, lambda _, s: apply_fn(s), state)

    def _frames(self, state, theta, frames: int, scan):
        import jax
        from jax import lax

        _, apply_fn = self.simulator(theta)
        # Each step rematerialised too: a gradient then keeps one state per step of
        # the segment being differentiated, not every step's pair matrices (256 LJ
        # particles, 1,000 steps: 2.2 GB of temporaries without this)
        step = jax.checkpoint(apply_fn)

        def one(s, _):
            s = lax.fori_loop(0, self.sample_every, lambda _, t: step(t), s)
            return s, self.observables(s.position, s.momentum, theta) | {
                "position": s.position, "momentum": s.momentum}  # fmt: skip

        return scan(one, state, None, length=frames)

    @functools.cache  # noqa: B019 - one Model per fit, a few programs each
    def _program(self, kind: str, relax: int, frames: int, targets: tuple):
        import jax
        import jax.numpy as jnp
        from jax import lax

        from jaxpro.core import checkpointed_scan

        relax_fn = jax.jit(lambda state, theta: self._advance(state, theta, relax))
        if kind == "reweighting":

            def sample(state, theta):
                state = self._advance(state, theta, 0)
                return self._frames(state, theta, frames, lax.scan)

            def per_frame_grads(position, momentum, theta):
                grad_u = jax.grad(lambda t: self.energy(position, t))(theta)
                grad_a = jax.jacrev(lambda t: self.observables(position, momentum, t))(theta)
                return grad_u, grad_a

            grads = jax.jit(jax.vmap(per_frame_grads, in_axes=(0, 0, None)))
            return relax_fn, jax.jit(sample), grads

        def loss_of(theta, state, goal, scale):
            state = self._advance(state, theta, 0)
            final, frames_out = self._frames(state, theta, frames, checkpointed_scan)
            means = {k: jnp.mean(frames_out[k]) for k in targets}
            loss = sum(((means[k] - goal[k]) / scale[k]) ** 2 for k in targets)
            return loss, (final, means)

        return relax_fn, jax.jit(jax.value_and_grad(loss_of, has_aux=True)), None

    def iterate(self, state, values, relax, sample_steps, gradient, targets, scale):
        """One iteration: relax, sample, and the loss gradient's ingredients.

        Returns:
            ``(state, means, dL/dtheta)`` with ``means`` the sampled averages.
        """
        theta = self._theta(values)
        frames = sample_steps // self.sample_every
        keys = tuple(sorted(targets))
        relax_fn, run, grads_fn = self._program(gradient, relax, frames, keys)
        state = relax_fn(state, theta)
        if gradient == "trajectory":
            goal = {k: float(targets[k]) for k in keys}
            (_, (state, means)), grad = run(theta, state, goal, {k: scale[k] for k in keys})
            return state, {k: float(v) for k, v in means.items()}, {
                k: float(v) for k, v in grad.items()}  # fmt: skip
        state, frames_out = run(state, theta)
        grad_u, grad_a = grads_fn(frames_out["position"], frames_out["momentum"], theta)
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
        return state, means, loss_grad
