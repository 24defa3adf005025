"""``fit_potential``: potential parameters fitted so simulated observables match targets.

The loss is ``sum_A ((<A>_theta - A_target) / scale_A)^2`` over the observables
given (mean potential energy per particle, pressure), minimised by Adam
(optax) on the logarithms of the parameters (they stay positive). Each
iteration continues an NVT run at the current parameters: some steps to
follow the change, then sampling steps. Two ways to get ``d<A>/dtheta``:

- ``gradient="reweighting"`` (default): the canonical-ensemble identity
  ``d<A>/dtheta = <dA/dtheta> - beta (<A dU/dtheta> - <A><dU/dtheta>)``, with
  ``dU/dtheta`` and ``dA/dtheta`` of each sampled frame by ``jax.grad``. It
  is exact for equilibrium averages, costs one gradient per frame and does not
  backpropagate through the chaotic dynamics, so it stays accurate for long
  samples.
- ``gradient="trajectory"``: ``jax.grad`` through the simulation itself, its
  steps in rematerialised segments (:func:`jaxpro.core.checkpointed_scan`:
  memory O(sqrt(steps))). Exact for the finite run from its start, but the
  sensitivity to initial conditions grows exponentially with the run length:
  use it for short windows or non-equilibrium observables.

Pairs are evaluated as ``simulate`` evaluates them: all pairs up to 300
particles, jaxpro's neighbour list above (carried through the steps, rebuilt
inside them, re-allocated and the iteration redone when it overflows; see
``_fit_runs``). The plan says which.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table
from jaxpro.errors import InputError
from jaxpro.md._systems import System

__all__ = ["PotentialFit", "fit_potential"]

OBSERVABLES = ("potential_energy", "pressure")
GRADIENTS = ("reweighting", "trajectory")


@dataclass(frozen=True, repr=False)
class PotentialFit(Result):
    """Fitted parameters and how the fit went.

    Attributes:
        values: fitted parameters by name (the mean of the last quarter of the
            iterates unless the loss fell below ``tol``).
        initial: the starting parameters.
        targets: the target observables.
        observables: the last iteration's simulated observables.
        history: per iteration: loss and parameters.
        converged: whether the loss fell below ``tol``.
        plan, timings: method and why; where the time went.
    """

    values: dict[str, float]
    initial: dict[str, float]
    targets: dict[str, float]
    observables: dict[str, float]
    history: list[dict[str, float]]
    converged: bool
    plan: Plan
    timings: Timings
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "potential_fit"

    def summary(self) -> str:
        rows = [[name, self.initial[name], value] for name, value in self.values.items()]
        observed = [[name, self.targets[name], self.observables[name]] for name in self.targets]
        lines = [
            f"fit_potential: {len(self.history)} iterations,"
            f" {'converged' if self.converged else 'NOT converged'}"
            f" (loss {self.history[-1]['loss']:.3g})",
            format_table(["parameter", "start", "fitted"], rows),
            format_table(["observable", "target", "simulated"], observed),
            self.plan.summary(),
            self.timings.summary(),
        ]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {"values": self.values, "initial": self.initial, "targets": self.targets,
                "observables": self.observables, "history": self.history,
                "converged": self.converged, **self.extra}  # fmt: skip

    def plot(self, **kwargs: Any):
        """Loss and parameters against iteration, as a matplotlib Figure."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 3.5), layout="constrained")
        loss, params = figure.subplots(1, 2)
        steps = np.arange(len(self.history))
        loss.semilogy(steps, [h["loss"] for h in self.history])
        loss.set_xlabel("iteration")
        loss.set_ylabel("loss")
        for name in self.values:
            params.plot(steps, [h[name] for h in self.history], label=name)
        params.set_xlabel("iteration")
        params.legend(fontsize="small")
        return figure


