"""Flow through one function for ``jaxpro lint``: traced values (JX101-JX103, JX105-JX107,
JX109) and PRNG keys (JX104).

Both walk the statements in order. Branches are walked on copies of the state
and merged; a branch that ends in ``return``/``raise``/``break``/``continue``
does not flow on. Loop bodies are walked twice, so what one iteration does is
seen by the next (a key consumed in a loop without being replaced is reused).
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from jaxpro.core._lint import (
    ARRAY_MODULES,
    DYNAMIC_SHAPE_CALLS,
    KEY_MAKERS,
    MASK_CALLS,
    MUTATORS,
    NUMPY_SAFE,
    STATIC_ATTRIBUTES,
    STATIC_CALLS,
    _annotated_array,
    _tracer_guard,
)
from jaxpro.core._lint_rules import RULES

if TYPE_CHECKING:  # pragma: no cover
    from jaxpro.core._lint import _Module, _Transformed

__all__ = ["FunctionFlow", "KeyFlow"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_ENDS = (ast.Return, ast.Raise, ast.Break, ast.Continue)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_CONTAINERS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _ordered(node: ast.AST):
    """Sub-expressions of ``node`` in evaluation order, not entering nested functions."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _FUNCTIONS):
            yield from _ordered(child)


def _bound_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _bound_names(element)]
    if isinstance(target, ast.Starred):
        return _bound_names(target.value)
    return []


def _array_index(index: ast.AST) -> bool:
    """An index only an array (or list) takes: integers, slices, ``...``, tuples of them."""
    if isinstance(index, ast.Tuple):
        return bool(index.elts) and all(_array_index(e) for e in index.elts)
    if isinstance(index, ast.Slice):
        return True
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        return _array_index(index.operand)
    return isinstance(index, ast.Constant) and (
        index.value is Ellipsis
        or (isinstance(index.value, int) and not isinstance(index.value, bool))
    )


def _literal_default(node: ast.AST | None) -> bool:
    """A default written as a literal (``True``, ``None``, ``"a"``, ``(1, 2)``): the
    argument is configuration, concrete unless a caller passes it traced."""
    if node is None:
        return False
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


class _Walker:
    """Statements in order, shared by both flows: blocks, and the compound statements
    whose handling does not depend on what flows (``with``, ``try``, ``match``).

    Subclasses provide ``statement``, ``expression``, ``branches`` (walk blocks on
    copies of the state and merge) and ``bind_with`` (a ``with ... as`` target).
    """

    def block(self, statements: list[ast.stmt]) -> bool:
        """Walk ``statements``; True if the block always ends (return/raise/...)."""
        return any(self.statement(statement) for statement in statements)

    def compound(self, node: ast.stmt) -> bool | None:
        """Walk a with/try/match statement (True if it always ends); None for other nodes."""
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                self.expression(item.context_expr)
                if item.optional_vars is not None:
                    self.bind_with(item.optional_vars, item.context_expr)
            return self.block(node.body)
        if isinstance(node, ast.Try | getattr(ast, "TryStar", ast.Try)):
            self.branches(node.body, *[h.body for h in node.handlers])
            self.block(node.orelse)
            return self.block(node.finalbody)
        if isinstance(node, ast.Match):
            self.expression(node.subject)
            self.branches(*[case.body for case in node.cases])
            return False
        return None


