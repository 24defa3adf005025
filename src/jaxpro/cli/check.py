"""``jaxpro check``: run a function the ways JAX will and report what goes wrong.

Examples::

    jaxpro check mymodel:loss --args 1000,3 --args 3,       # a (1000, 3) and a (3,) array
    jaxpro check path/to/sim.py:step --args state.npy --args 0.01 --static 1
    jaxpro check mymodel:loss --args 1000,3 --args 3, --json

``TARGET`` is ``module:function`` (imported from the current folder or the
installed packages) or ``file.py:function``; the function's module is
imported and so runs. Each ``--args`` is one positional argument: a number
(a Python float), a shape such as ``1000,3``, ``1000x3`` or ``3,`` (random normal
float64 values, seeded), ``()`` for a random scalar array, or a ``.npy`` file.
Exit codes: 0 when no check finds an error or a warning, 1 when one does, 2
on a usage error (a target that cannot be imported or called, a bad
``--args``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import click

from jaxpro.cli._app import debug_option
from jaxpro.errors import InputError

__all__ = ["check", "load_target", "parse_argument"]

_SHAPE = re.compile(r"^\(?\s*(\d+(\s*[,x]\s*\d+)*)?\s*,?\s*\)?$")


def load_target(target: str):
    """The function named by ``module:function`` or ``file.py:function``."""
    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        raise InputError("must be module:function or file.py:function", argument="TARGET",
                         received=target)  # fmt: skip
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise InputError("no such file", argument="TARGET", received=module_name)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except InputError:
        raise
    except Exception as error:  # the user's module failed to import
        raise InputError(
            f"cannot import {module_name!r}: {type(error).__name__}: {error}", argument="TARGET"
        ) from None
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InputError(f"{module_name!r} has no attribute {attribute!r}", argument="TARGET")
        value = getattr(value, part)
    if not callable(value):
        raise InputError(f"{attribute!r} is not callable", argument="TARGET", received=value)
    return value


def parse_argument(text: str, index: int, seed: int = 0):
    """One ``--args`` value: a number, a shape (random normal values) or a .npy file."""
    import numpy as np

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.endswith(".npy"):
        try:
            return np.load(text)
        except OSError as error:
            raise InputError(f"cannot read {text!r}: {error.strerror or error}",
                             argument="--args") from None  # fmt: skip
    match = _SHAPE.match(text)
    if match is None:
        raise InputError(
            "must be a number, a shape such as 1000,3 or a .npy file", argument="--args",
            received=text,
        )  # fmt: skip
    dims = tuple(int(d) for d in re.split(r"[,x]", match.group(1) or "") if d.strip())
    return np.random.default_rng(seed + index).normal(size=dims)


@click.command("check")
@click.argument("target")
@click.option("--args", "arguments", multiple=True, help="One positional argument (repeat).")
@click.option("--static", "static", multiple=True, type=int, help="Position of a static argument.")
@click.option("--no-grad", is_flag=True, help="Skip the gradient checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@debug_option
def check(
    target: str, arguments: tuple[str, ...], static: tuple[int, ...], no_grad: bool, as_json: bool
) -> int:
    """Run TARGET (module:function or file.py:function) on example arguments under jit, grad
    and checkify, and report what goes wrong with its fix.

    Exit code 0 when nothing is wrong, 1 when a check finds an error or a warning, 2 on an error.
    """
    from jaxpro.core import check as run_check

    function = load_target(target)
    values = [parse_argument(text, i) for i, text in enumerate(arguments)]
    report = run_check(function, *values, static_argnums=static, grad=not no_grad, name=target)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
    return 0 if report.ok else 1
