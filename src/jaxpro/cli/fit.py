"""``jaxpro fit``: fit a model expression to columns of a data file.

Example::

    jaxpro fit decay.csv --model "A*exp(-t/tau) + B" --x t --y counts --sigma sigma \\
        --p0 A=1000,tau=30,B=50 --bounds tau=0:inf --out results/

The variables in the expression are the column names given to ``--x``; every
other name in it is a parameter.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

from jaxpro.cli._app import debug_option, info
from jaxpro.errors import BackendStartedError, InputError

__all__ = ["fit", "parse_bounds", "parse_p0", "run_fit", "split_names"]

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
METHODS = ("auto", "lm", "trf")
# Files larger than this are streamed (read in chunks each pass) by default.
STREAM_BYTES = 1 << 30
_INFINITE = {"": math.inf, "inf": math.inf, "+inf": math.inf, "infinity": math.inf}


def split_names(values: Iterable[str], option: str) -> tuple[str, ...]:
    """Column names from an option given several times and/or comma-separated."""
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise InputError(
                    "expected column names separated by commas", argument=option, received=value
                )
            names.append(name)
    if len(set(names)) != len(names):
        raise InputError(
            "a column is named more than once", argument=option, received=",".join(names)
        )
    return tuple(names)


def _items(texts: Iterable[str], option: str, form: str) -> list[tuple[str, str, str]]:
    """``NAME=VALUE`` items from comma-separated texts: (name, value text, item text)."""
    items = []
    for text in texts:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name:
                raise InputError(
                    f"expected {form} items separated by commas", argument=option, received=item
                )
            items.append((name, value.strip(), item))
    return items


def _check_name(name: str, parameters: Sequence[str], option: str, seen: set[str]) -> None:
    if name not in parameters:
        raise InputError(
            f"unknown parameter {name!r}; the model's parameters are {', '.join(parameters)}",
            argument=option,
        )
    if name in seen:
        raise InputError(f"parameter {name!r} is given more than once", argument=option)
    seen.add(name)


def parse_p0(texts: Iterable[str], parameters: Sequence[str]) -> dict[str, float]:
    """``--p0 a=1,b=0.5`` -> ``{"a": 1.0, "b": 0.5}``, checked against the model's parameters."""
    p0: dict[str, float] = {}
    seen: set[str] = set()
    for name, value, item in _items(texts, "--p0", "NAME=VALUE"):
        _check_name(name, parameters, "--p0", seen)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InputError(
                f"the starting value of {name!r} must be a finite number",
                argument="--p0",
                received=item,
            )
        p0[name] = number
    return p0


def _bound(text: str, name: str, item: str, lower: bool) -> float:
    key = text.strip().lower()
    if key in _INFINITE:
        return -math.inf if lower and key == "" else _INFINITE[key]
    if key == "-inf" or key == "-infinity":
        return -math.inf
    try:
        number = float(key)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        side = "lower" if lower else "upper"
        raise InputError(
            f"the {side} bound of {name!r} must be a number, inf, -inf or empty",
            argument="--bounds",
            received=item,
        )
    return number


