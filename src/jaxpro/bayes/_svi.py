"""Stochastic variational inference for large data, stopped when the ELBO levels off.

The guide is a multivariate normal when the parameters are few enough for its
covariance (it keeps their correlations) and a mean-field normal otherwise.
Optimisation runs in compiled windows of steps; between windows the mean
ELBO is compared with the previous window's. When it no longer improves the
step size is cut tenfold (twice), and the run stops when the smallest step
no longer improves it either. The importance weights ``log p(x, z) - log q(z)`` of draws
from the guide feed the Pareto-k check (PSIS): k > 0.7 means the guide misses
the posterior's shape and its draws should not be trusted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MVN_MAX_PARAMETERS", "SviRun", "fit_map", "run_svi"]

MVN_MAX_PARAMETERS = 200
WINDOW = 500
MAX_STEPS = 50_000
ABSOLUTE = 0.01  # nats: a window-mean ELBO gain below this is no gain
SCORE_PARTICLES = 32  # fixed guide draws scoring each window's averaged parameters
STEP_CUTS = 2  # times the step size is cut tenfold after the ELBO levels off


@dataclass(frozen=True)
class SviRun:
    draws: dict  # site -> (1, draws, *shape)
    elbo: np.ndarray  # ELBO per step (higher is better)
    steps: int
    converged: bool
    log_weights: np.ndarray
    guide: str
    seconds: float


def _optimize(model, guide, args, kwargs, seed, learning_rate):
    """Adam in compiled windows, the step size cut tenfold each time the ELBO levels off.

    Whether the ELBO still improves is judged on the window's averaged
    parameters, scored with the same ``SCORE_PARTICLES`` guide draws every
    time (common random numbers): the one-particle ELBO of the steps
    themselves is too noisy to see a slow gain, so a guide still far too wide
    can look converged (on a 200,000-row regression the step ELBO's noise hid
    a guide ten times wider than the posterior).

    A constant step size leaves the parameters jittering by about the step,
    which on tall data exceeds the posterior's spread (a 200,000-row regression
    has a posterior sd near 0.005; Adam moves each parameter by up to 0.01 a
    step). So once the ELBO stops improving the step is cut to a tenth, twice,
    and the iterates of the last window are averaged (Polyak averaging).

    Returns ``(params, ELBO per step, converged)``.
    """
    state, window = _window_program(model, guide, args, kwargs, seed, learning_rate)
    losses, scores, converged = [], [], False
    for rate in learning_rate * 0.1 ** np.arange(STEP_CUTS + 1):
        converged, first = False, len(scores)
        while len(losses) * WINDOW < MAX_STEPS:
            state, chunk, averaged, score = window(state, rate)
            losses.append(np.asarray(chunk))
            scores.append(float(score))
            if len(scores) - first >= 1 and len(scores) >= 2 and _levelled(scores[-2], scores[-1]):
                converged = True
                break
        if not converged:
            break
    return averaged, -np.concatenate(losses), converged


def _window_program(model, guide, args, kwargs, seed, learning_rate):
    """``(state, window)``: SVI's initial state and the jitted window of WINDOW Adam steps.

    ``window(state, rate) -> (state, losses, averaged params, score)``.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import optax_to_numpyro

    adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    svi = SVI(model, guide, optax_to_numpyro(adam), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(seed), *args, **kwargs)
    score_keys = jax.random.split(jax.random.PRNGKey(seed + 7), SCORE_PARTICLES)
    one_particle = Trace_ELBO(num_particles=1)

    @jax.jit
    def window(state, rate):
        step_count, (unconstrained, adam_state) = state.optim_state
        hyper = dict(
            adam_state.hyperparams,
            learning_rate=jnp.asarray(rate, adam_state.hyperparams["learning_rate"].dtype),
        )
        state = state._replace(
            optim_state=(step_count, (unconstrained, adam_state._replace(hyperparams=hyper)))
        )
        zero = jax.tree.map(jnp.zeros_like, svi.get_params(state))

        def step(carry, _):
            s, total = carry
            s, loss = svi.update(s, *args, **kwargs)
            total = jax.tree.map(jnp.add, total, svi.get_params(s))
            return (s, total), loss

        (state, total), losses = jax.lax.scan(step, (state, zero), None, length=WINDOW)
        averaged = jax.tree.map(lambda t: t / WINDOW, total)

        def particle(key):
            return -one_particle.loss(key, averaged, model, guide, *args, **kwargs)

        score = jnp.mean(jax.lax.map(particle, score_keys))
        return state, losses, averaged, score

    return state, window


def _guide(model, parameters: int):
    """``(name, guide)``: a full-covariance normal guide up to MVN_MAX_PARAMETERS, else diagonal."""
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

    if parameters <= MVN_MAX_PARAMETERS:
        return "AutoMultivariateNormal", AutoMultivariateNormal(model)
    return "AutoNormal", AutoNormal(model)


def compile_seconds(model, args, kwargs, *, parameters: int, seed: int,
                    learning_rate: float = 0.01) -> float:  # fmt: skip
    """Time to compile the optimisation window :func:`run_svi` runs (compiled, not run)."""
    _, guide = _guide(model, parameters)
    state, window = _window_program(model, guide, args, kwargs, seed, learning_rate)
    start = time.perf_counter()
    window.lower(state, learning_rate).compile()
    return time.perf_counter() - start


def _levelled(before: float, after: float) -> bool:
    """The scored ELBO gained at most ``ABSOLUTE`` nats (or fell, or is not finite).

    Absolute, not relative: a 400,000-nat ELBO gaining 10 nats a window is far
    from done when the posterior's spread is what is still being fitted.
    """
    gain = after - before
    return not math.isfinite(gain) or gain <= ABSOLUTE


def fit_map(model: Callable, args, kwargs, *, seed: int = 0, learning_rate: float = 0.01) -> dict:
    """The MAP estimate (constrained values by site), by SVI with a point-mass guide."""
    from numpyro.infer.autoguide import AutoDelta

    guide = AutoDelta(model)
    params, _, _ = _optimize(model, guide, args, kwargs, seed, learning_rate)
    return {k: np.asarray(v) for k, v in guide.median(params).items()}


def run_svi(
    model: Callable,
    args,
    kwargs,
    *,
    parameters: int,
    num_samples: int,
    seed: int,
    learning_rate: float = 0.01,
    weight_draws: int = 1000,
) -> SviRun:
    """Fit the guide, then draw from it. Call inside ``float64()``."""
    import jax
    from numpyro.infer import Trace_ELBO

    start = time.perf_counter()
    kind, guide = _guide(model, parameters)
    params, elbo, converged = _optimize(model, guide, args, kwargs, seed, learning_rate)
    key = jax.random.PRNGKey(seed + 1)
    draws = guide.sample_posterior(key, params, sample_shape=(num_samples,))
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}
    # one-particle ELBO at independent guide draws = log p(x, z) - log q(z)
    elbo_one = Trace_ELBO(num_particles=1)
    keys = jax.random.split(jax.random.PRNGKey(seed + 2), weight_draws)
    log_weights = np.asarray(
        jax.jit(jax.vmap(lambda k: -elbo_one.loss(k, params, model, guide, *args, **kwargs)))(keys)
    )
    return SviRun(draws, elbo, elbo.size, converged, log_weights, kind, time.perf_counter() - start)
