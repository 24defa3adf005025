"""``jaxpro ode``: differential equations from the command line.

Example::

    jaxpro ode solve --rhs "dx = a*x - b*x*y; dy = -c*y + d*x*y" \\
        --params a=1.5,b=1,c=3,d=1 --y0 x=10,y=5 --t 0:15 --out lv/

``--rhs`` holds one equation ``d<state> = <expression>`` per state, separated by
``;``; the expressions go through jaxpro's safe expression parser (no ``eval``)
and may use ``t``, the states and the parameters. It prints the solution's
summary (or JSON with ``--json``); ``--out DIR`` saves ``result.json`` and
``ode_solution.png``.

``jaxpro ode fit DATA`` fits the equations' parameters to observed states::

    jaxpro ode fit lv.csv --rhs "dx = a*x - b*x*y; dy = -c*y + d*x*y" \
        --t time --y x=prey,y=predator --p0 a=1,b=1,c=2,d=1 --bounds a=0:inf --out fit/

``--y`` maps states to their columns; a state without one is not observed and
is fitted through the others (then ``--y0`` is needed). The initial state is
``--y0`` or else the first row of the data (``--fit-y0`` estimates it too). It prints the fit's
summary (or JSON) and ``--out`` saves ``result.json`` and ``ode_fit.png`` (the
observations with the fitted solution).
"""

from __future__ import annotations

import json
import math
import re

import click

from jaxpro.cli._app import debug_option, info

__all__ = ["ode"]

_EQUATION = re.compile(r"^\s*d([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.DOTALL)


@click.group("ode")
def ode() -> None:
    """Differential equations on Diffrax (the solver chosen for you, and why)."""


def _assignments(text: str, argument: str) -> dict[str, float]:
    """``"a=1.5,b=2"`` -> ``{"a": 1.5, "b": 2.0}``."""
    from jaxpro.errors import InputError

    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise InputError("must be name=value pairs separated by commas", argument=argument,
                             received=text)  # fmt: skip
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{name}: {value.strip()!r} is not a number", argument=argument,
                             received=text) from None  # fmt: skip
        if not math.isfinite(number):
            raise InputError(f"{name} must be finite", argument=argument, received=text)
        if name in out:
            raise InputError(f"{name} is given twice", argument=argument, received=text)
        out[name] = number
    return out


def build_rhs(rhs: str, params: dict[str, float] | None):
    """``(f, states, parameter names)`` from ``--rhs``; ``f(t, y, args)`` with ``args`` the
    parameter values in the order of ``parameter names``. ``params=None``: the values
    come later (a fit), so none is required here."""
    import jax.numpy as jnp

    from jaxpro import expr
    from jaxpro.errors import InputError

    equations = [e for e in rhs.split(";") if e.strip()]
    if not equations:
        raise InputError("must hold equations like 'dx = -k*x'", argument="--rhs", received=rhs)
    states: list[str] = []
    bodies: list[str] = []
    for equation in equations:
        match = _EQUATION.match(equation)
        if match is None or not match.group(2).strip():
            raise InputError(f"{equation.strip()!r} is not 'd<state> = <expression>'",
                             argument="--rhs")  # fmt: skip
        name = match.group(1)
        if name in states:
            raise InputError(f"d{name} is given twice", argument="--rhs")
        if name == "t":
            raise InputError("t is the time, not a state", argument="--rhs")
        states.append(name)
        bodies.append(match.group(2))
    compiled = [expr.compile(body, variables=("t", *states), argument="--rhs") for body in bodies]
    needed = sorted({p for c in compiled for p in c.parameters})
    missing = [p for p in needed if params is not None and p not in params]
    if missing:
        raise InputError(f"needs a value for {', '.join(missing)}", argument="--params")
    unused = [p for p in params or () if p not in needed]
    if unused:
        raise InputError(f"{', '.join(unused)} appear in no equation", argument="--params")
    slots = [[needed.index(p) for p in c.parameters] for c in compiled]

    def f(t, y, args):
        return jnp.stack([c.function(t, *(y[i] for i in range(len(states))),
                                     *(args[j] for j in slot))
                          for c, slot in zip(compiled, slots, strict=True)])  # fmt: skip

    return f, states, needed


@ode.command("solve")
@click.option("--rhs", required=True, help="Equations 'dx = ...; dy = ...' (one per state).")
@click.option("--params", default="", help="Parameter values, e.g. a=1.5,b=1.")
@click.option("--y0", "y0_text", required=True, help="Initial state, e.g. x=10,y=5.")
@click.option("--t", "t_text", required=True, help="Time span t0:t1, e.g. 0:15.")
@click.option("--points", type=int, default=201, show_default=True,
              help="Output times, evenly spaced over the span.")  # fmt: skip
