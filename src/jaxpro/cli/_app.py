"""The ``jaxpro`` command group: global options and the error policy.

Every failure ends the same way: exactly one line ``jaxpro: error: <message>``
on stderr and exit code 2, whether it is a usage error, a missing file, a
:class:`~jaxpro.errors.JaxproError` or a bug. ``--debug`` (anywhere on the
command line, or ``JAXPRO_DEBUG=1``) prints the full traceback instead.
Warnings are shown as one line each, ``jaxpro: warning: <message>``.

Nothing here imports JAX, so ``jaxpro --help`` and ``jaxpro --version`` stay
fast; commands import what they need inside their bodies.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

import jaxpro
from jaxpro.errors import JaxproError

__all__ = ["EXIT_ERROR", "JaxproGroup", "cli", "debug_option", "info", "one_line"]

#: Exit code of every failed command.
EXIT_ERROR = 2
_PROG = "jaxpro"
_DEBUG_ENV = "JAXPRO_DEBUG"
# click >= 8.2 raises this for a bare `jaxpro`; older versions print the help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def one_line(text: str) -> str:
    """``text`` on a single line: line breaks become "; ", runs of blank lines vanish."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _debug_requested(args: Sequence[str]) -> bool:
    env = os.environ.get(_DEBUG_ENV, "").strip().lower()
    return "--debug" in args or env not in ("", "0", "no", "false", "off")


def debug_option(function: Callable) -> Callable:
    """``--debug`` for the group and every command (read from the command line by the group)."""
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        help="Print the full traceback on an error instead of one line.",
    )(function)


def info(message: str, *, json_output: bool = False) -> None:
    """Progress and status lines: stdout normally, stderr when stdout carries JSON."""
    click.echo(message, err=json_output)


def _message(exc: BaseException) -> str:
    """The one-line text for an exception."""
    if isinstance(exc, click.UsageError):
        text = one_line(exc.format_message())
        command = exc.ctx.command_path if exc.ctx is not None else _PROG
        return f"{text} (see {command} --help)"
    if isinstance(exc, click.ClickException):
        return one_line(exc.format_message())
    if isinstance(exc, JaxproError):
        return one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        name = exc.filename if exc.filename is not None else one_line(str(exc))
        return f"file not found: {name}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        return f"{exc.strerror}{where}"
    detail = one_line(str(exc))
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"{text} (rerun with --debug for the traceback)"


def _fail(exc: BaseException, debug: bool) -> NoReturn:
    with contextlib.suppress(Exception):  # a closed or broken stdout must not hide the error
        sys.stdout.flush()
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    else:
        click.echo(f"{_PROG}: error: {_message(exc)}", err=True)
    sys.exit(EXIT_ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = one_line(str(message)) or category.__name__
    click.echo(f"{_PROG}: warning: {text}", err=True)


class JaxproGroup(click.Group):
    """A click group that applies jaxpro's error policy in :meth:`main`."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        prog_name = prog_name or _PROG
        if not standalone_mode:  # programmatic use: plain click behaviour
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        debug = _debug_requested(argv)
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
            try:
                value = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            except _NO_ARGS_IS_HELP as exc:
                # bare `jaxpro`: a request for help, not a mistake
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            except click.exceptions.Exit as exc:
                sys.exit(exc.exit_code)
            except click.Abort as exc:
                # Ctrl-C or end of input while a command ran
                if debug:
                    traceback.print_exception(exc, file=sys.stderr)
                else:
                    click.echo(f"{_PROG}: error: interrupted", err=True)
                sys.exit(130)
            except BrokenPipeError:
                # `jaxpro doctor | head`: the reader left; say nothing, and keep
                # the interpreter's final flush from complaining
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(0)
            except Exception as exc:
                _fail(exc, debug)
        sys.exit(value if isinstance(value, int) and not isinstance(value, bool) else 0)


@click.group(
    cls=JaxproGroup,
    name=_PROG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    no_args_is_help=True,
)
@click.version_option(
    jaxpro.__version__, "-V", "--version", prog_name=_PROG, message="%(prog)s %(version)s"
)
@debug_option
def cli() -> None:
    """jaxpro: scientific computing on JAX with the method chosen, the run compiled and the
    result validated.

    Every command prints a plain-text report; --json prints JSON instead and --out DIR
    saves result.json and figures. On an error: one line on stderr and exit code 2
    (--debug prints the traceback).
    """
