"""``jaxpro.ode.fit``: ODE parameters (and optionally initial states) from observations.

The model is the ODE's solution at the observation times, flattened; jaxpro's own
least-squares engine (:func:`jaxpro.fit`, LM or TRF with bounds) fits it, so the
result is a :class:`~jaxpro.fit.FitResult` with standard errors, covariance and
confidence intervals, and its plan starts with the ODE's decisions. A fit that
ends poorly (R^2 < 0.9: a local minimum where the solution's phase wrapped) is
retried on growing windows of the data (the first quarter, half, then all), each
starting where the last ended; the lower cost is kept. The engine
differentiates the model in forward mode (``jax.jacfwd``; a few parameters, many
observations), so the solve runs with Diffrax's ``ForwardMode`` adjoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Mapping

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.errors import InputError
from jaxpro.ode._methods import controller, make_solver
from jaxpro.ode._solve import MAX_STEPS, single_only, solve

__all__ = ["fit"]

GOOD_R2 = 0.9  # below this, the fit is retried on growing windows of the data
WINDOWS = (0.25, 0.5)  # fractions of the observation times, before all of them
MIN_WINDOW = 4


def _names_and_start(p0, y0, fit_y0: bool):
    if isinstance(p0, Mapping):
        names, values = list(p0), [float(v) for v in p0.values()]
    else:
        values = [float(v) for v in np.atleast_1d(np.asarray(p0, dtype=float))]
        names = [f"p{i}" for i in range(len(values))]
    if not values:
        raise InputError("must give at least one parameter", argument="p0", received=p0)
    for name in names:
        if not (isinstance(name, str) and name.isidentifier()):
            raise InputError(f"{name!r} is not a name", argument="p0", received=p0)
    if not np.all(np.isfinite(values)):
        raise InputError("must be finite", argument="p0", received=p0)
    start = np.atleast_1d(np.asarray(y0, dtype=float))
    if start.ndim != 1 or not np.all(np.isfinite(start)):
        raise InputError("must be a finite 1-D state", argument="y0", received=y0)
    if fit_y0:
        names += [f"y0_{i}" for i in range(start.size)]
        values += list(start)
    return names, values, start


def fit(
    f,
    t_obs,
    y_obs,
    p0,
    y0,
    *,
    fit_y0: bool = False,
    t0: float | None = None,
    sigma=None,
    bounds=None,
    absolute_sigma: bool = False,
    method: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = MAX_STEPS,
    confidence: float = 0.95,
):
    """Fit the parameters of ``dy/dt = f(t, y, params)`` to observations of ``y``.

    Args:
        f: the right-hand side; ``params`` is a 1-D array of the parameters in the
            order of ``p0`` (so ``a, b = params`` unpacks them).
        t_obs: observation times ``(m,)``, increasing.
        y_obs: observations ``(m, n)`` or ``(m,)`` (one state). NaN marks a value not
            observed: a state never measured is a column of NaN (the fit then uses the
            other states alone), a missed measurement a single NaN.
        p0: starting values: a dict by name, or a sequence (named ``p0, p1, ...``).
        y0: the initial state ``(n,)`` at ``t0``.
        fit_y0: also fit the initial state (parameters ``y0_0, y0_1, ...``).
        t0: the time of ``y0`` (default: the first observation time).
        sigma: standard deviations of ``y_obs`` (its shape, or broadcastable).
        bounds: ``{name: (lower, upper)}`` (TRF) or SciPy's ``(lb, ub)``.
        absolute_sigma: sigma is absolute (no rescaling by the reduced chi-square).
        method: the ODE solver ("auto" chooses at ``p0``, as :func:`solve` does).
        rtol, atol: the solver's tolerances (tight by default: the fit differentiates
            the solution, and solver error becomes noise in the Jacobian).
        confidence: level of the confidence intervals.

    Returns:
        A :class:`~jaxpro.fit.FitResult` (``values``, ``stderr``, ``covariance``,
        ``ci_lower``/``ci_upper``, ``summary()``...); its plan lists the ODE
        solver's choice, then the fit's.

    Raises:
        InputError: bad arguments; an ODE that cannot be solved at ``p0``.
    """
    import diffrax
    import jax
    import jax.numpy as jnp

    import jaxpro

    started = time.perf_counter()
    single_only(f, "fit()")
    times = np.asarray(t_obs, dtype=float)
    observed = np.asarray(y_obs, dtype=float)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0):
        raise InputError("must be at least two increasing times", argument="t_obs",
                         received=t_obs)  # fmt: skip
    names, start_values, start = _names_and_start(p0, y0, fit_y0)
    n_states = start.size
    single = observed.ndim == 1
    if (single and (n_states != 1 or observed.shape[0] != times.size)) or (
        not single and observed.shape != (times.size, n_states)
    ):
        raise InputError(f"must be ({times.size}, {n_states}) (one row per time, one column per"
                         " state)", argument="y_obs", received=observed.shape)  # fmt: skip
    if np.any(np.isinf(observed)):
        raise InputError("must be finite, or NaN where a value was not observed",
                         argument="y_obs", received=y_obs)  # fmt: skip
    seen = ~np.isnan(observed)  # NaN: not observed
    if seen.sum() <= len(names):
        raise InputError(f"has {int(seen.sum())} observed values for {len(names)} parameters;"
                         " a fit needs more observations than parameters", argument="y_obs",
                         received=observed.shape)  # fmt: skip
    t_start = float(times[0] if t0 is None else t0)
    if t_start > times[0]:
        raise InputError("must not come after the first observation", argument="t0",
                         received=t0)  # fmt: skip
    n_params = len(names) - (n_states if fit_y0 else 0)
    params0 = np.asarray(start_values[:n_params])
    with jax.enable_x64(True):
        probe = solve(f, (t_start, float(times[-1])), jnp.asarray(start), t_eval=times,
                      args=jnp.asarray(params0), method=method, rtol=rtol, atol=atol,
                      max_steps=max_steps)  # fmt: skip
    if not probe.success:
        raise InputError(f"the ODE cannot be solved at p0: {probe.message}", argument="p0",
                         received=p0)  # fmt: skip
    chosen = probe.plan.method
    solver = make_solver(chosen)
    term = diffrax.ODETerm(f)

    clock: list[Timings] = []  # every window's fit: the result reports them all

    def fit_window(count: int, start_values):
        """jaxpro.fit on the first ``count`` observation times."""
        window = times[:count]

        def model(index, *theta):
            theta = jnp.stack([jnp.asarray(v, dtype=jnp.float64) for v in theta])
            params = theta[:n_params]
            state = theta[n_params:] if fit_y0 else jnp.asarray(start)
            solution = diffrax.diffeqsolve(
                term, solver, t_start, float(window[-1]), None, state, params,
                saveat=diffrax.SaveAt(ts=window),
                stepsize_controller=controller(chosen, rtol, atol, window),
                max_steps=max_steps, adjoint=diffrax.ForwardMode(), throw=False,
            )  # fmt: skip
            # throw=False: a trial step that makes the ODE blow up gives non-finite
            # residuals, which the engine rejects, instead of the whole fit failing
            return jnp.ravel(solution.ys)[jnp.asarray(index).astype(jnp.int32)]

        model.__signature__ = inspect.Signature(
            [inspect.Parameter("index", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        )
        # the model returns the solution at the observed entries only (their
        # flat indices are its x), so unobserved states cost no residuals
        index = np.flatnonzero(seen[:count].reshape(-1))
        flat = observed[:count].reshape(-1)[index]
        weights = None if sigma is None else np.broadcast_to(
            np.asarray(sigma, dtype=float), observed.shape)[:count].reshape(-1)[index]  # fmt: skip
        window_fit = jaxpro.fit(model, index.astype(float), flat,
                          p0=dict(zip(names, start_values, strict=True)), sigma=weights,
                          bounds=bounds, absolute_sigma=absolute_sigma,
                          confidence=confidence)  # fmt: skip
        clock.append(window_fit.timings)
        return window_fit

    result = fit_window(times.size, start_values)
    growing = []
    if result.r_squared < GOOD_R2 and times.size >= 4 * MIN_WINDOW:
        # A solution's phase wraps as parameters move, so a far start can stop in a
        # local minimum (Lotka-Volterra from 20% off: R^2 = 0.23). Fit a short
        # stretch first, where the phase cannot wrap, and lengthen it from there.
        values = start_values
        for fraction in WINDOWS:
            count = max(MIN_WINDOW, round(fraction * times.size))
            values = list(fit_window(count, values).values)
        retry = fit_window(times.size, values)
        growing = [f"the first fit ended at R^2 = {result.r_squared:.3g} (< {GOOD_R2}): refitted"
                   f" on growing windows ({', '.join(f'{w:.0%}' for w in WINDOWS)} of the"
                   f" times, then all): R^2 = {retry.r_squared:.3g}"]  # fmt: skip
        if retry.cost < result.cost:
            result = retry
        else:
            growing.append("the first fit had the lower cost and is kept")
    n_observed = int(seen.sum())
    missing = ""
    if n_observed < seen.size:
        unseen = [str(i) for i in range(n_states) if not single and not seen[:, i].any()]
        missing = (f", {seen.size - n_observed} values not observed (NaN)"
                   + (f": state(s) {', '.join(unseen)} never, fitted through the others"
                      if unseen else ""))  # fmt: skip
    reasons = (
        f"ODE fit: {n_observed} observations ({times.size} times x"
        f" {1 if single else n_states} states{missing}) of the solution from t0 ="
        f" {t_start:g}; {n_params} parameters"
        + (f" and the {n_states} initial states" if fit_y0 else ""),
        *probe.plan.reasons,
        f"solver {chosen} (chosen at p0), rtol {rtol:g}, atol {atol:g}; forward-mode"
        " derivatives through the solve (Diffrax ForwardMode: few parameters, many"
        " observations)",
        *growing,
        *result.plan.reasons,
    )
    plan = Plan(method=f"{result.plan.method} on {chosen}", reasons=reasons,
                settings={**dict(result.plan.settings), "ode_method": chosen, "rtol": rtol,
                          "atol": atol, "t0": t_start, "fit_y0": fit_y0})  # fmt: skip
    compile_s = sum(c.compile or 0.0 for c in clock)
    timings = Timings(compile_s, sum(c.run for c in clock), time.perf_counter() - started)
    return dataclasses.replace(result, plan=plan, timings=timings)
