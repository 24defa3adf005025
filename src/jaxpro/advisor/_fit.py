"""``jaxpro.plan("fit", ...)``: a curve fit's decisions, by the fit's own functions.

The method comes from ``resolve_settings`` and ``method_reasons`` (what
``jaxpro.fit`` calls), the data path from the layout rules of ``fit/_data.py``
and the device split from ``_orchestrate._shards``. Time is measured: a
synthetic fit with the same number of parameters and the same settings on up
to 2^20 points (2^23 beyond the bucketed sizes, so the chunking is the real
run's), cold (compile) and warm (best of two), scaled linearly in the points.
"""

from __future__ import annotations

import time

import numpy as np

from jaxpro._result import Plan, Timings
from jaxpro.advisor._advice import Advice
from jaxpro.errors import InputError

__all__ = ["plan_fit"]

# the calibration fit runs in the layout regime of the real n: up to BUCKETED_MAX
# (4,096-point chunks) at most 2^20 points; above it (65,536-point chunks) 2^23.
# Scaling 2^20 bucketed points to 1e7 overestimated the warm fit 5x (0.65 s advised,
# 0.14 s measured): small chunks and per-call overhead do not scale
CALIBRATION_MAX = 1 << 20
CALIBRATION_LARGE = 1 << 23

VALIDATION = (
    "convergence: the solver's own stopping test (ftol, xtol, gtol), else a warning with advice",
    "covariance: standard errors finite; a parameter looser than its value is named",
    "correlations near +-1 (an over-parametrised model) are named",
    "parameters stopped at a bound are named",
    "with absolute sigma: the reduced chi-square against 1",
)


def _calibration_model(params: int):
    """a exp(-b x) (+ c, + sum of d_k cos(k x)): the classic decay for 2 or 3 parameters,
    extended by cosines; nonlinear for any number (>= 2) of parameters."""
    import jax.numpy as jnp

    def model(x, *theta):
        out = theta[0] * jnp.exp(-theta[1] * x)
        if len(theta) > 2:
            out = out + theta[2]
        for k, d in enumerate(theta[3:], start=1):
            out = out + d * jnp.cos(k * x)
        return out

    return model


def plan_fit(n: int, params: int, bounds: bool = False, loss: str = "linear",
             method: str | None = None, calibrate: bool = True) -> Advice:  # fmt: skip
    """The curve fit jaxpro would run on ``n`` points with ``params`` parameters."""
    import jax

    import jaxpro
    from jaxpro.fit._compact import eligible as compact_eligible
    from jaxpro.fit._data import BUCKETED_MAX, DIRECT_MAX, LARGE_CHUNK, MID_CHUNK
    from jaxpro.fit._orchestrate import _shards, resolve_settings
    from jaxpro.fit._plan import method_reasons

    started = time.perf_counter()
    for value, name in ((n, "n"), (params, "params")):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError("must be a positive whole number", argument=name, received=value)
    if params < 2:
        raise InputError("must be at least 2 for the calibration model", argument="params",
                         received=params)  # fmt: skip
    limits = (np.zeros(params), np.full(params, np.inf)) if bounds else (-np.inf, np.inf)
    settings = resolve_settings(params, method=method, bounds=limits, loss=loss)
    names = [f"p{i}" for i in range(params)]
    reasons = method_reasons(method, settings, names if bounds else [])
    shards = _shards(n)
    # fit's own rule (_orchestrate._compact_first, less what only the data can tell)
    rule = compact_eligible(settings.method, settings.loss, settings.jac_scale, bounds, params)
    compact = rule and method in (None, "auto") and shards == 1 and not bounds
    first = ("the compact LM first (the Gram matrix of [J | r] each evaluation; the full LM"
             " where it gives up)")  # fmt: skip
    if n <= DIRECT_MAX:
        size = max(32, 1 << (n - 1).bit_length())
        how = first if compact else "Householder QR of the whole Jacobian"
        reasons.append(f"{n} points <= {DIRECT_MAX}: {how}, data padded to {size}")  # fmt: skip
        work = size * params * 8 * 4
    else:
        chunk = MID_CHUNK if n <= BUCKETED_MAX else LARGE_CHUNK
        reasons.append(f"{n} points: Jacobian never stored; each pass accumulates the {params}x"
                       f"{params} factor over chunks of {chunk} points"
                       + (f"; {first}" if compact else ""))  # fmt: skip
        work = chunk * params * 8 * 4 * shards
    if shards > 1:
        reasons.append(f"chunks split over {shards} devices (one psum of the Gram matrices)")
    data = 3 * 8 * n  # x, y and 1/sigma in float64, read in place when aligned
    seconds, note, cal_timings = None, "not measured (calibrate=False)", (0.0, 0.0)
    if calibrate:
        m = min(n, CALIBRATION_MAX if n <= BUCKETED_MAX else CALIBRATION_LARGE)
        x = np.linspace(0.0, 5.0, m)
        truth = np.r_[2.0, 0.7, 0.3 / np.arange(1, params - 1)][:params]
        model = _calibration_model(params)
        y = np.asarray(model(x, *truth)) + 0.01 * np.random.default_rng(0).standard_normal(m)
        kwargs = dict(bounds=limits if bounds else None, loss=loss, method=method, progress=False)
        p0 = truth * 1.2
        cold = jaxpro.fit(model, x, y, p0, **kwargs)
        warm_s = float("inf")
        for _ in range(2):  # best of two warm fits
            tic = time.perf_counter()
            warm = jaxpro.fit(model, x, y, p0, **kwargs)
            warm_s = min(warm_s, time.perf_counter() - tic)
        scale = n / m
        seconds = (cold.timings.compile or 0.0) + warm_s * scale
        note = (f"calibrated on {m} synthetic points, {params} parameters ({warm.nfev}"
                f" evaluations): compile {cold.timings.compile or 0:.3g} s + fit {warm_s:.3g} s"
                + (f" x {scale:.3g} (points)" if scale > 1 else "")
                + "; a harder model or start needs proportionally more evaluations")  # fmt: skip
        cal_timings = (cold.timings.compile or 0.0, warm_s)
    bounds_text = ", bounds=(lower, upper)" if bounds else ""
    loss_text = "" if loss == "linear" else f", loss={loss!r}"
    devices = jax.devices()
    return Advice(
        domain="fit",
        method=settings.method,
        call=f"jaxpro.fit(model, x, y, p0{bounds_text}{loss_text})",
        memory_bytes=float(data + work),
        memory_note=f"the data in float64 ({data / 2**20:.3g} MiB, read in place when aligned)"
        f" + the Jacobian work of one pass ({work / 2**20:.3g} MiB)",
        seconds=seconds,
        seconds_note=note,
        validation=VALIDATION,
        devices=f"{shards} of {len(devices)} x {devices[0].platform}",
        plan=Plan(
            method=settings.method,
            reasons=tuple(reasons),
            settings={
                "n": n,
                "params": params,
                "loss": settings.loss,
                "layout": "direct" if n <= DIRECT_MAX else "chunked",
                "shards": shards,
            },
        ),
        timings=Timings(cal_timings[0], cal_timings[1], time.perf_counter() - started),
    )
