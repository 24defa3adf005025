"""The rules of ``jaxpro lint``: codes, one-line descriptions, fixes, and what each applies to.

A rule's ``transforms`` says inside which kind of transformed function it
fires: ``"trace"`` covers ``jit``, ``vmap``, ``pmap``, ``shard_map``,
``checkpoint`` and the bodies of ``lax`` control flow, where values are abstract
tracers; ``"grad"`` covers ``grad``, ``value_and_grad``, ``jacfwd``/``jacrev``
and ``hessian`` alone, which see concrete values, so Python control flow and
printing still work there. ``None`` means everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RULES", "TRANSFORMS", "Rule"]


@dataclass(frozen=True)
class Rule:
    """One lint rule.

    Attributes:
        code: ``JX1nn``.
        name: a short kebab-case name.
        summary: what it finds, in one line.
        fix: what to write instead.
        transforms: the transform kinds it applies inside (None: anywhere).
    """

    code: str
    name: str
    summary: str
    fix: str
    transforms: frozenset[str] | None

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name, "summary": self.summary, "fix": self.fix}


_TRACE = frozenset({"trace"})
_ANY_TRANSFORM = frozenset({"trace", "grad"})

RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            "JX101",
            "numpy-on-traced",
            "NumPy call on a traced value inside a transformed function",
            "use jax.numpy (jnp): NumPy needs a concrete array and fails on tracers",
            _ANY_TRANSFORM,
        ),
        Rule(
            "JX102",
            "python-loop-over-array",
            "Python loop over the elements of a traced array inside a transformed function",
            "use lax.scan, lax.fori_loop or jax.vmap: a Python loop unrolls one copy of its"
            " body per element into the program",
            _TRACE,
        ),
        Rule(
            "JX103",
            "python-branch-on-traced",
            "Python if/while/conditional expression on a traced value inside a transformed"
            " function",
            "use lax.cond, jnp.where or lax.while_loop, or mark the argument static"
            " (static_argnums/static_argnames)",
            _TRACE,
        ),
        Rule(
            "JX104",
            "prng-key-reuse",
            "PRNG key used again without jax.random.split",
            "key, subkey = jax.random.split(key) and give each random call its own key",
            None,
        ),
        Rule(
            "JX105",
            "array-item-assignment",
            "Item assignment on a JAX array",
            "JAX arrays are immutable: x = x.at[i].set(v) (or .add, .multiply, ...)",
            None,
        ),
        Rule(
            "JX106",
            "outer-state-mutation",
            "Global, nonlocal or outer state mutated inside a transformed function",
            "return the new value instead: the mutation runs once, while tracing, not at"
            " every call",
            _TRACE,
        ),
        Rule(
            "JX107",
            "data-dependent-shape",
            "Boolean-mask indexing or a data-dependent shape inside a transformed function",
            "use jnp.where(mask, x, fill) or a masked reduction, or pass size= (nonzero,"
            " argwhere, unique, where with one argument)",
            _TRACE,
        ),
        Rule(
            "JX108",
            "jit-in-loop",
            "jax.jit called inside a loop",
            "jit once, outside the loop, and call the compiled function inside it: a new"
            " function object compiles again",
            None,
        ),
        Rule(
            "JX109",
            "print-in-transform",
            "print of a traced value inside a transformed function",
            "use jax.debug.print('{x}', x=x): print runs once while tracing and shows tracers",
            _TRACE,
        ),
        Rule(
            "JX110",
            "pmap",
            "jax.pmap is JAX's legacy multi-device API",
            "use jax.jit with a NamedSharding on a Mesh (or jaxpro.core.pmap_batch), and"
            " jax.shard_map for collectives",
            None,
        ),
    )
}

# Transform -> (kind, positions of the function arguments it traces). A position
# may be "list" for lax.switch's list of branches (argument 1).
TRANSFORMS: dict[str, tuple[str, tuple[int, ...]]] = {
    "jax.jit": ("trace", (0,)),
    "jax.pmap": ("trace", (0,)),
    "jax.vmap": ("trace", (0,)),
    "jax.checkpoint": ("trace", (0,)),
    "jax.remat": ("trace", (0,)),
    "jax.eval_shape": ("trace", (0,)),
    "jax.make_jaxpr": ("trace", (0,)),
    "jax.shard_map": ("trace", (0,)),
    "jax.experimental.shard_map.shard_map": ("trace", (0,)),
    "jax.lax.scan": ("trace", (0,)),
    "jax.lax.map": ("trace", (0,)),
    "jax.lax.associative_scan": ("trace", (0,)),
    "jax.lax.fori_loop": ("trace", (2,)),
    "jax.lax.while_loop": ("trace", (0, 1)),
    "jax.lax.cond": ("trace", (1, 2)),
    "jax.lax.switch": ("trace", (1,)),
    "jax.grad": ("grad", (0,)),
    "jax.value_and_grad": ("grad", (0,)),
    "jax.jacfwd": ("grad", (0,)),
    "jax.jacrev": ("grad", (0,)),
    "jax.hessian": ("grad", (0,)),
    "equinox.filter_jit": ("trace", (0,)),
    "equinox.filter_vmap": ("trace", (0,)),
    "equinox.filter_grad": ("grad", (0,)),
    "equinox.filter_value_and_grad": ("grad", (0,)),
}