@click.option("--method", default="auto", show_default=True,
              help="auto, tsit5, dopri5, dopri8 or kvaerno5.")  # fmt: skip
@click.option("--rtol", type=float, default=1e-6, show_default=True)
@click.option("--atol", type=float, default=1e-9, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Save results and the figure here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@debug_option
def solve(rhs: str, params: str, y0_text: str, t_text: str, points: int, method: str,
          rtol: float, atol: float, out: str | None, as_json: bool) -> None:  # fmt: skip
    """Solve an initial-value problem written as equations."""
    import numpy as np

    import jaxpro.ode
    from jaxpro.errors import InputError

    values = _assignments(params, "--params")
    f, states, names = build_rhs(rhs, values)
    start = _assignments(y0_text, "--y0")
    if sorted(start) != sorted(states):
        raise InputError(f"must give exactly the states {', '.join(states)}", argument="--y0",
                         received=y0_text)  # fmt: skip
    try:
        t0, t1 = (float(v) for v in t_text.split(":"))
    except ValueError:
        raise InputError("must be t0:t1, e.g. 0:15", argument="--t", received=t_text) from None
    if points < 2:
        raise InputError("must be at least 2", argument="--points", received=points)
    t_eval = np.linspace(t0, t1, points) if t0 != t1 else None
    solution = jaxpro.ode.solve(
        f, (t0, t1), np.array([start[s] for s in states]), t_eval=t_eval,
        args=tuple(values[n] for n in names), method=method, rtol=rtol, atol=atol,
    )  # fmt: skip
    if as_json:
        payload = solution.to_dict()
        payload["states"] = states
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(f"states: {', '.join(states)}")
        click.echo(solution.summary())
    if out is not None:
        directory = solution.save(out)
        info(f"saved: {directory}", json_output=as_json)


def _columns(text: str, states: list[str], argument: str,
             required: list[str] | None) -> dict[str, str]:  # fmt: skip
    """``"x=prey,y=predator"`` -> ``{"x": "prey", "y": "predator"}``, checked against the states."""
    from jaxpro.errors import InputError

    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        state, sep, column = (v.strip() for v in part.partition("="))
        if not sep or not state or not column:
            raise InputError("must be state=column pairs separated by commas",
                             argument=argument, received=text)  # fmt: skip
        if state not in states:
            raise InputError(f"{state} is not a state (the states: {', '.join(states)})",
                             argument=argument, received=text)  # fmt: skip
        if state in out:
            raise InputError(f"{state} is given twice", argument=argument, received=text)
        out[state] = column
    if required and sorted(out) != sorted(required):
        raise InputError(f"must give a column for each of {', '.join(required)}",
                         argument=argument, received=text)  # fmt: skip
    if not out and required is not None:
        raise InputError("must give a column for at least one state", argument=argument,
                         received=text)  # fmt: skip
    return out


def fit_figure(result, f, states, times, observed, start, values, t0):
    """Observations (points) and the fitted solution (lines) against time."""
    import numpy as np
    from matplotlib.figure import Figure

    import jaxpro.ode

    dense = np.linspace(t0, times[-1], 400)
    curve = jaxpro.ode.solve(f, (t0, float(times[-1])), np.asarray(start), t_eval=dense,
                             args=tuple(values))  # fmt: skip
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    for i, name in enumerate(states):
        line = axes.plot(dense, np.asarray(curve.ys)[:, i], label=f"{name} (fit)")[0]
        axes.plot(times, observed[:, i], "o", ms=3, color=line.get_color(), label=name)
    axes.set_xlabel("t")
    axes.legend(fontsize="small")
    axes.set_title(f"ODE fit: R^2 = {result.r_squared:.4g}", fontsize="medium")
    return figure


@ode.command("fit")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--rhs", required=True, help="Equations 'dx = ...; dy = ...' (one per state).")
@click.option("--t", "t_column", required=True, metavar="COL", help="Column of the times.")
@click.option("--y", "y_text", required=True, metavar="STATE=COL,...",
              help="The column of each state, e.g. x=prey,y=predator.")  # fmt: skip
@click.option("--sigma", "sigma_text", default="", metavar="STATE=COL,...",
              help="Columns of the standard deviations (all states or none).")  # fmt: skip
@click.option("--p0", multiple=True, metavar="NAME=VALUE,...",
              help="Starting values, e.g. a=1,b=0.1 (parameters not given start at 1).")  # fmt: skip
@click.option("--bounds", multiple=True, metavar="NAME=LOW:HIGH,...",
              help="Bounds, e.g. a=0:inf (inf, -inf or empty mean unbounded).")  # fmt: skip
@click.option("--y0", "y0_text", default="", help="Initial state, e.g. x=10,y=5 "
              "(default: the first row of the data).")  # fmt: skip
@click.option("--fit-y0", is_flag=True, help="Estimate the initial state too.")
@click.option("--t0", type=float, help="Time of the initial state (default: the first time).")
@click.option("--method", default="auto", show_default=True,
              help="ODE solver: auto, tsit5, dopri5, dopri8 or kvaerno5.")  # fmt: skip
@click.option("--rtol", type=float, default=1e-8, show_default=True)
@click.option("--atol", type=float, default=1e-10, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Save result.json and ode_fit.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-plot", is_flag=True, help="With --out, do not draw ode_fit.png.")
@debug_option
def fit(data: str, rhs: str, t_column: str, y_text: str, sigma_text: str, p0: tuple[str, ...],
        bounds: tuple[str, ...], y0_text: str, fit_y0: bool, t0: float | None, method: str,
        rtol: float, atol: float, out: str | None, as_json: bool, no_plot: bool) -> None:  # fmt: skip
    """Fit the parameters of equations to observed states in DATA (csv, tsv, parquet, ...)."""
    from pathlib import Path

    import numpy as np

    import jaxpro.ode
    from jaxpro.cli.fit import _default_start, parse_bounds, parse_p0
    from jaxpro.errors import InputError
    from jaxpro.io import read_table

    f, states, names = build_rhs(rhs, None)
    if not names:
        raise InputError("has no parameters to fit", argument="--rhs", received=rhs)
    # a state without a column is not observed: the fit goes through the others
    y_columns = _columns(y_text, states, "--y", required=[])
    seen = [s for s in states if s in y_columns]
    sigma_columns = _columns(sigma_text, states, "--sigma",
                             required=seen if sigma_text.strip() else None)  # fmt: skip
    if t_column in y_columns.values():
        raise InputError(f"column {t_column!r} is also a state's column", argument="--t")
    wanted = [t_column, *(y_columns[s] for s in seen), *(sigma_columns[s] for s in seen
                                                         if s in sigma_columns)]  # fmt: skip
    table = read_table(data, columns=list(dict.fromkeys(wanted)), argument="DATA")
    order = np.argsort(table[t_column], kind="stable")
    times = np.asarray(table[t_column])[order]
    if np.any(np.diff(times) <= 0):
        raise InputError("must hold distinct times (one row per time)", argument="--t",
                         received=t_column)  # fmt: skip
    unobserved = np.full(times.size, np.nan)  # NaN: jaxpro.ode.fit's "not observed"

    def column(names: dict[str, str], state: str, fill):
        return np.asarray(table[names[state]], dtype=float)[order] if state in names else fill

    observed = np.stack([column(y_columns, s, unobserved) for s in states], axis=1)
    # sigma of an unobserved state: any positive number (its residuals are left out)
    sigma = (np.stack([column(sigma_columns, s, np.ones(times.size)) for s in states], axis=1)
             if sigma_columns else None)  # fmt: skip
    given = _assignments(y0_text, "--y0")
    if given and sorted(given) != sorted(states):
        raise InputError(f"must give exactly the states {', '.join(states)}", argument="--y0",
                         received=y0_text)  # fmt: skip
    if not given and t0 is not None and t0 != times[0]:
        raise InputError("needs --y0: the first row is not at --t0", argument="--t0",
                         received=t0)  # fmt: skip
    if not given and len(seen) < len(states):
        raise InputError(f"needs --y0: {', '.join(s for s in states if s not in seen)} has no"
                         " column, so the first row cannot give the initial state",
                         argument="--y0")  # fmt: skip
    start = np.array([given[s] for s in states]) if given else observed[0]
    bounds_by_name = parse_bounds(bounds, names)
    p0_by_name = parse_p0(p0, names)

    starts = {n: p0_by_name[n] if n in p0_by_name
              else _default_start(*bounds_by_name.get(n, (-np.inf, np.inf)))
              for n in names}  # fmt: skip
    result = jaxpro.ode.fit(
        f, times, observed, starts, start, fit_y0=fit_y0, t0=t0, sigma=sigma,
        bounds=bounds_by_name or None, method=method, rtol=rtol, atol=atol,
    )  # fmt: skip
    click.echo(result.to_json() if as_json else f"states: {', '.join(states)}\n"
               + result.summary())  # fmt: skip
    if out is not None:
        directory = result.save(out, figures=False)
        saved = [directory / "result.json"]
        if not no_plot:
            values = [result[n] for n in names]
            fitted_start = ([result[f"y0_{i}"] for i in range(len(states))]
                            if fit_y0 else start)  # fmt: skip
            figure = fit_figure(result, f, states, times, observed, fitted_start, values,
                                float(times[0] if t0 is None else t0))  # fmt: skip
            saved.append(Path(directory) / "ode_fit.png")
            figure.savefig(saved[-1], dpi=120, bbox_inches="tight")
        info("saved: " + ", ".join(str(p) for p in saved), json_output=as_json)
