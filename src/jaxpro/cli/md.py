"""``jaxpro md``: molecular dynamics from the command line.

Example::

    jaxpro md lj --n 4000 --density 0.8442 --temperature 0.72 --steps 10000 \\
        --ensemble nvt --out lj/

prints the run's summary (energies, temperature, pressure, checks, plan), or
JSON with ``--json``; ``--out DIR`` saves ``result.json``, ``trajectory.png``
(energies, temperature, pressure) and ``rdf.png`` with ``rdf.json``.
``--checkpoint DIR`` saves the state as it runs; the same command again
resumes from the last checkpoint. ``--strict`` exits with code 1 when a
validation check fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from jaxpro.cli._app import debug_option, info

__all__ = ["md"]


@click.group("md")
def md() -> None:
    """Molecular dynamics on JAX-MD (validated: energy drift, momentum, temperature)."""


@md.command("lj")
@click.option("--n", "n", type=int, default=500, show_default=True, help="Particle count.")
@click.option("--density", type=float, default=0.8442, show_default=True)
@click.option("--temperature", type=float, default=0.72, show_default=True)
@click.option("--cutoff", type=float, default=2.5, show_default=True)
@click.option(
    "--form",
    type=click.Choice(["truncated", "truncated_shifted", "switched"]),
    default="truncated_shifted",
    show_default=True,
    help="How the potential ends at the cutoff.",
)
@click.option("--tail", is_flag=True, help="Add long-range (tail) corrections.")
@click.option("--steps", type=int, default=10_000, show_default=True)
@click.option("--ensemble", type=click.Choice(["nve", "nvt", "npt"]), default="nve",
              show_default=True)  # fmt: skip
@click.option("--pressure", type=float, help="Target pressure (npt; reduced units).")
@click.option("--dt", default="auto", show_default=True, help="Time step, or auto.")
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint", type=click.Path(file_okay=False),
              help="Save the state here as it runs; rerunning resumes from it.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), help="Save results and figures here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--strict", is_flag=True, help="Exit with code 1 when a check fails.")
@debug_option
def lj(
    n: int,
    density: float,
    temperature: float,
    cutoff: float,
    form: str,
    tail: bool,
    steps: int,
    ensemble: str,
    pressure: float | None,
    dt: str,
    precision: str,
    seed: int,
    checkpoint: str | None,
    out: str | None,
    as_json: bool,
    strict: bool,
) -> None:
    """Simulate a Lennard-Jones fluid (reduced units) from an FCC or cubic lattice."""
    import warnings

    import jaxpro.md
    from jaxpro.errors import InputError, SimulationWarning

    if dt == "auto":
        step = "auto"
    else:
        try:
            step = float(dt)
        except ValueError:
            raise InputError("must be a number or auto", argument="--dt", received=dt) from None
    system = jaxpro.md.lennard_jones_fluid(
        n, density, temperature, cutoff=cutoff, form=form, long_range_correction=tail, seed=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SimulationWarning)  # the summary lists the checks
        run = jaxpro.md.simulate(system, ensemble, steps, dt=step, precision=precision,
                                 progress=not as_json, checkpoint_dir=checkpoint,
                                 pressure=pressure)  # fmt: skip
    rdf = run.rdf()
    if as_json:
        payload = run.to_dict()
        payload.pop("positions", None)
        payload["rdf"] = rdf.to_dict()
        click.echo(json.dumps(payload, indent=2))
    else:
        peak, height = rdf.first_peak()
        click.echo(run.summary())
        click.echo(f"g(r): first peak at r = {peak:.3f}, height {height:.3f}")
    if out is not None:
        directory = run.save(out)
        Path(directory, "rdf.json").write_text(json.dumps(rdf.to_dict()) + "\n")
        rdf.plot().savefig(Path(directory, "rdf.png"), dpi=120, bbox_inches="tight")
        info(f"saved: {directory}", json_output=as_json)
    if strict and not run.ok:
        raise SystemExit(1)