def parse_bounds(texts: Iterable[str], parameters: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--bounds b=0:inf,c=:5`` -> ``{"b": (0, inf), "c": (-inf, 5)}``; empty means unbounded."""
    bounds: dict[str, tuple[float, float]] = {}
    seen: set[str] = set()
    for name, value, item in _items(texts, "--bounds", "NAME=LOW:HIGH"):
        _check_name(name, parameters, "--bounds", seen)
        low_text, sep, high_text = value.partition(":")
        if not sep or ":" in high_text:
            raise InputError(
                f"expected NAME=LOW:HIGH for {name!r} (LOW or HIGH may be inf, -inf or empty)",
                argument="--bounds",
                received=item,
            )
        low = _bound(low_text, name, item, lower=True)
        high = _bound(high_text, name, item, lower=False)
        if not low < high:
            raise InputError(
                f"the lower bound of {name!r} must be below its upper bound",
                argument="--bounds",
                received=item,
            )
        bounds[name] = (low, high)
    return bounds


def _default_start(low: float, high: float) -> float:
    """1, moved strictly inside (low, high) when it lies outside."""
    if low < 1.0 < high:
        return 1.0
    if math.isfinite(low) and math.isfinite(high):
        return 0.5 * (low + high)
    return low + 1.0 if math.isfinite(low) else high - 1.0


def run_fit(
    data,
    *,
    model: str,
    x: Sequence[str],
    y: str,
    sigma: str | None = None,
    p0: Sequence[str] = (),
    bounds: Sequence[str] = (),
    loss: str = "linear",
    f_scale: float = 1.0,
    method: str | None = None,
    absolute_sigma: bool = False,
    data_argument: str = "DATA",
    stream: bool | None = None,
):
    """Read the columns, check the options against the model, and call :func:`jaxpro.fit`.

    Args:
        stream: read the file in chunks, pass after pass, instead of into memory
            (None: when a CSV/TSV/Parquet file is larger than ``STREAM_BYTES``).

    Returns:
        The :class:`~jaxpro.fit.FitResult`.
    """
    import jaxpro
    from jaxpro.expr import compile as compile_expression
    from jaxpro.io import read_table

    variables = split_names(x, "--x")
    try:
        parameters = compile_expression(model, variables=variables, argument="--model").parameters
    except InputError as exc:
        if exc.argument != "variables":
            raise
        raise InputError(
            "columns used as variables must be valid names in --model (identifiers, not"
            " starting with '_', not a function or constant name such as exp or pi)",
            argument="--x",
            received=exc.received,
        ) from None
    if not parameters:
        raise InputError("has no parameters to fit", argument="--model", received=model)
    for option, column in (("--y", y), ("--sigma", sigma)):
        if column is not None and column in variables:
            raise InputError(f"column {column!r} is also an --x variable", argument=option)
    bounds_by_name = parse_bounds(bounds, parameters)
    start = parse_p0(p0, parameters)
    # Parameters without --p0 start at 1 (inside their bounds).
    start = {
        name: start[name]
        if name in start
        else _default_start(*bounds_by_name.get(name, (-math.inf, math.inf)))
        for name in parameters
    }
    options = {
        "p0": start,
        "bounds": bounds_by_name or None,
        "loss": loss,
        "f_scale": f_scale,
        "method": None if method in (None, "auto") else method,
        "variables": variables,
        "absolute_sigma": absolute_sigma,
    }
    path = Path(data)
    streamable = path.suffix.lower() in (".csv", ".tsv", ".tab", ".parquet", ".pq")
    if stream is None:
        stream = streamable and path.is_file() and path.stat().st_size > STREAM_BYTES
    if stream:
        if not streamable:
            raise InputError("only csv, tsv and parquet files can be streamed", argument="--stream")
        source = jaxpro.io.stream(path, x=variables, y=y, sigma=sigma)
        return jaxpro.fit(model, source, **options)
    columns = list(dict.fromkeys([*variables, y, *([sigma] if sigma else [])]))
    table = read_table(data, columns=columns, argument=data_argument)
    if len(variables) == 1:
        xdata = table[variables[0]]
    else:
        xdata = {name: table[name] for name in variables}
    return jaxpro.fit(model, xdata, table[y], sigma=table[sigma] if sigma else None, **options)


def report(result, *, out: str | None, as_json: bool, plot: bool) -> None:
    """Print the summary (or JSON) and save ``result.json`` and figures into ``out``."""
    click.echo(result.to_json() if as_json else result.summary())
    if out is not None:
        directory = result.save(out, figures=plot)
        saved = [directory / "result.json"]
        if plot:
            saved.append(directory / f"{result.kind}.png")
        info("saved: " + ", ".join(str(p) for p in saved), json_output=as_json)


@click.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "-m", required=True, help='Model expression, e.g. "a*exp(-b*x) + c".')
@click.option(
    "--x",
    "x",
    required=True,
    multiple=True,
    metavar="COL[,COL...]",
    help="Column(s) of the independent variable(s); repeat or separate by commas (--x t,T).",
)
@click.option("--y", "y", required=True, metavar="COL", help="Column of the observations.")
@click.option("--sigma", metavar="COL", help="Column of the standard deviations of y.")
@click.option(
    "--absolute-sigma",
    is_flag=True,
    help="Sigma is absolute: do not rescale the covariance by the reduced chi2.",
)
@click.option(
    "--p0",
    multiple=True,
    metavar="NAME=VALUE,...",
    help="Starting values, e.g. a=1,b=0.1 (parameters not given start at 1).",
)
@click.option(
    "--bounds",
    multiple=True,
    metavar="NAME=LOW:HIGH,...",
    help="Bounds, e.g. b=0:inf,c=-1: (inf, -inf or empty mean unbounded).",
)
@click.option("--loss", type=click.Choice(LOSSES), default="linear", show_default=True)
@click.option(
    "--f-scale", type=float, default=1.0, show_default=True, help="Residual scale of robust losses."
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="Solver; auto lets jaxpro choose and say why.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Save result.json and fit.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--no-plot", is_flag=True, help="With --out, do not draw fit.png.")
@click.option(
    "--stream/--no-stream",
    default=None,
    help="Read the file in chunks on every pass instead of into memory "
    "(default: for csv/tsv/parquet files over 1 GiB).",
)
@debug_option
def fit(
    data: Path,
    model: str,
    x: tuple[str, ...],
    y: str,
    sigma: str | None,
    absolute_sigma: bool,
    p0: tuple[str, ...],
    bounds: tuple[str, ...],
    loss: str,
    f_scale: float,
    method: str,
    out: str | None,
    as_json: bool,
    no_plot: bool,
    stream: bool | None,
) -> None:
    """Fit a model expression to columns of DATA (csv, tsv, txt, parquet, npy, npz)."""
    import jaxpro

    # The command owns its process: one JAX CPU device per core lets long data
    # split their passes over every core (a library call never does this).
    # Invoked in-process after JAX started (tests, notebooks), it keeps what is there.
    with contextlib.suppress(BackendStartedError):
        jaxpro.use_cpu_cores()
    result = run_fit(
        data,
        model=model,
        x=x,
        y=y,
        sigma=sigma,
        p0=p0,
        bounds=bounds,
        loss=loss,
        f_scale=f_scale,
        method=method,
        absolute_sigma=absolute_sigma,
        stream=stream,
    )
    report(result, out=out, as_json=as_json, plot=not no_plot)
