"""``jaxpro lint``: JAX anti-patterns in Python files, found statically (nothing is run).

Examples::

    jaxpro lint src/                       # file:line:col: JX101 message
    jaxpro lint model.py --format json     # [{"path", "line", "col", "code", "message", "fix"}]
    jaxpro lint src/ --select JX103,JX104 --ignore JX110
    jaxpro lint --rules                    # every rule: code, what it finds, the fix

Exit codes: 0 nothing found, 1 findings, 2 a usage error, a missing path or a
file that does not parse (one line on stderr). ``# noqa: JX101`` on a line
silences that rule there (``# noqa`` alone, every rule).
"""

from __future__ import annotations

import json

import click

from jaxpro.cli._app import debug_option

__all__ = ["lint"]

EXIT_FINDINGS = 1


def _codes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


@click.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one finding per line (file:line:col: CODE message); json: a list of objects.",
)
@click.option("--select", help="Only these rule codes or prefixes, comma-separated (JX103,JX2).")
@click.option("--ignore", help="Leave out these rule codes or prefixes, comma-separated.")
@click.option("--rules", "show_rules", is_flag=True, help="List every rule with its fix and exit.")
@debug_option
def lint(
    paths: tuple[str, ...],
    output_format: str,
    select: str | None,
    ignore: str | None,
    show_rules: bool,
) -> int:
    """Find JAX anti-patterns in PATHS (Python files, or folders searched for *.py).

    Exit code 0 when nothing is found, 1 when something is, 2 on an error.
    """
    from jaxpro.core._lint_api import lint as run_lint
    from jaxpro.core._lint_api import selected_codes
    from jaxpro.core._lint_rules import RULES

    codes = selected_codes(_codes(select), _codes(ignore), names=("--select", "--ignore"))
    if show_rules:
        if output_format == "json":
            click.echo(json.dumps([RULES[c].to_dict() for c in codes], indent=2))
        else:
            for code in codes:
                rule = RULES[code]
                click.echo(f"{code}  {rule.summary}\n       fix: {rule.fix}")
        return 0
    if not paths:
        raise click.UsageError("give at least one file or folder to lint (or --rules)")
    report = run_lint(list(paths), select=codes)
    if output_format == "json":
        click.echo(json.dumps([f.to_dict() for f in report.findings], indent=2))
    else:
        click.echo(report.summary())
    return 0 if report.ok else EXIT_FINDINGS