def _check(system, targets, parameters, gradient, iterations, sample_steps):
    if not isinstance(system, System):
        raise InputError("must be a jaxpro.md System", argument="system", received=system)
    if not isinstance(targets, dict) or not targets:
        raise InputError(f"must map some of {OBSERVABLES} to target values", argument="targets",
                         received=targets)  # fmt: skip
    for name, value in targets.items():
        if name not in OBSERVABLES:
            raise InputError(f"names an unknown observable (known: {OBSERVABLES})",
                             argument="targets", received=name)  # fmt: skip
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError("values must be finite numbers", argument="targets", received=value)
    known = system.potential.params if system.potential is not None else system.params
    for name in parameters:
        if name not in known:
            raise InputError(f"names no parameter of the system (it has {sorted(known)})",
                             argument="parameters", received=name)  # fmt: skip
    if gradient not in GRADIENTS:
        raise InputError(f"must be one of {GRADIENTS}", argument="gradient", received=gradient)
    for name, value in (("iterations", iterations), ("sample_steps", sample_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError("must be a positive integer", argument=name, received=value)


def fit_potential(
    system: System,
    targets: dict[str, float],
    parameters: tuple[str, ...] = ("sigma", "epsilon"),
    *,
    initial: dict[str, float] | None = None,
    kT: float | None = None,
    dt: float = 0.005,
    gradient: str = "reweighting",
    iterations: int = 40,
    sample_steps: int = 1000,
    relax_steps: int = 200,
    equilibration_steps: int | None = None,
    sample_every: int = 10,
    learning_rate: float = 0.03,
    tol: float = 1e-4,
    scales: dict[str, float] | None = None,
    seed: int = 0,
) -> PotentialFit:
    """Fit potential parameters so NVT averages match ``targets``.

    Args:
        system: the system (its potential's parameters are the starting point).
        targets: ``{"potential_energy": U/N, "pressure": P}`` (either or both).
        parameters: which parameters to fit (names of the potential's or the
            user energy's parameters).
        initial: starting values (default: the system's).
        kT: temperature (default: the system's).
        dt: time step.
        gradient: "reweighting" or "trajectory" (see the module notes).
        iterations: optimiser steps at most.
        sample_steps: sampling steps per iteration (after ``relax_steps``).
        relax_steps: steps per iteration before sampling (to follow the change of
            the parameters).
        equilibration_steps: steps at the starting parameters before the first
            iteration, in runs of ``relax_steps`` (default ``sample_steps``; none
            when ``relax_steps`` is 0): a system starts on a lattice, and a first
            sample taken while it melts biases the first gradients (its drift
            looks like a covariance).
        sample_every: steps between sampled frames.
        learning_rate: Adam's step on the log-parameters.
        tol: stop when the loss is below it.
        scales: the scale of each observable in the loss (default 1 + |target|).
        seed: PRNG seed of the velocities.

    Returns:
        A :class:`PotentialFit`.
    """
    started = time.perf_counter()
    if equilibration_steps is None:
        equilibration_steps = sample_steps
    _check(system, targets, parameters, gradient, iterations, sample_steps)
    for name, value in (("relax_steps", relax_steps), ("equilibration_steps",
                                                       equilibration_steps)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError("must be a non-negative integer", argument=name, received=value)
    import jax
    import optax

    from jaxpro.md import _fit_runs as runs

    known = system.potential.params if system.potential is not None else system.params
    start = {name: float((initial or {}).get(name, known[name])) for name in parameters}
    fixed = {k: float(v) for k, v in known.items() if k not in parameters}
    kT = float(kT if kT is not None else system.temperature)
    scale = {name: float((scales or {}).get(name, 1.0 + abs(v))) for name, v in targets.items()}
    reasons = [system.describe(), f"NVT (Nose-Hoover chain) at kT = {kT:g}, dt = {dt:g}"]
    reasons.append(
        "gradient by reweighting: d<A>/dtheta = <dA/dtheta> - beta cov(A, dU/dtheta) over the"
        " sampled frames (no backpropagation through the chaotic dynamics)"
        if gradient == "reweighting"
        else "gradient through the simulation: jax.grad over the sampling steps, rematerialised"
        " in segments of ~sqrt(steps) (jaxpro.core.checkpointed_scan)"
    )
    reasons.append(
        f"Adam (optax, learning rate {learning_rate:g}) on log-parameters; each iteration"
        f" relaxes {relax_steps} steps then samples {sample_steps}"
    )
    with jax.enable_x64(True):
        model = runs.Model(system, tuple(parameters), fixed, kT, dt, sample_every)
        reasons.insert(1, f"pairs: {model.describe()}")
        # the learning rate decays tenfold over the run, so the last iterates settle
        schedule = optax.exponential_decay(learning_rate, iterations, 0.1)
        optimiser = optax.adam(schedule)
        log_params = {k: np.log(v) for k, v in start.items()}
        opt_state = optimiser.init(log_params)
        state = model.initial_state(start, seed)
        state, equilibrated = model.equilibrate(
            state, start, equilibration_steps, relax_steps, gradient, sample_steps, targets
        )
        reasons.append(
            f"equilibrated {equilibrated} steps at the starting parameters before the first"
            " iteration" if equilibrated else "no equilibration before the first iteration"
        )  # fmt: skip
        history, converged, observed = [], False, {}
        for _ in range(iterations):
            values = {k: float(np.exp(v)) for k, v in log_params.items()}
            state, observed, grads = model.iterate(
                state, values, relax_steps, sample_steps, gradient, targets, scale
            )
            loss = sum(((observed[k] - t) / scale[k]) ** 2 for k, t in targets.items())
            history.append({"loss": loss, **values})
            if loss < tol:
                converged = True
                break
            # chain rule to log-parameters: dL/dlog(theta) = theta dL/dtheta
            log_grads = {k: values[k] * grads[k] for k in values}
            updates, opt_state = optimiser.update(log_grads, opt_state)
            log_params = optax.apply_updates(log_params, updates)
    # Each iteration's averages are noisy; the estimate is the mean of the last
    # quarter of the iterates (Polyak averaging), or the converged iterate.
    tail = history[-1:] if converged else history[-max(1, len(history) // 4) :]
    final = {k: float(np.mean([h[k] for h in tail])) for k in parameters}
    reasons.append(
        "converged: loss below tol" if converged else
        f"estimate: mean of the last {len(tail)} iterates (each iteration's averages are noisy)"
    )  # fmt: skip
    plan = Plan(
        method=f"fit_potential ({gradient})",
        reasons=tuple(reasons),
        settings={"iterations": len(history), "sample_steps": sample_steps,
                  "relax_steps": relax_steps, "sample_every": sample_every, "dt": dt, "kT": kT,
                  "equilibration_steps": equilibrated, "learning_rate": learning_rate,
                  "tol": tol, "scales": scale,
                  "neighbor_list": model.lister is not None,
                  "list_reallocations": model.reallocations},
    )  # fmt: skip
    total = time.perf_counter() - started
    return PotentialFit(
        values={k: final[k] for k in parameters},
        initial=start,
        targets=dict(targets),
        observables=observed,
        history=history,
        converged=converged,
        plan=plan,
        timings=Timings(None, total, total),  # programs compile inside the first iteration
    )
