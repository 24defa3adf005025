"""``jaxpro lint``: JAX anti-patterns found statically, on Python's ``ast``.

Nothing is imported or run. The analysis, per module:

1. imports give every name its full dotted meaning (``jnp.sum`` is
   ``jax.numpy.sum``, ``lax`` from ``from jax import lax`` is ``jax.lax``);
2. transformed functions are found: decorated (``@jax.jit``,
   ``@partial(jax.jit, static_argnums=...)``, ``@jax.vmap``, ...) or passed by
   name, lambda or ``functools.partial`` to a transform (``jax.jit(f)``,
   ``lax.scan(step, ...)``, ``lax.cond(p, f, g, ...)``);
3. inside each, the arguments are traced except static ones
   (``static_argnums``/``static_argnames``, arguments bound by ``partial``,
   ``self``/``cls``, arguments with a literal default), and taint flows through
   assignments; ``.shape``, ``.ndim``, ``.dtype``, ``len()``, ``isinstance()``
   and ``is None`` are static, so code that branches on them is left alone;
4. the rules of :mod:`jaxpro.core._lint_rules` are checked against that taint.

The analysis is deliberately conservative (a finding should be worth a user's
time): loops are flagged only over arrays known to be arrays, prints only
when they print a traced value.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from jaxpro.core._lint_rules import RULES, TRANSFORMS

__all__ = ["Finding", "analyse"]

STATIC_ATTRIBUTES = frozenset(
    {"shape", "ndim", "dtype", "size", "itemsize", "nbytes", "sharding", "aval", "weak_type"}
)
# Calls whose result is a Python value even of a traced argument (int/float/bool
# of a tracer fail by themselves, with JAX's own clear error, so what follows
# them is not tainted).
STATIC_CALLS = frozenset(
    {
        "len", "isinstance", "type", "callable", "hasattr", "id", "issubclass", "int", "float",
        "bool", "complex", "str", "repr",
        "jax.numpy.shape", "jax.numpy.ndim", "jax.numpy.size", "jax.numpy.result_type",
        "jax.numpy.dtype", "jax.numpy.issubdtype", "numpy.shape", "numpy.ndim", "numpy.size",
        "numpy.result_type", "numpy.dtype", "numpy.issubdtype", "numpy.iinfo", "numpy.finfo",
        "jax.numpy.iinfo", "jax.numpy.finfo", "jax.tree.structure",
        "jax.tree_util.tree_structure", "jax.tree.leaves", "jax.tree_util.tree_leaves",
    }
)  # fmt: skip
# NumPy functions that work on tracers: shape queries, and reductions and
# reshapes that NumPy hands to the array's own method (checked under jax.jit
# with jax 0.12: np.sum(tracer) calls tracer.sum()). Others (np.sin,
# np.asarray, np.dot, np.where, ...) raise TracerArrayConversionError.
NUMPY_SAFE = frozenset(name for name in STATIC_CALLS if name.startswith("numpy.")) | {
    f"numpy.{name}"
    for name in (
        "isscalar", "broadcast_shapes", "sum", "mean", "prod", "max", "min", "amax", "amin",
        "std", "var", "transpose", "round", "around", "squeeze", "cumsum", "cumprod", "argmax",
        "argmin", "any", "all", "reshape", "repeat", "swapaxes", "searchsorted", "real", "imag",
        "moveaxis",
    )
}  # fmt: skip
ARRAY_MODULES = ("jax.numpy.", "jax.lax.", "jax.random.", "jax.nn.", "jax.scipy.")
KEY_MAKERS = frozenset(
    {
        "PRNGKey",
        "key",
        "fold_in",
        "key_data",
        "wrap_key_data",
        "key_impl",
        "clone",
        "default_prng_impl",
        "split",
    }
)  # fmt: skip — split consumes a key but is handled with the samplers
# list/dict/set methods that change their object in place ("update" is left
# out: optax's optimizer.update(grads, state) is pure and called inside jit)
MUTATORS = frozenset(
    {"append", "extend", "insert", "add", "setdefault", "pop", "popitem", "clear",
     "remove", "discard", "appendleft", "extendleft"}
)  # fmt: skip
DYNAMIC_SHAPE_CALLS = frozenset(
    {"jax.numpy.nonzero", "jax.numpy.argwhere", "jax.numpy.flatnonzero", "jax.numpy.unique",
     "jax.numpy.unique_values", "jax.numpy.unique_counts", "jax.numpy.unique_inverse",
     "jax.numpy.unique_all", "jax.numpy.extract", "jax.numpy.compress"}
)  # fmt: skip
MASK_CALLS = frozenset(
    {"jax.numpy.isnan", "jax.numpy.isfinite", "jax.numpy.isinf", "jax.numpy.logical_and",
     "jax.numpy.logical_or", "jax.numpy.logical_not", "jax.numpy.logical_xor",
     "jax.numpy.greater", "jax.numpy.less", "jax.numpy.equal", "jax.numpy.not_equal",
     "jax.numpy.greater_equal", "jax.numpy.less_equal", "jax.numpy.isclose"}
)  # fmt: skip
LOOPS = (ast.For, ast.AsyncFor, ast.While)


def _annotated_array(arg: ast.arg) -> bool:
    """``x: jax.Array``, ``x: Float[Array, "n"]``, ``x: jnp.ndarray``, ``x: ArrayLike``."""
    if arg.annotation is None:
        return False
    text = ast.unparse(arg.annotation)
    return "Array" in text or "ndarray" in text


def _tracer_guard(test: ast.AST) -> bool:
    """A test that asks whether a value is a tracer (``not_jax_tracer(x)``,
    ``isinstance(x, jax.core.Tracer)``): the code around it knows what it does."""
    for node in ast.walk(test):
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
        if isinstance(name, str) and ("tracer" in name.lower() or "concrete" in name.lower()):
            return True
    return False


@dataclass(frozen=True, order=True)
class Finding:
    """One finding: where, which rule, what and how to fix it (``line``/``col`` 1-based)."""

    path: str
    line: int
    col: int
    code: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


@dataclass
class _Transformed:
    kinds: set[str] = field(default_factory=set)
    static: set[str] | None = None  # None: not yet known; intersected over uses
    how: str = ""  # e.g. "jax.jit", for messages


def analyse(tree: ast.Module, path: str) -> list[Finding]:
    """Every finding of every rule in ``tree`` (selection and noqa are applied by the caller)."""
    module = _Module(tree, path)
    module.discover()
    module.check()
    return sorted(set(module.findings))


class _Module:
    def __init__(self, tree: ast.Module, path: str):
        self.tree = tree
        self.path = path
        self.aliases: dict[str, str] = {}
        self.parents: dict[ast.AST, ast.AST] = {}
        self.transformed: dict[ast.AST, _Transformed] = {}
        self.findings: list[Finding] = []
        self.pallas = False  # Pallas kernels write into mutable refs: ref[...] = value
        self._taint_memo: dict[int, tuple[set[str], set[str]]] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.aliases.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        self.pallas = any(".pallas" in target for target in self.aliases.values())

        # functions by name in each scope (module, function or class body)
        self.defs: dict[int, dict[str, ast.AST]] = {}
        for node in self.parents:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                scope = self._scope_of(node)
                self.defs.setdefault(id(scope), {}).setdefault(node.name, node)

    # -- names ------------------------------------------------------------
    def qualname(self, node: ast.AST) -> str | None:
        """``jnp.sum`` -> ``jax.numpy.sum`` through the imports; None if not a dotted name."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = self.aliases.get(node.id, node.id)
        name = ".".join([head, *reversed(parts)])
        if name.startswith("jax.experimental.shard_map.") or name == "jax.experimental.shard_map":
            return name
        if name.startswith("jax.core.") or name.startswith("jax._src."):
            return name
        return name.replace("jax.lax.lax.", "jax.lax.")

    def report(self, node: ast.AST, code: str, message: str) -> None:
        rule = RULES[code]
        self.findings.append(
            Finding(self.path, node.lineno, node.col_offset + 1, code, message, rule.fix)
        )

    # -- discovery -----------------------------------------------------------
    def _transform_of(self, func: ast.AST) -> tuple[str, str, tuple[int, ...], ast.Call | None]:
        """(name, kind, positions, partial call) when ``func`` is a transform or partial of one."""
        name = self.qualname(func)
        if name in TRANSFORMS:
            kind, positions = TRANSFORMS[name]
            return name, kind, positions, None
        if (
            isinstance(func, ast.Call)
            and func.args
            and self.qualname(func.func) == "functools.partial"
        ):
            inner = self.qualname(func.args[0])
            if inner in TRANSFORMS:
                kind, positions = TRANSFORMS[inner]
                return inner, kind, positions, func
        return "", "", (), None

    def _static_names(
        self, function: ast.AST, keywords: list[ast.keyword], transform: str = ""
    ) -> set[str]:
        args = function.args
        positional = [a.arg for a in (*args.posonlyargs, *args.args)]
        static: set[str] = set()
        if transform.startswith("equinox.filter"):
            # equinox traces array arguments only and keeps the rest static;
            # statically, an argument counts as an array when annotated as one
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            return {a.arg for a in every if not _annotated_array(a)}
        for keyword in keywords:
            if keyword.arg not in ("static_argnums", "static_argnames", "in_axes"):
                continue
            try:
                value = ast.literal_eval(keyword.value)
            except ValueError:
                continue
            if keyword.arg == "in_axes":  # vmap: arguments with axis None are not traced
                if isinstance(value, tuple | list):
                    static |= {positional[i] for i, v in enumerate(value) if v is None
                               and i < len(positional)}  # fmt: skip
                continue
            values = value if isinstance(value, tuple | list) else (value,)
            for item in values:
                if isinstance(item, int) and -len(positional) <= item < len(positional):
                    static.add(positional[item])
                elif isinstance(item, str):
                    static.add(item)
        return static

    def _mark(self, function: ast.AST, kind: str, how: str, static: set[str]) -> None:
        entry = self.transformed.setdefault(function, _Transformed())
        entry.kinds.add(kind)
        entry.static = static if entry.static is None else entry.static & static
        entry.how = entry.how or how

    def _resolve(self, expr: ast.AST, at: ast.AST) -> tuple[ast.AST | None, set[str]]:
        """The function ``expr`` names at ``at``, and arguments a ``partial`` binds."""
        if isinstance(expr, ast.Lambda):
            return expr, set()
        if isinstance(expr, ast.Call) and self.qualname(expr.func) == "functools.partial":
            if not expr.args:
                return None, set()
            inner, bound = self._resolve(expr.args[0], at)
            if inner is None:
                return None, set()
            args = inner.args
            positional = [a.arg for a in (*args.posonlyargs, *args.args)]
            bound |= set(positional[: len(expr.args) - 1])
            bound |= {k.arg for k in expr.keywords if k.arg}
            if any(k.arg is None for k in expr.keywords):
                # partial(f, **options) may bind any argument: only those
                # annotated as arrays count as traced
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                bound |= {a.arg for a in every if not _annotated_array(a)}
            return inner, bound
        if not isinstance(expr, ast.Name):
            return None, set()
        scope = self._scope_of(at)
        while scope is not None:
            found = self.defs.get(id(scope), {}).get(expr.id)
            if found is not None:
                return found, set()
            scope = self._scope_of(scope)
        return None, set()

    def _scope_of(self, node: ast.AST) -> ast.AST | None:
        scope = self.parents.get(node)
        while scope is not None and not isinstance(
            scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module | ast.ClassDef
        ):
            scope = self.parents.get(scope)
        return scope

    def discover(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    call = decorator if isinstance(decorator, ast.Call) else None
                    name, kind, _, partial = self._transform_of(decorator)
                    keywords = partial.keywords if partial is not None else []
                    if not kind and call is not None:
                        # @jax.jit(static_argnums=...) is not valid, but
                        # @eqx.filter_jit(donate=...) and similar factories are
                        name, kind, _, partial = self._transform_of(call.func)
                        keywords = call.keywords
                    if kind:
                        self._mark(node, kind, name, self._static_names(node, keywords, name))
            elif isinstance(node, ast.Call):
                name, kind, positions, partial = self._transform_of(node.func)
                if not kind:
                    continue
                keywords = node.keywords + (partial.keywords if partial is not None else [])
                if name in ("jax.vmap", "equinox.filter_vmap") and len(node.args) > 1:
                    keywords = [*keywords, ast.keyword("in_axes", node.args[1])]  # positional
                for position in positions:
                    if position >= len(node.args):
                        continue
                    targets = node.args[position]
                    candidates = (
                        targets.elts if isinstance(targets, ast.List | ast.Tuple) else [targets]
                    )
                    for candidate in candidates:
                        function, bound = self._resolve(candidate, node)
                        if function is not None:
                            static = bound | self._static_names(function, keywords, name)
                            self._mark(function, kind, name, static)

    # -- checks --------------------------------------------------------------
    def check(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, LOOPS):
                self._jit_in_loop(node)
            elif (
                isinstance(node, ast.Attribute | ast.Name)
                and isinstance(getattr(node, "ctx", None), ast.Load)
                and self.qualname(node) == "jax.pmap"
                and not isinstance(self.parents.get(node), ast.Attribute)
            ):
                self.report(node, "JX110", "jax.pmap: JAX's legacy multi-device API")
        scopes = [self.tree] + [
            n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        from jaxpro.core._lint_flow import FunctionFlow, KeyFlow

        for scope in scopes:
            KeyFlow(self, scope).run()
        for scope in scopes:
            FunctionFlow(
                self, scope, self.transformed.get(scope), self._enclosing_taint(scope)
            ).run()
        for function, entry in self.transformed.items():
            if isinstance(function, ast.Lambda):
                FunctionFlow(self, function, entry, self._enclosing_taint(function)).run()

    def _enclosing_taint(self, function: ast.AST) -> tuple[set[str], set[str]]:
        """Traced names, and transform kinds, a nested function gets from the functions around it."""
        from jaxpro.core._lint_flow import FunctionFlow

        outer = self._scope_of(function) if function is not self.tree else None
        if not isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            return set(), set()
        if id(outer) not in self._taint_memo:
            entry = self.transformed.get(outer)
            inherited = self._enclosing_taint(outer)
            if entry is None and not inherited[1]:
                self._taint_memo[id(outer)] = (set(), set())
            else:
                flow = FunctionFlow(self, outer, entry, inherited, report=False)
                flow.run()
                self._taint_memo[id(outer)] = (flow.ever_traced, flow.kinds)
        return self._taint_memo[id(outer)]

    def _jit_in_loop(self, loop: ast.AST) -> None:
        for statement in loop.body:
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    if self._transform_of(node.func)[0] == "jax.jit":
                        self.report(node, "JX108", "jax.jit called inside a loop")
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    for decorator in node.decorator_list:
                        if self._transform_of(decorator)[0] == "jax.jit":
                            self.report(
                                decorator, "JX108", "a @jax.jit function defined inside a loop"
                            )