class FunctionFlow(_Walker):
    """Traced values through one function (or the module body) and the rules on them."""

    def __init__(
        self,
        module: _Module,
        function: ast.AST,
        entry: _Transformed | None,
        inherited: tuple[set[str], set[str]] = (set(), set()),
        *,
        report: bool = True,
    ):
        self.module = module
        self.function = function
        self.reporting = report
        inherited_names, inherited_kinds = inherited
        self.kinds: set[str] = set(inherited_kinds) | (set(entry.kinds) if entry else set())
        self.how = entry.how if entry else "an enclosing transform"
        self.traced: set[str] = set(inherited_names)
        self.arrays: set[str] = set()
        self.masks: set[str] = set()
        self.declared: dict[str, str] = {}  # name -> "global" or "nonlocal"
        self.containers: set[str] = set()  # lists, dicts, ... built here
        self.guarded = 0  # inside a branch that tested for tracers
        self.locals: set[str] = set()
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = function.args
            positional = [*args.posonlyargs, *args.args]
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            pairs = list(zip(positional, defaults, strict=True))
            pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
            static = entry.static if entry and entry.static is not None else set()
            for arg, default in pairs:
                self.locals.add(arg.arg)
                self.traced.discard(arg.arg)
                if (
                    entry is not None
                    and arg.arg not in static
                    and arg.arg not in ("self", "cls")
                    and not _literal_default(default)
                ):
                    self.traced.add(arg.arg)
                    if _annotated_array(arg):
                        self.arrays.add(arg.arg)
            for extra in (args.vararg, args.kwarg):
                if extra is not None:
                    self.locals.add(extra.arg)
            if not isinstance(function, ast.Lambda):
                for node in ast.walk(function):
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                        self.locals.add(node.id)
                    elif isinstance(node, _FUNCTIONS[:2]) and node is not function:
                        self.locals.add(node.name)
        self.ever_traced: set[str] = set(self.traced)

    @property
    def tracing(self) -> bool:
        return "trace" in self.kinds

    def report(self, node: ast.AST, code: str, message: str) -> None:
        if not self.reporting:
            return
        transforms = RULES[code].transforms
        if transforms is None:
            self.module.report(node, code, message)
        elif self.kinds & transforms:
            self.module.report(node, code, f"{message} (inside {self.how})")

    # -- taint -----------------------------------------------------------------
    def tainted(self, node: ast.AST | None) -> bool:
        if node is None:
            return False
        if isinstance(node, ast.Name):
            return node.id in self.traced
        if isinstance(node, ast.Attribute):
            return node.attr not in STATIC_ATTRIBUTES and self.tainted(node.value)
        if isinstance(node, ast.Subscript):
            return self.tainted(node.value)
        if isinstance(node, ast.Call):
            if self.module.qualname(node.func) in STATIC_CALLS:
                return False
            return (
                self.tainted(node.func)
                or any(self.tainted(a) for a in node.args)
                or any(self.tainted(k.value) for k in node.keywords)
            )
        if isinstance(node, ast.Compare):
            if all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
                return False
            if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and isinstance(
                node.left, ast.Constant
            ):
                return False  # "key" in kwargs
            return any(self.tainted(n) for n in (node.left, *node.comparators))
        if isinstance(node, ast.Lambda | ast.Constant):
            return False
        if isinstance(node, ast.IfExp):  # its test being traced is reported on its own
            return self.tainted(node.body) or self.tainted(node.orelse)
        return any(self.tainted(child) for child in ast.iter_child_nodes(node))

    def is_array(self, node: ast.AST) -> bool:
        """Known to be a JAX array (a jnp/lax/random result, or arithmetic on one)."""
        if isinstance(node, ast.Name):
            return node.id in self.arrays
        if isinstance(node, ast.Call):
            name = self.module.qualname(node.func)
            if name is not None and name.startswith(ARRAY_MODULES):
                return name not in STATIC_CALLS
            return isinstance(node.func, ast.Attribute) and self.is_array(node.func.value)
        if isinstance(node, ast.BinOp):  # arithmetic on a traced value makes an array
            return any(self.is_array(n) or self.tainted(n) for n in (node.left, node.right))
        if isinstance(node, ast.UnaryOp | ast.Subscript):
            return self.is_array(node.operand if isinstance(node, ast.UnaryOp) else node.value)
        if isinstance(node, ast.Attribute):  # x.at[i] exists on JAX arrays only
            return node.attr in ("at", "T", "real", "imag", "mT") and self.tainted(node.value)
        return False

    def is_mask(self, node: ast.AST) -> bool:
        """A boolean array computed from traced values."""
        if isinstance(node, ast.Name):
            return node.id in self.masks
        if isinstance(node, ast.Compare):
            return not all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops) and self.tainted(
                node
            )
        if isinstance(node, ast.Call):
            return self.module.qualname(node.func) in MASK_CALLS and self.tainted(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert | ast.Not):
            return self.is_mask(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr | ast.BitXor):
            return self.is_mask(node.left) or self.is_mask(node.right)
        return False

    # -- statements -------------------------------------------------------------
    def run(self) -> None:
        if isinstance(self.function, ast.Lambda):
            self.expression(self.function.body)
        elif isinstance(self.function, ast.Module):
            self.block(self.function.body)
        else:
            self.block(self.function.body)

    def branches(self, *blocks: list[ast.stmt]) -> None:
        start = (set(self.traced), set(self.arrays), set(self.masks))
        merged = [set(), set(), set()]
        for block in blocks:
            self.traced, self.arrays, self.masks = (set(s) for s in start)
            if not self.block(block):
                for total, part in zip(merged, (self.traced, self.arrays, self.masks), strict=True):
                    total |= part
        self.traced, self.arrays, self.masks = merged
        self.ever_traced |= self.traced

    def statement(self, node: ast.stmt) -> bool:
        if isinstance(node, _FUNCTIONS):
            return False
        if isinstance(node, ast.Global | ast.Nonlocal):
            kind = "global" if isinstance(node, ast.Global) else "nonlocal"
            self.declared.update(dict.fromkeys(node.names, kind))
            return False
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            value = node.value
            if value is not None:
                self.expression(value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                self.assign(target, value, augmented=isinstance(node, ast.AugAssign))
            return False
        if isinstance(node, ast.If):
            guard = _tracer_guard(node.test)
            self.condition(node.test, node, "if")
            self.guarded += guard
            self.branches(node.body, node.orelse)
            self.guarded -= guard
            return False
        if isinstance(node, ast.While):
            self.condition(node.test, node, "while")
            for _ in range(2):
                self.branches(node.body, [])
            self.block(node.orelse)
            return False
        if isinstance(node, ast.For | ast.AsyncFor):
            self.expression(node.iter)
            self.loop_over(node)
            for _ in range(2):
                self.bind_loop(node.target, node.iter)
                self.branches(node.body, [])
            self.block(node.orelse)
            return False
        ends = self.compound(node)
        if ends is not None:
            return ends
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child)
        return isinstance(node, _ENDS)

    def bind_with(self, target: ast.AST, value: ast.AST) -> None:
        self.assign(target, value)

    def condition(self, test: ast.AST, node: ast.AST, keyword: str) -> None:
        if self.guarded or _tracer_guard(test):
            return
        if self.tainted(test):
            self.report(node, "JX103", f"Python `{keyword}` on a traced value")

    def assign(self, target: ast.AST, value: ast.AST | None, *, augmented: bool = False) -> None:
        if isinstance(target, ast.Subscript):
            base = target.value
            if self.module.pallas or (isinstance(base, ast.Name) and base.id in self.containers):
                return
            # a traced value of unknown type may be a dict (params["w"] = ... is fine):
            # flagged when known to be an array, or indexed as only arrays are
            if isinstance(base, ast.Name) and (
                base.id in self.arrays or (base.id in self.traced and _array_index(target.slice))
            ):
                self.report(target, "JX105", f"item assignment on the JAX array `{base.id}`")
            elif isinstance(base, ast.Name) and self.free(base.id):
                self.report(target, "JX106", f"writes into `{base.id}`, defined outside")
            return
        if isinstance(target, ast.Attribute):
            base = target.value
            if isinstance(base, ast.Name) and (base.id == "self" or self.free(base.id)):
                self.report(target, "JX106", f"sets `{ast.unparse(target)}`, outer state")
            return
        traced = value is not None and self.tainted(value)
        array = value is not None and (self.is_array(value) or (traced and augmented))
        container = isinstance(value, _CONTAINERS) or (
            isinstance(value, ast.Call) and self.module.qualname(value.func) in ("list", "dict")
        )
        mask = value is not None and self.is_mask(value)
        for name in _bound_names(target):
            if name in self.declared:
                self.report(target, "JX106", f"assigns the {self.declared[name]} name `{name}`")
            groups = (
                (self.traced, traced),
                (self.arrays, array and not container),
                (self.masks, mask),
                (self.containers, container),
            )
            for names, on in groups:
                if on:
                    names.add(name)
                elif not augmented:
                    names.discard(name)
        self.ever_traced |= self.traced

    def bind_loop(self, target: ast.AST, iterable: ast.AST, *, report: bool = True) -> None:
        """Bind a loop's target: ``zip(a, b)`` and ``enumerate(a)`` element by element."""
        name = self.module.qualname(iterable.func) if isinstance(iterable, ast.Call) else None
        if isinstance(target, ast.Tuple) and name in ("zip", "enumerate"):
            parts = list(iterable.args)
            if name == "enumerate":
                parts = [ast.Constant(0), *parts[:1]]
            if len(parts) == len(target.elts):
                for element, part in zip(target.elts, parts, strict=True):
                    self.bind_loop(element, ast.Starred(part, ast.Load()), report=report)
                return
        traced = self.tainted(iterable)
        for bound in _bound_names(target):
            if traced:
                self.traced.add(bound)
            else:
                self.traced.discard(bound)
        self.ever_traced |= self.traced

    def free(self, name: str) -> bool:
        """A name from outside this function (not a module alias like ``np``)."""
        return (
            not isinstance(self.function, ast.Module)
            and name not in self.locals
            and name not in self.module.aliases
            and name not in self.traced
        )

    def loop_over(self, node: ast.For | ast.AsyncFor) -> None:
        loop = node.iter
        over = None
        if isinstance(loop, ast.Name) and loop.id in self.arrays and loop.id in self.traced:
            over = loop.id
        elif isinstance(loop, ast.Call) and self.module.qualname(loop.func) == "range":
            for sub in (n for arg in loop.args for n in ast.walk(arg)):
                # range(x.shape[0]) or range(x.size), not range(len(x.shape)) (the rank)
                attribute = sub.value if isinstance(sub, ast.Subscript) else sub
                if (
                    isinstance(attribute, ast.Attribute)
                    and (
                        (attribute.attr == "shape" and attribute is not sub)
                        or (attribute.attr == "size" and self.is_array(attribute.value))
                    )
                    and self.tainted(attribute.value)
                ):
                    over = ast.unparse(attribute.value)
                elif (
                    isinstance(sub, ast.Call)
                    and self.module.qualname(sub.func) == "len"
                    and sub.args
                    and self.tainted(sub.args[0])
                    and self.is_array(sub.args[0])
                ):
                    over = ast.unparse(sub.args[0])
        if over is not None:
            self.report(node, "JX102", f"Python loop over the elements of `{over}`")

    # -- expressions ---------------------------------------------------------------
    def expression(self, root: ast.AST) -> None:
        for node in _ordered(root):
            if isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                index = node.slice
                if self.is_mask(index) and (self.tainted(node.value) or self.tainted(index)):
                    self.report(node, "JX107", "boolean-mask indexing (the result's shape"
                                " depends on the data)")  # fmt: skip
            elif isinstance(node, ast.IfExp):
                self.condition(node.test, node, "... if ... else")
            elif isinstance(node, _COMPREHENSIONS):
                for generator in node.generators:
                    self.bind_loop(generator.target, generator.iter, report=False)

    def dynamic_shape(self, node: ast.Call, name: str | None) -> bool:
        """nonzero/unique/... (or where with one argument) of a traced value, without size=."""
        shaped = name in DYNAMIC_SHAPE_CALLS or (name == "jax.numpy.where" and len(node.args) == 1)
        return (
            shaped
            and not any(k.arg == "size" for k in node.keywords)
            and any(self.tainted(a) for a in node.args)
        )

    def call(self, node: ast.Call) -> None:
        name = self.module.qualname(node.func)
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if name is not None and name.startswith("numpy.") and name not in NUMPY_SAFE:
            if any(self.tainted(a) for a in arguments):
                self.report(node, "JX101", f"`{ast.unparse(node.func)}` on a traced value")
        elif name == "print" and "print" not in self.module.aliases:
            if any(self.tainted(a) for a in arguments):
                self.report(node, "JX109", "print of a traced value")
        elif self.dynamic_shape(node, name):
            self.report(node, "JX107", f"`{ast.unparse(node.func)}` without size= has a"
                        " data-dependent shape")  # fmt: skip
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and isinstance(node.func.value, ast.Name)
            and self.free(node.func.value.id)
        ):
            self.report(node, "JX106", f"`{ast.unparse(node.func)}` mutates outer state")


