"""``jaxpro bayes``: a regression formula fitted to a data file by Bayesian inference.

Example::

    jaxpro bayes radon.csv --formula "log_radon ~ floor + (1 + floor | county)" --out radon/
    jaxpro bayes counts.parquet --formula "y ~ x + offset(log(exposure)) + (1 | site)" \\
        --family poisson --json

Prints the coefficient table (means, sds, credible intervals, ESS, R-hat), the
checks and the plan; ``--out DIR`` also writes result.json, posterior.nc
(ArviZ) and trace, rank and posterior figures.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from jaxpro.cli._app import debug_option, info
from jaxpro.errors import BackendStartedError, InputError

__all__ = ["bayes"]

FAMILY_NAMES = (
    "gaussian",
    "student_t",
    "bernoulli",
    "binomial",
    "poisson",
    "negative_binomial",
    "gamma",
)
METHOD_NAMES = ("auto", "nuts", "hmcecs", "svi", "consensus")


@click.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--formula", "-f", required=True, help='Model formula, e.g. "y ~ x + (1 + x | group)".'
)
@click.option("--family", type=click.Choice(FAMILY_NAMES), default="gaussian", show_default=True)
@click.option(
    "--method",
    type=click.Choice(METHOD_NAMES),
    default="auto",
    show_default=True,
    help="Inference method; auto chooses by the number of rows and says why.",
)
@click.option("--chains", type=int, default=4, show_default=True, help="MCMC chains.")
@click.option("--draws", type=int, default=1000, show_default=True, help="Draws per chain.")
@click.option("--warmup", type=int, default=1000, show_default=True, help="Warm-up per chain.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--level", type=float, default=0.9, show_default=True, help="Credible interval probability."
)
@click.option(
    "--flat-priors", is_flag=True, help="Flat priors on the coefficients and family parameters."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Save result.json, posterior.nc and figures here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-plot", is_flag=True, help="With --out, do not draw the figures.")
@click.option(
    "--strict", is_flag=True, help="Exit with code 1 when the posterior fails its checks."
)
@debug_option
def bayes(
    data: Path,
    formula: str,
    family: str,
    method: str,
    chains: int,
    draws: int,
    warmup: int,
    seed: int,
    level: float,
    flat_priors: bool,
    out: str | None,
    as_json: bool,
    no_plot: bool,
    strict: bool,
) -> None:
    """Fit FORMULA to the columns of DATA (csv, tsv, txt, parquet, npz) by Bayesian inference."""
    import warnings

    import jaxpro
    from jaxpro.io import read_frame

    if not 0 < level < 1:
        raise InputError("must be in (0, 1)", argument="--level", received=level)
    # the command owns its process: one CPU device per chain runs the chains in parallel
    with contextlib.suppress(BackendStartedError):
        jaxpro.use_cpu_cores(max(chains, 1))
    frame = read_frame(data, argument="DATA")
    import jaxpro.bayes
    from jaxpro.bayes._sample import SamplingWarning

    with warnings.catch_warnings():
        # the report says the same, in its checks section
        warnings.simplefilter("ignore", SamplingWarning)
        posterior = jaxpro.bayes.fit(
            formula,
            frame,
            family=family,
            priors="flat" if flat_priors else None,
            method=method,
            num_chains=chains,
            num_samples=draws,
            num_warmup=warmup,
            seed=seed,
            level=level,
            progress=not as_json,
        )
    click.echo(posterior.to_json() if as_json else posterior.summary())
    if out is not None:
        directory = posterior.save(out, figures=not no_plot)
        info(f"saved: {directory}", json_output=as_json)
    if strict and not posterior.ok:
        raise SystemExit(1)
