"""The ``jaxpro`` command line: ``jaxpro --help``, ``doctor``, ``demo``, ``fit``, ``fit-many``,
``bayes``, ``lint``, ``check``, ``md``, ``ode``, ``cfd``, ``plan``, ``mcp``.

:func:`main` is the console script. Importing this package imports click but
not JAX: each command imports what it needs when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

# The command modules stay reachable as jaxpro.cli.doctor, .demo, .fit (the
# commands themselves are their attributes of the same name).
from jaxpro.cli import bayes, cfd, check, demo, doctor, fit, fit_many, lint, mcp, md, ode, plan
from jaxpro.cli._app import cli

__all__ = ["cli", "main"]

cli.add_command(doctor.doctor)
cli.add_command(demo.demo)
cli.add_command(fit.fit)
cli.add_command(fit_many.fit_many)
cli.add_command(bayes.bayes)
cli.add_command(lint.lint)
cli.add_command(check.check)
cli.add_command(md.md)
cli.add_command(ode.ode)
cli.add_command(cfd.cfd)
cli.add_command(plan.plan)
cli.add_command(mcp.mcp)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``); exits the process.

    Exit codes: 0 on success, 2 on any error (one line on stderr), 130 when interrupted.
    """
    cli.main(args=argv, prog_name="jaxpro")