class KeyFlow(_Walker):
    """PRNG keys through one function (or the module body): JX104."""

    def __init__(self, module: _Module, scope: ast.AST):
        self.module = module
        self.scope = scope
        self.consumed: dict[str, int] = {}
        self.reported: set[int] = set()

    def run(self) -> None:
        self.block(self.scope.body)

    def branches(self, *blocks: list[ast.stmt]) -> None:
        start = dict(self.consumed)
        merged: dict[str, int] = {}
        for block in blocks:
            self.consumed = dict(start)
            if not self.block(block):
                merged.update(self.consumed)
        self.consumed = merged

    def statement(self, node: ast.stmt) -> bool:
        if isinstance(node, _FUNCTIONS):
            self.consumed.pop(getattr(node, "name", ""), None)
            return False
        if isinstance(node, ast.If):
            self.expression(node.test)
            self.branches(node.body, node.orelse)
            return False
        if isinstance(node, ast.While | ast.For | ast.AsyncFor):
            self.expression(node.test if isinstance(node, ast.While) else node.iter)
            for _ in range(2):
                if not isinstance(node, ast.While):
                    self.rebind(node.target)
                self.branches(node.body, [])
            self.block(node.orelse)
            return False
        ends = self.compound(node)
        if ends is not None:
            return ends
        value = getattr(node, "value", None)
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            if value is not None:
                self.expression(value)
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                self.rebind(target)
            return False
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child)
        return isinstance(node, _ENDS)

    def bind_with(self, target: ast.AST, value: ast.AST) -> None:
        self.rebind(target)

    def rebind(self, target: ast.AST) -> None:
        for name in _bound_names(target):
            self.consumed.pop(name, None)

    def expression(self, root: ast.AST) -> None:
        inside: set[int] = set()  # nodes of comprehensions, handled on their own
        for node in _ordered(root):
            if id(node) in inside:
                continue
            if isinstance(node, _COMPREHENSIONS):
                inside.update(id(n) for n in _ordered(node))
                targets = frozenset(
                    name for g in node.generators for name in _bound_names(g.target)
                )
                self.comprehension(node, targets)
            elif isinstance(node, ast.NamedExpr):
                self.rebind(node.target)
            elif isinstance(node, ast.Call):
                self.call(node, None)

    def comprehension(self, node: ast.AST, targets: frozenset[str]) -> None:
        for generator in node.generators:
            self.expression(generator.iter)
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for part in parts:
            for inner in _ordered(part):
                if isinstance(inner, ast.Call):
                    self.call(inner, targets)

    def call(self, node: ast.Call, comprehension: frozenset[str] | None) -> None:
        name = self.module.qualname(node.func)
        if name is None or not name.startswith("jax.random."):
            return
        function = name.rsplit(".", 1)[1]
        if function in KEY_MAKERS and function != "split":
            return
        key = (
            node.args[0]
            if node.args
            else next((k.value for k in node.keywords if k.arg == "key"), None)
        )
        if not isinstance(key, ast.Name) or id(node) in self.reported:
            return
        if comprehension is not None and key.id in comprehension:
            return  # a new key for every element
        if comprehension is not None:
            self.reported.add(id(node))
            self.module.report(
                node, "JX104",
                f"key `{key.id}` passed to jax.random.{function} for every element of a"
                " comprehension",
            )  # fmt: skip
            return
        if key.id in self.consumed:
            self.reported.add(id(node))
            self.module.report(
                node, "JX104",
                f"key `{key.id}` already used on line {self.consumed[key.id]};"
                f" jax.random.{function} here reuses it (correlated random numbers)",
            )  # fmt: skip
            return
        self.consumed[key.id] = node.lineno
