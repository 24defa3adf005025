"""``jaxpro.ode.bayes_fit``: the posterior of ODE parameters, by NUTS through the solver.

The model (NumPyro): each parameter (and, with ``fit_y0``, each initial state)
from its prior; the solution of ``dy/dt = f(t, y, params)`` at the observation
times by Diffrax; the observations around it, normal (``noise='normal'``) or
log-normal (``noise='lognormal'``: multiplicative noise, for positive quantities
such as populations or concentrations), with a noise scale per state that is
given or estimated (a half-normal prior as wide as the data's spread).
:func:`jaxpro.bayes.sample` then runs NUTS with its checks and repairs (R-hat,
ESS, divergences), so the result is a checked :class:`~jaxpro.bayes.Posterior`.

Choices, in the plan:

- the solver is chosen once, at the priors' medians, as :func:`solve` chooses;
- gradients for NUTS come from forward sensitivities (one solve carrying a
  tangent per parameter, then ``J^T g``; see :func:`_forward_sensitivities` for
  why not reverse mode); ``max_steps`` is bounded so that every gradient costs a
  bounded time;
- parameters where the solve fails (stiffness, blow-up: NUTS explores the tails)
  get zero posterior density, instead of NaN gradients that would stop the chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from jaxpro._result import Plan
from jaxpro.errors import InputError
from jaxpro.ode._methods import controller, make_solver
from jaxpro.ode._solve import single_only, solve

__all__ = ["bayes_fit"]

NOISES = ("normal", "lognormal")
BAYES_MAX_STEPS = 4096  # per solve in each gradient: a failed solve costs at most this


def _priors(priors, fit_y0: bool, n_states: int) -> dict:
    """``{name: numpyro distribution}``; ``(low, high)`` becomes Uniform(low, high)."""
    import numpyro.distributions as dist

    if not isinstance(priors, Mapping) or not priors:
        raise InputError("must be a dict {name: distribution or (low, high)}",
                         argument="priors", received=priors)  # fmt: skip
    out = {}
    for name, prior in priors.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise InputError(f"{name!r} is not a name", argument="priors", received=priors)
        if isinstance(prior, dist.Distribution):
            if prior.batch_shape or prior.event_shape:
                raise InputError(f"{name}: must be a scalar distribution", argument="priors",
                                 received=prior)  # fmt: skip
            out[name] = prior
            continue
        try:
            low, high = (float(v) for v in prior)
        except (TypeError, ValueError):
            raise InputError(f"{name}: must be a numpyro distribution or (low, high)",
                             argument="priors", received=prior) from None  # fmt: skip
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise InputError(f"{name}: (low, high) must be finite with low < high",
                             argument="priors", received=prior)  # fmt: skip
        out[name] = dist.Uniform(low, high)
    states = [f"y0_{i}" for i in range(n_states)]
    if fit_y0:
        missing = [s for s in states if s not in out]
        if missing:
            raise InputError(f"needs priors for the initial states {', '.join(missing)} with"
                             " fit_y0=True", argument="priors")  # fmt: skip
    elif any(s in out for s in states):
        raise InputError("has priors on y0_* but fit_y0 is False", argument="priors")
    return out


def _forward_sensitivities(trajectory):
    """``trajectory(theta, times)`` whose reverse-mode gradient (what NUTS asks for) comes
    from forward sensitivities: one solve carrying a tangent per parameter
    (``jax.jacfwd`` through Diffrax's ``ForwardMode``), then ``J^T g``.

    Why not reverse mode through the solver: under NumPyro's parallel chains
    (``pmap``) Diffrax's checkpointed reverse loop fails on jax 0.12 with equinox's
    "Closure-converted function called with different dynamic arguments". Cost,
    measured on exponential decay (one parameter): 0.11 ms a gradient against 0.054
    ms by reverse mode on one chain, 0.092 against 0.139 ms for four chains at once;
    forward sensitivities grow with the number of parameters, fine for an ODE's few.
    """
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def solved(theta, times):
        return trajectory(theta, times)

    def forward(theta, times):
        jacobian, ys = jax.jacfwd(lambda th: (trajectory(th, times),) * 2, has_aux=True)(theta)
        return ys, (jacobian, times)

    def backward(residuals, cotangent):
        jacobian, times = residuals
        # a failed solve's NaN must not reach the gradient: its density is zero anyway
        gradient = jnp.tensordot(jnp.nan_to_num(cotangent), jnp.nan_to_num(jacobian),
                                 axes=cotangent.ndim)  # fmt: skip
        return gradient, jnp.zeros_like(times)

    solved.defvjp(forward, backward)
    return solved


def _support_bounds(prior) -> tuple[float, float]:
    """The prior's support as (lower, upper) bounds for the least-squares start."""
    from numpyro.distributions import constraints

    support = prior.support
    if isinstance(support, constraints.interval | constraints.greater_than):  # positive too
        low = float(getattr(support, "lower_bound", -np.inf))
        return low, float(getattr(support, "upper_bound", np.inf))
    return -np.inf, np.inf


def _least_squares_start(f, times, observed, table, names, start, fit_y0, t0, noise, chosen,
                         rtol, atol):  # fmt: skip
    """Where NUTS chains start: around the least-squares fit (jaxpro.ode.fit) from the
    priors' medians, or at the medians when that fit fails or ends poorly.

    Chains started at random (NumPyro's default, uniform in (-2, 2) unconstrained)
    fall into the local modes of oscillating solutions, where the phase has wrapped:
    Lotka-Volterra from such starts gave R-hat 2.3 and 45% of transitions at the
    maximum tree depth (tests/ode/test_ode_bayes.py)."""
    from jaxpro.ode._fit import fit

    medians = {n: _median(p) for n, p in table.items()}
    keys = names + ([f"y0_{i}" for i in range(start.size)] if fit_y0 else [])
    try:
        result = fit(
            f, times, observed[:, 0] if observed.shape[1] == 1 else observed,
            {n: medians[n] for n in names},
            [medians[f"y0_{i}"] for i in range(start.size)] if fit_y0 else start,
            fit_y0=fit_y0, t0=t0, method=chosen, rtol=max(rtol, 1e-8), atol=max(atol, 1e-10),
            sigma=observed if noise == "lognormal" else None,
            bounds={n: _support_bounds(table[n]) for n in keys},
        )  # fmt: skip
    except (ValueError, RuntimeError) as error:  # jaxpro's errors derive from these
        return medians, (f"chains start near the priors' medians (the least-squares fit for a"
                         f" start failed: {type(error).__name__})")  # fmt: skip
    if not np.isfinite(result.r_squared) or result.r_squared < 0.5:
        return medians, (f"chains start near the priors' medians (the least-squares fit ended"
                         f" at R^2 = {result.r_squared:.3g})")  # fmt: skip
    values = dict(zip(keys, (float(v) for v in result.values), strict=True))
    return values, (f"chains start near the least-squares fit (jaxpro.ode.fit from the priors'"
                    f" medians, R^2 = {result.r_squared:.4g}), each moved by up to 0.1 in"
                    " unconstrained space: random starts fall into the local modes of"
                    " oscillating solutions")  # fmt: skip


def _median(prior) -> float:
    """A central value of a scalar prior (its median by quantile, else its mean)."""
    try:
        return float(prior.icdf(0.5))
    except (NotImplementedError, AttributeError):
        return float(prior.mean)


def bayes_fit(
    f,
    t_obs,
    y_obs,
    priors,
    y0,
    *,
    fit_y0: bool = False,
    t0: float | None = None,
    sigma=None,
    noise: str = "normal",
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    seed: int = 0,
    **sample_options,
):
    """The posterior of the parameters of ``dy/dt = f(t, y, params)`` given observations.

    Args:
        f: the right-hand side; ``params`` is a 1-D array of the parameters in the
            order of ``priors`` (the ``y0_*`` entries excluded).
        t_obs: observation times ``(m,)``, increasing.
        y_obs: observations ``(m, n)`` or ``(m,)`` (one state), in the state's units;
            NaN marks a value not observed (a state never measured is a column of NaN:
            it gets no noise scale and no likelihood term).
        priors: ``{name: numpyro distribution or (low, high)}`` for each parameter,
            and ``y0_0, y0_1, ...`` for the initial states with ``fit_y0``.
        y0: the initial state ``(n,)`` at ``t0`` (with ``fit_y0``: only to check shapes).
        fit_y0: infer the initial state too.
        t0: the time of ``y0`` (default: the first observation time).
        sigma: the noise scale per state (a number or ``(n,)``; the log scale for
            ``noise='lognormal'``); None estimates it (sites ``sigma_0, ...``).
        noise: "normal" or "lognormal" (observations must then be positive).
        method: the ODE solver ("auto" chooses at the priors' medians).
        rtol, atol: the solver's tolerances.
        num_chains, num_warmup, num_samples, seed, **sample_options: as in
            :func:`jaxpro.bayes.sample`.

    Returns:
        A :class:`~jaxpro.bayes.Posterior` (sites: the parameters, ``y0_*`` and
        ``sigma_*`` where inferred); its plan starts with the ODE's choices.

    Raises:
        InputError: bad arguments; an ODE that cannot be solved at the priors' medians.
    """
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import jaxpro.bayes

    single_only(f, "bayes_fit()")
    times = np.asarray(t_obs, dtype=float)
    observed = np.asarray(y_obs, dtype=float)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0):
        raise InputError("must be at least two increasing times", argument="t_obs",
                         received=t_obs)  # fmt: skip
    start = np.atleast_1d(np.asarray(y0, dtype=float))
    if start.ndim != 1 or not np.all(np.isfinite(start)):
        raise InputError("must be a finite 1-D state", argument="y0", received=y0)
    n_states = start.size
    single = observed.ndim == 1
    if single and n_states == 1:
        observed = observed[:, None]
    if observed.shape != (times.size, n_states):
        raise InputError(f"must be ({times.size}, {n_states}) (one row per time, one column per"
                         " state)", argument="y_obs", received=np.shape(y_obs))  # fmt: skip
    if np.any(np.isinf(observed)):
        raise InputError("must be finite, or NaN where a value was not observed",
                         argument="y_obs")  # fmt: skip
    seen = ~np.isnan(observed)  # NaN: not observed (as in ode.fit)
    if not seen.any():
        raise InputError("has no observed value (all NaN)", argument="y_obs")
    if noise not in NOISES:
        raise InputError(f"must be one of {NOISES}", argument="noise", received=noise)
    if noise == "lognormal" and np.any(observed[seen] <= 0):
        raise InputError("must be positive with noise='lognormal'", argument="y_obs")
    scales = None
    if sigma is not None:
        scales = np.broadcast_to(np.asarray(sigma, dtype=float), (n_states,)).copy()
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise InputError("must be positive and finite", argument="sigma", received=sigma)
    table = _priors(priors, fit_y0, n_states)
    names = [n for n in table if not n.startswith("y0_")]
    if not names:
        raise InputError("must hold at least one parameter besides y0_*", argument="priors")
    t_start = float(times[0] if t0 is None else t0)
    if t_start > times[0]:
        raise InputError("must not come after the first observation", argument="t0",
                         received=t0)  # fmt: skip
    centre = np.array([_median(table[n]) for n in names])
    centre_y0 = (np.array([_median(table[f"y0_{i}"]) for i in range(n_states)])
                 if fit_y0 else start)  # fmt: skip
    with jax.enable_x64(True):
        probe = solve(f, (t_start, float(times[-1])), jnp.asarray(centre_y0), t_eval=times,
                      args=jnp.asarray(centre), method=method, rtol=rtol, atol=atol)  # fmt: skip
    if not probe.success:
        raise InputError(f"the ODE cannot be solved at the priors' medians: {probe.message}",
                         argument="priors")  # fmt: skip
    chosen = probe.plan.method
    solver = make_solver(chosen)
    term = diffrax.ODETerm(f)
    measured = seen.any(axis=0)  # states with at least one observation
    values = np.log(observed) if noise == "lognormal" else observed
    spread = np.array([np.nanstd(values[:, i]) if measured[i] else 0.0
                       for i in range(n_states)])  # fmt: skip
    data_scale = np.where(spread > 0, spread, 1.0)
    # the likelihood sees the observed entries only; the others hold a harmless
    # stand-in (positive, for the log-normal) and are masked out
    filled = np.where(seen, observed, 1.0)
    everything = bool(seen.all())

    n_params = len(names)

    def trajectory(theta, times):
        """The solution at ``times`` (a failed solve: NaN) for parameters + initial states."""
        state = theta[n_params:] if fit_y0 else jnp.asarray(start)
        solution = diffrax.diffeqsolve(
            term, solver, jnp.asarray(t_start, dtype=times.dtype), times[-1], None, state,
            theta[:n_params],
            saveat=diffrax.SaveAt(ts=times), stepsize_controller=controller(chosen, rtol, atol, times),
            max_steps=BAYES_MAX_STEPS, throw=False, adjoint=diffrax.ForwardMode(),
        )  # fmt: skip
        ok = solution.result == diffrax.RESULTS.successful
        return jnp.where(ok, solution.ys, jnp.nan)

    solved = _forward_sensitivities(trajectory)

    def model(times, observed):
        params = [numpyro.sample(n, table[n]) for n in names]
        states = ([numpyro.sample(f"y0_{i}", table[f"y0_{i}"]) for i in range(n_states)]
                  if fit_y0 else [])  # fmt: skip
        ys = solved(jnp.stack(params + states), times)
        ok = jnp.all(jnp.isfinite(ys))
        numpyro.factor("ode_solved", jnp.where(ok, 0.0, -jnp.inf))
        ys = jnp.where(ok, ys, 1.0)  # finite stand-ins: the factor already rejected it
        if scales is None:
            # a scale only for the states that were measured (the others have no data
            # to inform it)
            noise_scale = jnp.stack([numpyro.sample(f"sigma_{i}", dist.HalfNormal(data_scale[i]))
                                     if measured[i] else jnp.ones(())
                                     for i in range(n_states)])  # fmt: skip
        else:
            noise_scale = jnp.asarray(scales)
        if noise == "lognormal":
            likelihood = dist.LogNormal(jnp.log(jnp.maximum(ys, 1e-300)), noise_scale)
        else:
            likelihood = dist.Normal(ys, noise_scale)
        if not everything:
            likelihood = likelihood.mask(seen)
        numpyro.sample("y", likelihood, obs=observed)

    starts, start_reason = _least_squares_start(f, times, observed, table, names, start,
                                                fit_y0, t0, noise, chosen, rtol, atol)  # fmt: skip
    sample_options.setdefault("init_values", starts)
    # NumPy float64 arrays: jnp.asarray here, outside float64 mode, would make them float32
    posterior = jaxpro.bayes.sample(model, times, filled,
                                    method="nuts", num_chains=num_chains, num_warmup=num_warmup,
                                    num_samples=num_samples, seed=seed,
                                    **sample_options)  # fmt: skip
    missing = ""
    if not everything:
        never = ", ".join(str(i) for i in np.flatnonzero(~measured))
        missing = f", {int((~seen).sum())} values not observed (NaN)"
        missing += f": state(s) {never} never" if never else ""
    reasons = (
        f"ODE posterior: {int(seen.sum())} observations ({times.size} times x {n_states} states"
        f"{missing}), {noise} noise with "
        + ("the given scale" if scales is not None else "a scale per state inferred")
        + f"; {len(names)} parameters"
        + (f" and the {n_states} initial states" if fit_y0 else ""),
        *probe.plan.reasons,
        f"solver {chosen} (chosen at the priors' medians), rtol {rtol:g}, atol {atol:g};"
        " gradients for NUTS from forward sensitivities (one solve with a tangent per"
        f" parameter), at most {BAYES_MAX_STEPS} steps per solve; a failed solve has zero"
        " density",
        start_reason,
        *posterior.plan.reasons,
    )
    plan = Plan(method=f"{posterior.plan.method} on {chosen}", reasons=reasons,
                settings={**dict(posterior.plan.settings), "ode_method": chosen, "rtol": rtol,
                          "atol": atol, "t0": t_start, "noise": noise})  # fmt: skip
    return dataclasses.replace(posterior, plan=plan)
