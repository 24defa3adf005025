"""``jaxpro cfd``: 2-D incompressible flows from the command line.

Examples::

    jaxpro cfd turbulence --grid 256 --t-end 10 --out turb/
    jaxpro cfd cavity --re 100 --out cavity/

print the run's summary (energy, enstrophy, divergence, checks, plan), or JSON
with ``--json``; ``--out DIR`` saves ``result.json`` and ``flow.png`` (the
final vorticity, energy and enstrophy against time, and the spectrum or the
centreline profiles). ``--strict`` exits with code 1 when a check fails.
"""

from __future__ import annotations

import json

import click

from jaxpro.cli._app import debug_option, info

__all__ = ["cfd"]

ANIMATION_FRAMES = 50


@click.group("cfd")
def cfd() -> None:
    """Fluid dynamics: 2-D Navier-Stokes (checked: incompressibility, CFL, references)."""


def _dt(value: str):
    from jaxpro.errors import InputError

    if value == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise InputError("must be a number or auto", argument="--dt", received=value) from None


def _report(result, out: str | None, as_json: bool, strict: bool, animate=None) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.summary())
    if out is not None:
        directory = result.save(out)
        info(f"saved: {directory}", json_output=as_json)
    if animate is not None:
        info(f"animation: {result.animate(animate)}", json_output=as_json)
    if strict and not result.ok:
        raise SystemExit(1)


def _run(**kwargs):
    import warnings

    import jaxpro.cfd
    from jaxpro.errors import SimulationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulationWarning)  # the summary lists the checks
        return jaxpro.cfd.simulate(**kwargs)


_common = [
    click.option("--dt", default="auto", show_default=True, help="Time step, or auto (CFL)."),
    click.option(
        "--precision",
        type=click.Choice(["float64", "float32"]),
        default="float64",
        show_default=True,
    ),
    click.option("--out", type=click.Path(file_okay=False), help="Save results and figures here."),
    click.option(
        "--animate",
        type=click.Path(dir_okay=False),
        help="Write the vorticity as an animation (.gif, or .mp4 with ffmpeg).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    click.option("--strict", is_flag=True, help="Exit with code 1 when a check fails."),
    debug_option,
]


def _with_common(command):
    for option in reversed(_common):
        command = option(command)
    return command


@cfd.command("turbulence")
@click.option("--grid", type=int, default=256, show_default=True, help="Cells a side.")
@click.option("--t-end", type=float, default=10.0, show_default=True, help="Flow time.")
@click.option("--re", "reynolds", type=float, default=1000.0, show_default=True,
              help="Reynolds number (top speed 1, length 1, domain 2 pi).")  # fmt: skip
@click.option("--forced", is_flag=True, help="Kolmogorov forcing sin(4y) with drag 0.1.")
@click.option("--method", type=click.Choice(["auto", "spectral", "finite_volume"]),
              default="auto", show_default=True)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@_with_common
def turbulence(grid, t_end, reynolds, forced, method, seed, dt, precision, out, animate, as_json,
               strict):  # fmt: skip
    """Decaying (or, with --forced, Kolmogorov) 2-D turbulence on a periodic square."""
    result = _run(
        flow="kolmogorov" if forced else "decaying_turbulence", grid=grid, t_end=t_end,
        reynolds=reynolds, method=method, seed=seed, dt=_dt(dt), precision=precision,
        progress=not as_json, frames=ANIMATION_FRAMES if animate else 0,
    )  # fmt: skip
    _report(result, out, as_json, strict, animate)


@cfd.command("cavity")
@click.option("--re", "reynolds", type=float, default=100.0, show_default=True,
              help="Reynolds number (lid speed 1, side 1).")  # fmt: skip
@click.option("--grid", type=int, default=64, show_default=True, help="Cells a side.")
@click.option("--t-end", type=float, default=None, help="Flow time (default: until steady).")
@_with_common
def cavity(reynolds, grid, t_end, dt, precision, out, animate, as_json, strict):
    """Lid-driven cavity (jaxpro's projection solver), to steady state by default."""
    result = _run(
        flow="lid_driven_cavity", grid=grid, reynolds=reynolds, t_end=t_end, dt=_dt(dt),
        precision=precision, progress=not as_json, frames=ANIMATION_FRAMES if animate else 0,
    )  # fmt: skip
    _report(result, out, as_json, strict, animate)
    if not as_json:
        heights = (0.1, 0.25, 0.5, 0.75, 0.9)
        values = ", ".join(f"{u:.4f}" for u in result.centerline_u(heights))
        click.echo(f"u on x = 0.5 at y = {heights}: {values}")
