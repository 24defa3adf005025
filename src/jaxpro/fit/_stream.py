"""Fitting data that do not fit in memory: the same solver, its passes streamed from disk.

The solver's pieces (``init``, ``propose``, ``judge``, ``update``) are the ones
the in-memory program runs inside one ``while_loop``; here a Python loop drives
them, because every pass must read the source again. Each pass sends chunks to
the device one after another; JAX dispatches asynchronously, so reading the
next chunk from disk overlaps the device's work on the current one, and the
running sums never leave the device until the pass ends. Memory is one or two
chunks, whatever the size of the source.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxpro._streams import DEFAULT_ROWS, Stream
from jaxpro.errors import ModelError
from jaxpro.fit._engine import Outcome, Solved, _covariance
from jaxpro.fit._model import curve_residual, trace_check
from jaxpro.fit._orchestrate import (
    REDESCENDING,
    SUBSAMPLE,
    WARM_START_MIN,
    CurveData,
    Settings,
    run_curve,
)

IN_FLIGHT = 2  # chunks sent to the device and not yet computed, at most


class InFlight:
    """Asynchronous results still computing, at most ``limit`` of them.

    Each pending chunk holds its data until computed; a reader faster than the
    device would otherwise pile them up (+380 MB measured on a 16 GB file read
    from the page cache). :meth:`add` waits for the oldest beyond the limit, so
    reading the next chunk still overlaps computing the current ones.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.pending: collections.deque = collections.deque()

    def add(self, result) -> None:
        self.pending.append(result)
        while len(self.pending) > self.limit:
            self.pending.popleft().block_until_ready()


__all__ = ["StreamRun", "solve_stream"]


@dataclass(frozen=True)
class StreamRun:
    """What :func:`solve_stream` did."""

    solved: Solved
    n: int
    passes: int
    chunk_rows: int
    warm_start: dict | None
    settings: Settings


