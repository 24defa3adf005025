"""What the MCP server's tools run, each in a child process it can cancel.

Every job takes JSON-safe keyword arguments already checked by the server
(paths resolved inside the root, sizes within limits, expressions parsed by the
safe parser) and returns a JSON-safe dict: ``summary`` (the result's text),
``result`` (its ``to_dict()``, large arrays left out) and ``figures`` (paths,
relative to the root, of what it wrote there).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["JOBS", "run_job"]

MAX_ARRAY = 10_000  # numbers per array kept in a result sent back to the client


def _trim(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: _trim(v) for k, v in payload.items()}
    if isinstance(payload, list):
        if len(payload) > MAX_ARRAY:
            return f"<{len(payload)} values left out>"
        return [_trim(v) for v in payload]
    return payload


def _finish(result, root: str, out: str | None, figures: bool = True) -> dict:
    written = []
    if out is not None:
        folder = Path(root) / out
        result.save(folder, figures=figures)
        written = [str(p.relative_to(root)) for p in sorted(folder.iterdir())]
    return {"summary": result.summary(), "result": _trim(result.to_dict()), "figures": written}


def fit_curve(root, out, expression, x, y, sigma, p0, bounds, loss, variable):
    import numpy as np

    import jaxpro

    result = jaxpro.fit(expression, np.asarray(x), np.asarray(y), p0, sigma=sigma,
                        bounds=bounds, loss=loss, variables=[variable], progress=False)  # fmt: skip
    return _finish(result, root, out)


def fit_many(root, out, expression, x, y, p0, bounds, loss):
    import numpy as np

    import jaxpro

    result = jaxpro.fit_many(expression, np.asarray(x), np.asarray(y), p0, bounds=bounds,
                             loss=loss)  # fmt: skip
    return _finish(result, root, out)


def bayes_fit(root, out, data, formula, family, chains, draws):
    import jaxpro.bayes
    from jaxpro.io import read_frame

    frame = read_frame(data)
    posterior = jaxpro.bayes.fit(formula, frame, family, num_chains=chains, num_warmup=draws,
                                 num_samples=draws, progress=False)  # fmt: skip
    return _finish(posterior, root, out)


def solve_ode(root, out, equations, params, y0, t_end, points, method):
    import jaxpro.ode
    from jaxpro.cli.ode import build_rhs

    f, states, names = build_rhs(equations, params)
    missing = [s for s in states if s not in y0]
    if missing:
        from jaxpro.errors import InputError

        raise InputError(f"needs a start value for {', '.join(missing)}", argument="y0")
    import numpy as np

    times = np.linspace(0.0, t_end, points)
    solution = jaxpro.ode.solve(f, (0.0, t_end), np.array([y0[s] for s in states]),
                                t_eval=times, args=tuple(params[n] for n in names),
                                method=method)  # fmt: skip
    return _finish(solution, root, out)


def simulate_md(root, out, n, density, temperature, ensemble, steps):
    import jaxpro.md as md

    system = md.lennard_jones_fluid(n, density, temperature)
    trajectory = md.simulate(system, ensemble, steps, progress=False)
    return _finish(trajectory, root, out)


def simulate_flow(root, out, flow, grid, reynolds, t_end):
    import jaxpro.cfd as cfd

    result = cfd.simulate(flow, grid=grid, reynolds=reynolds, t_end=t_end, progress=False)
    return _finish(result, root, out)


def plan(root, out, domain, facts):
    import jaxpro

    advice = jaxpro.plan(domain, **facts)
    return {"summary": advice.summary(), "result": _trim(advice.to_dict()), "figures": []}


JOBS = {f.__name__: f for f in (fit_curve, fit_many, bayes_fit, solve_ode, simulate_md,
                                simulate_flow, plan)}  # fmt: skip


def run_job(name: str, kwargs: dict, connection) -> None:
    """Child-process entry: run ``JOBS[name](**kwargs)`` and send ``("ok", dict)`` or
    ``("error", one line)`` back through ``connection``."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the summary carries the checks and warnings
            payload = JOBS[name](**kwargs)
        payload["seconds"] = time.perf_counter() - started
        connection.send(("ok", payload))
    except Exception as exc:  # every failure goes back as one line; the child then exits
        connection.send(("error", f"{type(exc).__name__}: {exc}".splitlines()[0]))
    finally:
        connection.close()
