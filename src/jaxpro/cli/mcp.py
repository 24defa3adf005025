"""``jaxpro mcp --root DIR``: the Model Context Protocol server over stdio.

An MCP client (an AI agent's host) starts it as a subprocess and calls its
tools: ``fit_curve``, ``fit_many``, ``bayes_fit``, ``solve_ode``,
``simulate_md``, ``simulate_flow``, ``lint_code`` and ``plan``. Data files are
read, and results and figures written, only under DIR; each computing call runs
in a child process bounded by ``--timeout`` seconds. Needs ``pip install
jaxpro[mcp]``.
"""

from __future__ import annotations

import click

from jaxpro.cli._app import debug_option

__all__ = ["mcp"]


@click.command("mcp")
@click.option("--root", required=True, type=click.Path(file_okay=False, exists=True),
              help="The only folder the tools read from and write to.")  # fmt: skip
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Wall-time bound of every computing call, in seconds.")  # fmt: skip
@debug_option
def mcp(root: str, timeout: float) -> None:
    """Serve jaxpro's tools to an MCP client over stdin/stdout."""
    from jaxpro.errors import InputError

    try:
        import mcp as _sdk  # noqa: F401
    except ImportError:
        raise InputError("needs the MCP SDK: pip install 'jaxpro[mcp]'", argument="mcp") from None
    if not timeout > 0:
        raise InputError("must be positive", argument="--timeout", received=timeout)
    from jaxpro.advisor._mcp import build_server

    build_server(root, timeout).run()
