"""Safe model expressions: turn a formula string into a JAX function.

``compile("a*exp(-b*x) + c", variables=("x",))`` returns a
:class:`CompiledExpression` that unpacks as ``f, names``: ``f(x, a, b, c)``
takes the variables first, then the parameters in order of first appearance.

The grammar: ``+ - * / **``, unary ``-`` and ``+``, numbers, parentheses, the
constants ``pi`` and ``e``, the functions in :data:`FUNCTIONS`, and one
comparison (``< <= > >= == !=``) as the first argument of ``where``. Any other
name is a parameter. The text goes through :func:`ast.parse` and a whitelist of
node types, never ``eval``/``exec``, and nothing is computed before the call, so
``2**2**2**2**2`` cannot hang (it evaluates to ``inf``). Anything else, text over
:data:`MAX_LENGTH` characters, or nesting deeper than :data:`MAX_DEPTH` (brackets,
or operations: a sum of n terms is n deep) raises :class:`~jaxpro.errors.InputError`
naming the column at fault. Importing this module does not import JAX.
"""

from __future__ import annotations

import ast
import functools
import inspect
import keyword
import math
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jaxpro.errors import InputError

__all__ = ["CONSTANTS", "FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "CompiledExpression", "compile"]

MAX_LENGTH = 10_000
MAX_DEPTH = 100

#: The allowed functions and their number of positional arguments.
FUNCTIONS = dict.fromkeys(
    ["exp", "log", "log10", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "arcsin"], 1
)
FUNCTIONS |= dict.fromkeys(["arccos", "arctan", "sinh", "cosh", "tanh", "abs", "erf"], 1)
FUNCTIONS |= {"where": 3, "minimum": 2, "maximum": 2}
CONSTANTS = {"pi": math.pi, "e": math.e}

# AST operator -> jax.numpy function.
_BINARY = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide"}
_BINARY |= {ast.Pow: "power"}
_UNARY = {ast.USub: "negative", ast.UAdd: "positive"}
_COMPARE = {ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal"}
_COMPARE |= {ast.Eq: "equal", ast.NotEq: "not_equal"}
# Names of rejected constructs, for the messages.
_SYMBOLS = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<"}
_SYMBOLS |= {ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not"}
_SYMBOLS |= {ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_LITERALS = {str: "string", bytes: "bytes", bool: "boolean", complex: "complex number"}
_LITERALS |= {type(None): "None", type(...): "Ellipsis"}
_CONSTRUCTS = {ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda"}
_CONSTRUCTS |= {ast.IfExp: "conditional expression"}
_CONSTRUCTS |= {ast.NamedExpr: "assignment", ast.Starred: "starred argument", ast.List: "list"}
_CONSTRUCTS |= {ast.Tuple: "tuple", ast.Set: "set", ast.Dict: "dict", ast.JoinedStr: "f-string"}
_CONSTRUCTS |= dict.fromkeys([ast.ListComp, ast.SetComp], "comprehension")
_CONSTRUCTS |= dict.fromkeys([ast.DictComp, ast.GeneratorExp], "comprehension")


@dataclass(frozen=True, repr=False)
class CompiledExpression:
    """A checked expression and the JAX function that evaluates it.

    Attributes:
        function: ``f(*variables, *parameters)`` built from ``jax.numpy`` (so it
            works under ``jax.jit``, ``jax.grad``, ``jax.vmap``); integer inputs
            become floating point, the result has the shape of the variables.
        parameters: the free names, in order of first appearance in the text.
        variables: the independent variables.
        expression: the original text.
    """

    function: Callable[..., Any]
    parameters: tuple[str, ...]
    variables: tuple[str, ...]
    expression: str

    def __iter__(self) -> Iterator[Any]:
        # So that ``f, names = compile(...)`` works.
        return iter((self.function, self.parameters))

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __repr__(self) -> str:
        return (
            f"CompiledExpression({self.expression!r}, variables={self.variables!r}, "
            f"parameters={self.parameters!r})"
        )


def compile(
    expression: str, variables: Sequence[str] = ("x",), *, argument: str = "expression"
) -> CompiledExpression:
    """Check ``expression`` and build the JAX function that evaluates it.

    Args:
        expression: the formula, e.g. ``"a*exp(-b*x) + c"``.
        variables: the independent variables (data columns), which come first
            in the function's arguments. A variable need not appear in the text.
        argument: the argument name that errors about ``expression`` report.

    Returns:
        A :class:`CompiledExpression`; it unpacks as ``(function, parameters)``.

    Raises:
        InputError: ``expression`` is empty, too long, too deeply nested, not
            valid syntax or outside the grammar; or ``variables`` is not a
            sequence of distinct identifiers free for use.
    """
    variables = _check_variables(variables)
    if not isinstance(expression, str) or not expression.strip():
        raise InputError("must be a non-empty string", argument=argument, received=expression)
    if len(expression) > MAX_LENGTH:
        message = f"is {len(expression)} characters long; the limit is {MAX_LENGTH}"
        raise InputError(message, argument=argument)
    source = _Source(expression, argument)
    source.check_brackets()
    try:
        tree = ast.parse(source.text, mode="eval")
    except SyntaxError as exc:
        raise source.error("invalid syntax", exc.lineno or 1, exc.offset or 1, exc.msg) from None
    except (RecursionError, MemoryError):
        # CPython's parser gives up on deep nesting (e.g. 5000 unary minuses).
        message = f"is nested too deeply to parse (the limit is {MAX_DEPTH})"
        raise InputError(message, argument=argument) from None
    parameters = _check_tree(tree.body, source, variables)
    function = _make_function(tree.body, variables, parameters, expression)
    return CompiledExpression(function, parameters, variables, expression)


def _check_variables(variables: object) -> tuple[str, ...]:
    if isinstance(variables, str) or not isinstance(variables, tuple | list):
        message = 'must be a tuple of names such as ("x",)'
        raise InputError(message, argument="variables", received=variables)
    for name in variables:
        if not (isinstance(name, str) and name.isidentifier()) or keyword.iskeyword(name):
            raise InputError("each must be an identifier", argument="variables", received=name)
        if name.startswith("_") or name in FUNCTIONS or name in CONSTANTS:
            message = "names starting with '_' and function and constant names are reserved"
            raise InputError(message, argument="variables", received=name)
    # The parser NFKC-normalises identifiers; do the same so that names match.
    names = tuple(unicodedata.normalize("NFKC", name) for name in variables)
    if not names or len(set(names)) != len(names):
        message = "must be non-empty, without duplicates"
        raise InputError(message, argument="variables", received=variables)
    return names


class _Source:
    """The text under check; makes errors that point into it."""

    def __init__(self, expression: str, argument: str):
        # eval() tolerates leading blanks but the parser does not; strip them
        # and add them back to reported columns.
        self.text = expression.lstrip(" \t")
        self.shift = len(expression) - len(self.text)
        self.lines = self.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.argument = argument

    def error(self, problem: str, line: int, column: int, detail: str) -> InputError:
        """``<problem> at column N: <detail>``, N counting characters from 1."""
        column += self.shift if line == 1 else 0
        where = f"line {line}, column {column}" if len(self.lines) > 1 else f"column {column}"
        return InputError(f"{problem} at {where}: {detail}", argument=self.argument)

    def node_error(self, problem: str, node: Any) -> InputError:
        line, offset = node.lineno, node.col_offset
        text = ast.get_source_segment(self.text, node) or ""
        if isinstance(node, ast.Attribute):  # point at the dot, not at the object
            text, value = f".{node.attr}", node.value
            dot = self.lines[value.end_lineno - 1].encode().find(b".", value.end_col_offset)
            line, offset = (value.end_lineno, dot) if dot >= 0 else (line, offset)
        # col_offset counts UTF-8 bytes.
        column = len(self.lines[line - 1].encode()[:offset].decode(errors="ignore")) + 1
        text = text if len(text) <= 40 else text[:37] + "..."
        return self.error(problem, line, column, repr(text))

    def check_brackets(self) -> None:
        # Brackets make no AST node, and the parser's own limit (200) fails with
        # an obscure message, so count them before parsing.
        depth = 0
        for line, text in enumerate(self.lines, 1):
            for column, char in enumerate(text, 1):
                depth += (char in "([{") - (char in ")]}")
                if depth > MAX_DEPTH:
                    problem = f"brackets nested deeper than {MAX_DEPTH}"
                    raise self.error(problem, line, column, repr(char))


def _check_tree(root: ast.expr, source: _Source, variables: tuple[str, ...]) -> tuple[str, ...]:
    """Walk the tree against the whitelist; return the parameter names.

    The walk keeps its own stack so that hostile nesting cannot exhaust
    Python's recursion limit before the depth check rejects it.
    """
    first_seen: dict[str, tuple[int, int]] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, is_condition = stack.pop()
        problem, children, condition_first = None, [], False
        if depth > MAX_DEPTH:
            problem = f"nesting deeper than {MAX_DEPTH} is not allowed"
        elif isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                problem = f"{_LITERALS[type(node.value)]} literal is not allowed"
            elif node.value > sys.float_info.max:  # literals are never negative
                problem = "number is beyond the floating-point range"
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                problem = "names starting with '_' are not allowed"
            elif node.id in FUNCTIONS:
                problem = f"function {node.id!r} must be called"
            elif node.id not in variables and node.id not in CONSTANTS:
                first_seen.setdefault(node.id, (node.lineno, node.col_offset))
        elif isinstance(node, ast.UnaryOp | ast.BinOp):
            if type(node.op) not in _UNARY | _BINARY:
                problem = f"operator {_SYMBOLS[type(node.op)]!r} is not allowed"
            unary = isinstance(node, ast.UnaryOp)
            children = [node.operand] if unary else [node.left, node.right]
        elif isinstance(node, ast.Compare):
            if len(node.ops) > 1:
                problem = "chained comparisons are not allowed"
            elif type(node.ops[0]) not in _COMPARE:
                problem = f"operator {_SYMBOLS[type(node.ops[0])]!r} is not allowed"
            elif not is_condition:
                problem = "comparisons are allowed only as the first argument of where"
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            children, condition_first = node.args, name == "where"
            if name is None:  # e.g. obj.method(): report the attribute access
                what = _CONSTRUCTS.get(type(node.func), "calling an expression")
                problem = f"{what} is not allowed"
                node = node.func if type(node.func) in _CONSTRUCTS else node
            elif name not in FUNCTIONS:
                problem = f"unknown function {name!r}"
            elif node.keywords:
                problem, node = "keyword arguments are not allowed", node.keywords[0]
            elif len(node.args) != FUNCTIONS[name]:
                count = f"{FUNCTIONS[name]} argument" + "s" * (FUNCTIONS[name] > 1)
                problem = f"{name}() takes {count}, got {len(node.args)}"
        elif isinstance(node, ast.BoolOp):
            problem = f"operator {'and' if isinstance(node.op, ast.And) else 'or'!r} is not allowed"
        else:
            problem = f"{_CONSTRUCTS.get(type(node), type(node).__name__)} is not allowed"
        if problem is not None:
            raise source.node_error(problem, node)
        # Pushed in reverse so that the leftmost error is the one reported.
        for index in reversed(range(len(children))):
            stack.append((children[index], depth + 1, condition_first and index == 0))
    return tuple(sorted(first_seen, key=first_seen.__getitem__))


@functools.cache
def _jax_functions() -> dict[str, Callable[..., Any]]:
    import jax.numpy as jnp
    from jax.scipy.special import erf

    names = [*FUNCTIONS, *_BINARY.values(), *_UNARY.values(), *_COMPARE.values()]
    return {name: getattr(jnp, name) for name in names if name != "erf"} | {"erf": erf}


def _evaluate(node: Any, env: dict[str, Any], table: dict[str, Callable[..., Any]]) -> Any:
    # Only called on checked trees, whose depth is bounded, so recursion is safe.
    if isinstance(node, ast.Constant):
        return float(node.value)  # integer literals become floating point
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return table[_UNARY[type(node.op)]](_evaluate(node.operand, env, table))
    if isinstance(node, ast.BinOp | ast.Compare):
        binary = isinstance(node, ast.BinOp)
        op, right = (node.op, node.right) if binary else (node.ops[0], node.comparators[0])
        args = _evaluate(node.left, env, table), _evaluate(right, env, table)
        return table[(_BINARY | _COMPARE)[type(op)]](*args)
    return table[node.func.id](*(_evaluate(arg, env, table) for arg in node.args))


def _make_function(
    body: ast.expr, variables: tuple[str, ...], parameters: tuple[str, ...], expression: str
) -> Callable[..., Any]:
    names = (*variables, *parameters)

    def function(*args: Any) -> Any:
        if len(args) != len(names):
            message = f"{expression!r} takes {len(names)} arguments {names}, got {len(args)}"
            raise InputError(message, argument="args")
        import jax.numpy as jnp

        args = tuple(jnp.asarray(arg) for arg in args)
        args = tuple(a if jnp.issubdtype(a.dtype, jnp.inexact) else a.astype(float) for a in args)
        result = _evaluate(body, CONSTANTS | dict(zip(names, args, strict=True)), _jax_functions())
        # A model such as "c" must still give one value per data point.
        shape = jnp.broadcast_shapes(jnp.shape(result), *(a.shape for a in args[: len(variables)]))
        return jnp.broadcast_to(result, shape)

    function.__doc__ = f"f({', '.join(names)}) = {expression}"
    function.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY) for name in names]
    )
    return function
