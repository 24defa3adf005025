"""``jaxpro plan``: the decision jaxpro would take, before running anything.

Examples::

    jaxpro plan fit --n 10000000 --params 3 --bounds
    jaxpro plan bayes --n 250000 --hierarchical
    jaxpro plan ode --stiff
    jaxpro plan md --n 4000 --ensemble nvt --steps 10000
    jaxpro plan cfd --grid 256 --t-end 10 --json

print the method, the call to make, why, the expected memory and time on this
machine's devices, and the validation the run will make (``--json``: the same as
JSON). The decision comes from the code a real run executes.
"""

from __future__ import annotations

import json

import click

from jaxpro.cli._app import debug_option

__all__ = ["plan"]


@click.group("plan")
def plan() -> None:
    """What jaxpro would do for a problem, why, and at what cost (nothing is run for real)."""


def _show(advice, as_json: bool) -> None:
    click.echo(json.dumps(advice.to_dict(), indent=2) if as_json else advice.summary())


@plan.command("fit")
@click.option("--n", "n", type=int, required=True, help="Data points.")
@click.option("--params", type=int, required=True, help="Model parameters.")
@click.option("--bounds", is_flag=True, help="The parameters have bounds.")
@click.option("--loss", default="linear", show_default=True,
              help="linear, soft_l1, huber, cauchy or arctan.")  # fmt: skip
@click.option("--method", type=click.Choice(["auto", "lm", "trf"]), default="auto",
              show_default=True)  # fmt: skip
@click.option("--no-calibrate", is_flag=True, help="Skip the timing fit (no time estimate).")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
@debug_option
def fit(n, params, bounds, loss, method, no_calibrate, as_json) -> None:
    """A nonlinear least-squares fit of N points with PARAMS parameters."""
    import jaxpro.advisor

    advice = jaxpro.advisor.plan("fit", n=n, params=params, bounds=bounds, loss=loss,
                                 method=None if method == "auto" else method,
                                 calibrate=not no_calibrate)  # fmt: skip
    _show(advice, as_json)


@plan.command("bayes")
@click.option("--n", "n", type=int, required=True, help="Rows of data.")
@click.option("--hierarchical", is_flag=True, help="A group term (1 | g).")
@click.option("--family", default="gaussian", show_default=True)
@click.option("--predictors", type=int, default=1, show_default=True)
@click.option("--groups", type=int, default=None, help="Levels of g (default n/100, <= 1000).")
@click.option("--method", type=click.Choice(["auto", "nuts", "hmcecs", "svi", "consensus"]),
              default="auto", show_default=True)  # fmt: skip
@click.option("--chains", type=int, default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
@debug_option
def bayes(n, hierarchical, family, predictors, groups, method, chains, as_json) -> None:
    """A regression formula fitted by Bayesian inference (the fit's own decision)."""
    import jaxpro.advisor

    advice = jaxpro.advisor.plan("bayes", n=n, hierarchical=hierarchical, family=family,
                                 predictors=predictors, groups=groups, method=method,
                                 num_chains=chains)  # fmt: skip
    _show(advice, as_json)


@plan.command("ode")
@click.option("--states", "n", type=int, default=3, show_default=True, help="State size.")
@click.option("--stiff", is_flag=True, help="The problem is stiff.")
@click.option("--radius", type=float, default=None,
              help="The Jacobian's spectral radius, if known (decides stiffness).")  # fmt: skip
@click.option("--span", type=float, default=1.0, show_default=True, help="t1 - t0.")
@click.option("--rtol", type=float, default=1e-6, show_default=True)
@click.option("--atol", type=float, default=1e-9, show_default=True)
@click.option("--points", type=int, default=201, show_default=True, help="Output times.")
@click.option("--batch", type=int, default=1, show_default=True, help="Initial states at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
@debug_option
def ode(n, stiff, radius, span, rtol, atol, points, batch, as_json) -> None:
    """An initial-value problem (solve's own choice, on a stand-in with that spectrum)."""
    import jaxpro.advisor

    advice = jaxpro.advisor.plan("ode", n=n, stiff=stiff or None, radius=radius, span=span,
                                 rtol=rtol, atol=atol, points=points, batch=batch)  # fmt: skip
    _show(advice, as_json)


@plan.command("md")
@click.option("--n", "n", type=int, default=4000, show_default=True, help="Particles.")
@click.option("--density", type=float, default=0.8442, show_default=True)
@click.option("--temperature", type=float, default=0.72, show_default=True)
@click.option("--ensemble", type=click.Choice(["nve", "nvt", "npt"]), default="nve",
              show_default=True)  # fmt: skip
@click.option("--steps", type=int, default=10_000, show_default=True)
@click.option("--pressure", type=float, default=None, help="Target pressure (npt).")
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
@debug_option
def md(n, density, temperature, ensemble, steps, pressure, precision, as_json) -> None:
    """A Lennard-Jones fluid (times the real run's first chunks)."""
    import jaxpro.advisor

    advice = jaxpro.advisor.plan("md", n=n, density=density, temperature=temperature,
                                 ensemble=ensemble, steps=steps, pressure=pressure,
                                 precision=precision)  # fmt: skip
    _show(advice, as_json)


@plan.command("cfd")
@click.option("--flow", default="decaying_turbulence", show_default=True,
              help="taylor_green, decaying_turbulence, kolmogorov, lid_driven_cavity, channel.")  # fmt: skip
@click.option("--grid", type=int, default=256, show_default=True, help="Cells a side.")
@click.option("--re", "reynolds", type=float, default=None, help="Reynolds number.")
@click.option("--t-end", type=float, default=None, help="Flow time (default: the flow's).")
@click.option("--method", type=click.Choice(["auto", "spectral", "finite_volume"]),
              default="auto", show_default=True)  # fmt: skip
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
@debug_option
def cfd(flow, grid, reynolds, t_end, method, precision, as_json) -> None:
    """A 2-D flow simulation (times one record of the real run)."""
    import jaxpro.advisor

    advice = jaxpro.advisor.plan("cfd", flow=flow, grid=grid, reynolds=reynolds, t_end=t_end,
                                 method=method, precision=precision)  # fmt: skip
    _show(advice, as_json)
