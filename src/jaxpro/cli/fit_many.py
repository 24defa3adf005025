"""``jaxpro fit-many``: fit one model to every row of a wide table (one curve per row).

Example::

    jaxpro fit-many spectra.parquet --model "a*exp(-b*x) + c" --id sample \\
        --p0 a=1,b=0.5,c=0 --out results/

Each row is a curve; every column but the ``--id`` column is one sample point,
its x value read from the column name (``0.0``, ``0.5``, ...) unless
``--x-values`` lists them. Empty cells are missing points. ``--out`` writes
``result.json``, ``fit_many.png`` and ``curves.csv`` (one row of parameters,
errors and diagnostics per curve).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import click
import numpy as np

from jaxpro.cli._app import debug_option, info
from jaxpro.cli.fit import LOSSES, METHODS, _default_start, parse_bounds, parse_p0
from jaxpro.errors import BackendStartedError, InputError

__all__ = ["fit_many", "run_fit_many"]


def _x_values(names, text: str | None) -> np.ndarray:
    if text is not None:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise InputError(
                "expected numbers separated by commas", argument="--x-values", received=text
            ) from None
        if len(values) != len(names):
            raise InputError(
                f"lists {len(values)} values for {len(names)} data columns",
                argument="--x-values",
                received=text,
            )
        return np.asarray(values)
    try:
        return np.asarray([float(name) for name in names])
    except ValueError:
        raise InputError(
            "the data column names are not numbers; give the x of each column with --x-values",
            argument="--x-values",
            received=list(names)[:5],
        ) from None


def run_fit_many(
    data,
    *,
    model: str,
    variable: str = "x",
    id_column: str | None = None,
    x_values: str | None = None,
    p0=(),
    bounds=(),
    loss: str = "linear",
    f_scale: float = 1.0,
    method: str | None = None,
    data_argument: str = "DATA",
):
    """Read the wide table and call :func:`jaxpro.fit_many`: ``(result, labels)``."""
    import jaxpro
    from jaxpro.expr import compile as compile_expression
    from jaxpro.io import column_names, read_labels, read_table

    parameters = compile_expression(model, variables=(variable,), argument="--model").parameters
    if not parameters:
        raise InputError("has no parameters to fit", argument="--model", received=model)
    names = [n for n in column_names(data, argument=data_argument) if n != id_column]
    if id_column is not None and len(names) == len(column_names(data, argument=data_argument)):
        raise InputError(f"column {id_column!r} not found", argument="--id")
    if not names:
        raise InputError("has no data columns", argument=data_argument)
    x = _x_values(names, x_values)
    table = read_table(data, columns=names, allow_nonfinite=True, argument=data_argument)
    Y = table.to_matrix(names)  # (curves, points)
    labels = (
        read_labels(data, id_column, argument=data_argument)
        if id_column
        else [str(i) for i in range(len(Y))]
    )
    bounds_by_name = parse_bounds(bounds, parameters)
    start = parse_p0(p0, parameters)
    start = {
        name: start.get(name, _default_start(*bounds_by_name.get(name, (-math.inf, math.inf))))
        for name in parameters
    }
    result = jaxpro.fit_many(
        model,
        x,
        Y,
        p0=start,
        bounds=bounds_by_name or None,
        loss=loss,
        f_scale=f_scale,
        method=None if method in (None, "auto") else method,
        variables=(variable,),
    )
    return result, labels


@click.command("fit-many")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "-m", required=True, help='Model expression, e.g. "a*exp(-b*x) + c".')
@click.option(
    "--x", "variable", default="x", show_default=True, help="Name of the variable in --model."
)
@click.option(
    "--id", "id_column", metavar="COL", help="Column naming each curve (not a data column)."
)
@click.option(
    "--x-values", metavar="X1,X2,...", help="x of each data column (default: the column names)."
)
@click.option(
    "--p0", multiple=True, metavar="NAME=VALUE,...", help="Starting values for every curve."
)
@click.option(
    "--bounds", multiple=True, metavar="NAME=LOW:HIGH,...", help="Bounds for every curve."
)
@click.option("--loss", type=click.Choice(LOSSES), default="linear", show_default=True)
@click.option(
    "--f-scale", type=float, default=1.0, show_default=True, help="Residual scale of robust losses."
)
@click.option("--method", type=click.Choice(METHODS), default="auto", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Save result.json, fit_many.png, curves.csv here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-plot", is_flag=True, help="With --out, do not draw fit_many.png.")
@debug_option
def fit_many(
    data,
    model,
    variable,
    id_column,
    x_values,
    p0,
    bounds,
    loss,
    f_scale,
    method,
    out,
    as_json,
    no_plot,
):
    """Fit MODEL to every row of DATA (a wide csv, tsv, txt or parquet table)."""
    import jaxpro

    with contextlib.suppress(BackendStartedError):  # see `jaxpro fit`
        jaxpro.use_cpu_cores()
    result, labels = run_fit_many(
        data,
        model=model,
        variable=variable,
        id_column=id_column,
        x_values=x_values,
        p0=p0,
        bounds=bounds,
        loss=loss,
        f_scale=f_scale,
        method=method,
    )
    click.echo(result.to_json() if as_json else result.summary())
    if out is not None:
        directory = result.save(out, figures=not no_plot)
        frame = result.to_frame()
        frame.insert(0, id_column or "curve", labels)
        frame.to_csv(directory / "curves.csv", index=False)
        saved = [directory / "result.json", directory / "curves.csv"]
        if not no_plot:
            saved.append(directory / "fit_many.png")
        info("saved: " + ", ".join(str(p) for p in saved), json_output=as_json)
