"""``jaxpro mcp --root DIR``: jaxpro's domains as Model Context Protocol tools over stdio.

Built on the official ``mcp`` SDK (``pip install jaxpro[mcp]``). What keeps it
safe to hand to an agent:

- **Schemas with limits.** Every tool's arguments are typed; the SDK publishes
  them as JSON schema and rejects calls outside them (array lengths, numeric
  ranges, string lengths) before any work starts.
- **No code.** Expressions and equations go through jaxpro's safe expression
  parser (a whitelisted AST, never ``eval``); code is refused with the parser's
  message. ``check_function`` (which runs code) is not exposed; ``lint_code``
  parses source text and never runs it.
- **Files only under the root.** Data paths are resolved (symlinks and ``..``
  followed) before the check that they lie under ``--root``; results and
  figures are written under ``ROOT/jaxpro-mcp/``.
- **Bounded time.** Each computing tool runs in a child process; past its time
  bound (``--timeout``, or a smaller ``time_limit`` of the call) the child is
  killed and the call answers with an error result. The server keeps serving.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from jaxpro.cli.bayes import FAMILY_NAMES

__all__ = ["build_server"]

MAX_POINTS = 1_000_000  # numbers in an inline array
MAX_CURVES = 2_000
MAX_TEXT = 1_000  # characters of an expression or equation system
MAX_SOURCE = 200_000  # characters of source code to lint
_counter = itertools.count(1)
# plan's facts that size what its calibration runs (the rest only shape the decision)
PLAN_LIMITS = {("fit", "n"): 1e9, ("bayes", "n"): 1e7, ("md", "n"): 100_000,
               ("md", "steps"): 1e7, ("cfd", "grid"): 512, ("ode", "n"): 10_000,
               ("ode", "batch"): 100_000, ("ode", "points"): 100_000}  # fmt: skip

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=False)]
TimeLimit = Annotated[float | None, Field(default=None, gt=0, le=3600)]


class _Limits:
    def __init__(self, root: Path, timeout: float):
        self.root = root
        self.timeout = timeout


def inside(root: Path, path: str) -> Path:
    """``path`` (relative to ``root`` or absolute) if it resolves under ``root``.

    Raises:
        ToolError: it resolves outside (through ``..`` or a symlink) or does not exist.
    """
    from mcp.server.mcpserver.exceptions import ToolError

    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ToolError(f"data: {path!r} resolves outside the root {str(root)!r}; refused")
    if not resolved.is_file():
        raise ToolError(f"data: {path!r} is not a file under the root")
    return resolved


def _check_expression(text: str, variables: tuple[str, ...], argument: str) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from jaxpro import expr
    from jaxpro.errors import JaxproError

    try:
        expr.compile(text, variables=variables, argument=argument)
    except JaxproError as error:
        raise ToolError(str(error)) from None


def _run(limits: _Limits, name: str, kwargs: dict, time_limit: float | None) -> dict:
    """Run job ``name`` in a child process; kill it past the time bound."""
    from mcp.server.mcpserver.exceptions import ToolError

    from jaxpro.advisor._mcp_jobs import run_job

    bound = min(limits.timeout, time_limit or limits.timeout)
    out = f"jaxpro-mcp/{name}-{int(time.time())}-{next(_counter)}"
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited JAX
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=run_job, args=(name, {"root": str(limits.root), "out": out,
                                                          **kwargs}, send), daemon=True)  # fmt: skip
    child.start()
    send.close()
    try:
        if not receive.poll(bound):
            raise ToolError(f"{name}: exceeded its time bound of {bound:g} s and was cancelled")
        status, payload = receive.recv()
    except EOFError:
        raise ToolError(f"{name}: the worker process ended without a result") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if status != "ok":
        raise ToolError(f"{name}: {payload}")
    return payload


def build_server(root: str | Path, timeout: float = 300.0):
    """The MCP server (an ``mcp`` ``MCPServer``) serving ``root`` with calls bounded by ``timeout`` s."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    limits = _Limits(Path(root).resolve(), float(timeout))
    app = MCPServer(
        "jaxpro",
        instructions="Scientific computing with expert defaults: curve fits, Bayesian"
        " regression, ODEs, molecular dynamics, 2-D flows, and the plan jaxpro would take.",
    )

    @app.tool()
    def fit_curve(
        expression: Annotated[str, Field(max_length=MAX_TEXT, description="e.g. a*exp(-b*x)+c")],
        x: Annotated[list[Number] | None, Field(max_length=MAX_POINTS)] = None,
        y: Annotated[list[Number] | None, Field(max_length=MAX_POINTS)] = None,
        data: Annotated[
            str | None, Field(description="a CSV/TSV/Parquet file under the root")
        ] = None,
        x_column: str | None = None,
        y_column: str | None = None,
        sigma_column: str | None = None,
        p0: dict[str, Number] | None = None,
        bounds: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]] | None = None,
        loss: Literal["linear", "soft_l1", "huber", "cauchy", "arctan"] = "linear",
        time_limit: TimeLimit = None,
    ) -> dict:
        """Fit a model expression to data (inline arrays, or columns of a file under the root)."""
        variable = x_column or "x"
        _check_expression(expression, (variable,), "expression")
        sigma = None
        if data is not None:
            from jaxpro.io import read_frame

            frame = read_frame(inside(limits.root, data))
            for column in (x_column, y_column, sigma_column):
                if column is not None and column not in frame:
                    raise ToolError(f"data: no column {column!r} (it has {list(frame.columns)})")
            if x_column is None or y_column is None:
                raise ToolError("x_column and y_column: needed with data")
            if len(frame) > MAX_POINTS:
                raise ToolError(f"data: {len(frame)} rows; the limit is {MAX_POINTS}")
            x, y = frame[x_column].tolist(), frame[y_column].tolist()
            sigma = frame[sigma_column].tolist() if sigma_column else None
        if x is None or y is None or len(x) != len(y):
            raise ToolError("x and y: give both, of the same length (or data with columns)")
        names_bounds = None
        if bounds:
            from jaxpro import expr

            names = expr.compile(expression, variables=(variable,)).parameters
            unknown = [k for k in bounds if k not in names]
            if unknown:
                raise ToolError(f"bounds: {unknown} are not parameters of the expression")
            lower = [bounds[n][0] if n in bounds else float("-inf") for n in names]
            upper = [bounds[n][1] if n in bounds else float("inf") for n in names]
            names_bounds = (lower, upper)
        return _run(limits, "fit_curve", {"expression": expression, "x": x, "y": y,
                                          "sigma": sigma, "p0": p0, "bounds": names_bounds,
                                          "loss": loss, "variable": variable}, time_limit)  # fmt: skip

    @app.tool()
    def fit_many(
        expression: Annotated[str, Field(max_length=MAX_TEXT)],
        x: Annotated[list[Number], Field(min_length=2, max_length=10_000)],
        curves: Annotated[
            list[Annotated[list[Number], Field(max_length=10_000)]],
            Field(min_length=1, max_length=MAX_CURVES),
        ],
        p0: dict[str, Number] | None = None,
        loss: Literal["linear", "soft_l1", "huber", "cauchy", "arctan"] = "linear",
        time_limit: TimeLimit = None,
    ) -> dict:
        """Fit one expression to many curves sampled at the same x values."""
        _check_expression(expression, ("x",), "expression")
        if any(len(c) != len(x) for c in curves):
            raise ToolError("curves: every curve needs one value per x")
        return _run(limits, "fit_many", {"expression": expression, "x": x, "y": curves,
                                         "p0": p0, "bounds": None, "loss": loss}, time_limit)  # fmt: skip

    @app.tool()
    def bayes_fit(
        data: Annotated[str, Field(description="a CSV/TSV/Parquet file under the root")],
        formula: Annotated[str, Field(max_length=MAX_TEXT, description="e.g. y ~ x + (1 | g)")],
        family: Literal[FAMILY_NAMES] = "gaussian",  # the CLI's list: one source
        chains: Annotated[int, Field(ge=1, le=8)] = 4,
        draws: Annotated[int, Field(ge=100, le=5_000)] = 1000,
        time_limit: TimeLimit = None,
    ) -> dict:
        """A regression formula fitted by Bayesian inference, checked by the diagnostic gate."""
        path = inside(limits.root, data)
        return _run(limits, "bayes_fit", {"data": str(path), "formula": formula,
                                          "family": family, "chains": chains,
                                          "draws": draws}, time_limit)  # fmt: skip

    @app.tool()
    def solve_ode(
        equations: Annotated[
            str, Field(max_length=MAX_TEXT, description="e.g. dx = a*x - b*x*y; dy = -c*y + d*x*y")
        ],
        y0: dict[str, Number],
        t_end: Positive,
        params: dict[str, Number] | None = None,
        points: Annotated[int, Field(ge=2, le=100_000)] = 201,
        method: Literal["auto", "tsit5", "dopri5", "dopri8", "kvaerno5"] = "auto",
        time_limit: TimeLimit = None,
    ) -> dict:
        """Solve an ODE system written as equations (the solver chosen for you)."""
        from jaxpro.cli.ode import build_rhs
        from jaxpro.errors import JaxproError

        try:
            build_rhs(equations, params or {})
        except JaxproError as error:
            raise ToolError(str(error)) from None
        return _run(limits, "solve_ode", {"equations": equations, "params": params or {},
                                          "y0": y0, "t_end": t_end, "points": points,
                                          "method": method}, time_limit)  # fmt: skip

    @app.tool()
    def simulate_md(
        n: Annotated[int, Field(ge=32, le=100_000)] = 500,
        density: Annotated[float, Field(gt=0, le=1.5)] = 0.8442,
        temperature: Annotated[float, Field(gt=0, le=10)] = 0.72,
        ensemble: Literal["nve", "nvt"] = "nve",
        steps: Annotated[int, Field(ge=10, le=1_000_000)] = 1000,
        time_limit: TimeLimit = None,
    ) -> dict:
        """Molecular dynamics of a Lennard-Jones fluid (reduced units), validated."""
        return _run(limits, "simulate_md", {"n": n, "density": density,
                                            "temperature": temperature, "ensemble": ensemble,
                                            "steps": steps}, time_limit)  # fmt: skip

    @app.tool()
    def simulate_flow(
        flow: Literal[
            "taylor_green", "decaying_turbulence", "kolmogorov", "lid_driven_cavity", "channel"
        ] = "taylor_green",
        grid: Annotated[int, Field(ge=8, le=512)] = 64,
        reynolds: Annotated[float | None, Field(gt=0, le=1e5)] = None,
        t_end: Annotated[float | None, Field(gt=0, le=1e4)] = None,
        time_limit: TimeLimit = None,
    ) -> dict:
        """A 2-D incompressible flow (periodic on JAX-CFD; cavity and channel with walls)."""
        return _run(limits, "simulate_flow", {"flow": flow, "grid": grid, "reynolds": reynolds,
                                              "t_end": t_end}, time_limit)  # fmt: skip

    @app.tool()
    def lint_code(
        source: Annotated[str, Field(max_length=MAX_SOURCE)],
        select: list[str] | None = None,
    ) -> dict:
        """jaxpro lint on Python source text (parsed, never run): JAX pitfalls with fixes."""
        from jaxpro.core._lint_api import lint_source
        from jaxpro.errors import JaxproError

        try:
            findings = lint_source(source, "<source>", select=select)
        except JaxproError as error:
            raise ToolError(str(error)) from None
        return {"findings": [f.to_dict() for f in findings], "count": len(findings)}

    @app.tool()
    def plan(
        domain: Literal["fit", "bayes", "ode", "md", "cfd"],
        facts: dict[str, Any] | None = None,
        time_limit: TimeLimit = None,
    ) -> dict:
        """The decision jaxpro would take (method, call, why, memory, time, validation)."""
        facts = facts or {}
        for key, value in facts.items():
            if not isinstance(value, str | int | float | bool | type(None)):
                raise ToolError(f"facts: {key} must be a number, text or true/false")
            limit = PLAN_LIMITS.get((domain, key))
            if limit is not None and isinstance(value, int | float) and value > limit:
                raise ToolError(f"facts: {key} = {value:g} is above this server's limit {limit:g}")
        return _run(limits, "plan", {"domain": domain, "facts": facts}, time_limit)

    return app