class _Progress:
    """A per-pass progress bar on an interactive terminal; silent otherwise."""

    def __init__(self, total_chunks: int | None, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total_chunks
        self.bar = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.__enter__()
        return self

    def start_pass(self, number: int):
        if self.bar is not None:
            self.task = self.bar.add_task(f"pass {number}", total=self.total)

    def advance(self):
        if self.bar is not None:
            self.bar.advance(self.task)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def solve_stream(
    model: Callable,
    source: Stream,
    theta0: np.ndarray,
    settings: Settings,
    *,
    chunk_rows: int = DEFAULT_ROWS,
    progress: bool = True,
) -> StreamRun:
    """Solve the least-squares problem over a :class:`Stream`. Call inside ``float64()``."""
    import jax
    import jax.numpy as jnp

    from jaxpro.fit._engine import _METHODS
    from jaxpro.fit._pass import chunk_sums, linearize_sums
    from jaxpro.fit._solver import RUNNING, Options

    method = _METHODS[settings.method]
    residual = curve_residual(model)
    loss, f_scale = settings.loss, settings.f_scale
    lb, ub = jnp.asarray(settings.lb), jnp.asarray(settings.ub)
    started = time.perf_counter()

    @jax.jit
    def kernel(theta, reference, block):
        region = jax.tree.map(lambda a: a[None], block)  # one region of one chunk
        return chunk_sums(residual, theta, (region,), reference, loss=loss, f_scale=f_scale)

    linearize = jax.jit(lambda total, reference: linearize_sums(total, reference, loss))

    passes = 0
    rows_seen = [0]

    def data_pass(theta, reference):
        nonlocal passes
        passes += 1
        bar.start_pass(passes)
        total = None
        count = 0
        in_flight = InFlight(IN_FLIGHT)
        for chunk in source.chunks(chunk_rows):
            part = kernel(
                theta, reference, _block(chunk, chunk_rows)
            )  # asynchronous: reading the next chunk overlaps this one's compute
            total = part if total is None else total + part
            count += chunk.y.shape[0]
            bar.advance()
            in_flight.add(part)
        if total is None:
            raise ModelError("the stream produced no data")
        rows_seen[0] = count
        return linearize(total, reference)

    def evaluate(theta, reference, repeat_if=None, extra=2):
        lin = data_pass(theta, reference)
        for _ in range(extra):
            if not bool(lin.ill_conditioned) or (repeat_if is not None and not repeat_if(lin)):
                break
            lin = data_pass(theta, lin.R)
        return lin

    # the model is checked on a small block before any pass
    first = next(iter(source.chunks(64)))
    trace_check(residual, np.asarray(theta0, np.float64), _block(first, first.y.shape[0]))

    warm = None
    start, reference = np.asarray(theta0, np.float64), np.eye(theta0.shape[0])
    sample = source.sample(SUBSAMPLE) if (source.n or 0) >= WARM_START_MIN else None
    pre_loss = "huber" if loss in REDESCENDING else loss
    if sample is not None:
        small = CurveData(
            sample.x, sample.y, None if sample.sigma is None else 1.0 / sample.sigma, None, None
        )
        from dataclasses import replace

        trial = run_curve(model, small, start, replace(settings, loss=pre_loss)).solved
        out = trial.outcome
        used = out.status > 0 and out.finite
        if used:
            start = np.asarray(out.x)
            reference = np.asarray(out.R) * np.sqrt(source.n / small.n)
        warm = {
            "points": small.n,
            "loss": pre_loss if isinstance(pre_loss, str) else "custom",
            "nfev": out.nfev,
            "status": out.status,
            "used": used,
        }

    total_chunks = None if source.n is None else -(-source.n // chunk_rows)
    with _Progress(total_chunks, progress) as bar:
        lin = evaluate(jnp.asarray(start), jnp.asarray(reference), extra=3)
        n = rows_seen[0]
        options = Options(
            settings.ftol,
            settings.xtol,
            settings.gtol,
            settings.max_nfev,
            jnp.asarray(settings.x_scale),
            settings.jac_scale,
            float(n),
        )
        init = jax.jit(lambda x0, lin0: method.init(x0, lin0, options, lb, ub))
        propose = jax.jit(lambda state: method.propose(state, options, lb, ub, True))
        judge = jax.jit(
            lambda state, proposal, trial: method.judge(state, proposal, trial, options)
        )
        update = jax.jit(
            lambda state, proposal, trial: method.update(state, proposal, trial, options, lb, ub)
        )
        state = init(jnp.asarray(start), lin)
        while int(state.status) == RUNNING and int(state.nfev) < settings.max_nfev:
            trial_x, proposal = propose(state)
            trial = evaluate(
                trial_x,
                state.lin.R,
                repeat_if=lambda t, s=state, pr=proposal: bool(judge(s, pr, t)),
            )
            state = update(state, proposal, trial)
    status = int(state.status)
    if status == RUNNING:
        status = 0
    lin = state.lin
    covariance, rank = jax.jit(_covariance)(lin.R, float(n))
    optimality = float(method.optimality(state, lb, ub))
    active = np.asarray(method.active_mask(state, lb, ub, settings.xtol))
    outcome = Outcome(
        np.asarray(state.x),
        float(lin.cost),
        float(lin.chi2),
        np.asarray(lin.R),
        np.asarray(lin.qtr),
        np.asarray(lin.gradient),
        status,
        int(state.nfev),
        int(state.njev),
        int(state.nit),
        active,
        optimality,
        np.asarray(covariance),
        int(rank),
        bool(lin.finite),
        0 if warm is None else warm["nfev"],
        0 if warm is None else warm["status"],
    )
    solved = Solved(outcome, 0.0, time.perf_counter() - started)
    return StreamRun(solved, n, passes, chunk_rows, warm, settings)


def _block(chunk, rows: int) -> dict:
    """A chunk as the residual's block, padded to ``rows`` points (padding has weight 0)."""
    m = chunk.y.shape[0]

    def pad(a):
        return np.pad(a, (0, rows - m), mode="edge")

    w = np.zeros(rows)
    w[:m] = 1.0 if chunk.sigma is None else 1.0 / chunk.sigma
    x = pad(chunk.x) if chunk.x.ndim == 1 else tuple(pad(row) for row in chunk.x)
    return {"x": x, "y": pad(chunk.y), "w": w}
