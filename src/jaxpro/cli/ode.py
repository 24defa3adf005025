"""``jaxpro ode``: differential equations from the command line.

Example::

    jaxpro ode solve --rhs "dx = a*x - b*x*y; dy = -c*y + d*x*y" \\
        --params a=1.5,b=1,c=3,d=1 --y0 x=10,y=5 --t 0:15 --out lv/

``--rhs`` holds one equation ``d<state> = <expression>`` per state, separated by
``;``; the expressions go through jaxpro's safe expression parser (no ``eval``)
and may use ``t``, the states and the parameters. It prints the solution's
summary (or JSON with ``--json``); ``--out DIR`` saves ``result.json`` and
``ode_solution.png``.
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


def build_rhs(rhs: str, params: dict[str, float]):
    """``(f, states, parameter names)`` from ``--rhs``; ``f(t, y, args)`` with ``args`` the
    parameter values in the order of ``parameter names``."""
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
    missing = [p for p in needed if p not in params]
    if missing:
        raise InputError(f"needs a value for {', '.join(missing)}", argument="--params")
    unused = [p for p in params if p not in needed]
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
