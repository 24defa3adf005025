"""``jaxpro.core.check``: run a function the ways JAX will and report what goes wrong, with fixes.

Where ``jaxpro lint`` reads code, ``check`` runs it on example arguments:

1. **jit**: does it trace and compile? A JAX error is translated into its fix
   (ConcretizationTypeError -> ``lax.cond``/``jnp.where``/static argument, ...).
2. **purity**: Python side effects while tracing: printing, writing into
   global or captured lists/dicts/sets, rebinding globals, leaking tracers.
   They run once per compilation, not once per call.
3. **finite**: NaN (with the operation that produced it, by ``checkify``),
   division by zero and non-finite values in the outputs and the gradients.
4. **gradients** against central finite differences along random directions.
5. **recompilation**: the same call twice must compile once; each new input
   shape compiles again (counted through ``jax.monitoring``).
6. **cost**: XLA's compiled memory (arguments, outputs, temporaries) and FLOPs.

Checks run in float64 (the finite-difference check needs it) inside
``jax.enable_x64``, leaving the process's JAX configuration alone.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jaxpro._result import jsonable
from jaxpro.errors import InputError

__all__ = ["CheckFinding", "CheckReport", "check"]

# JAX error class name -> (what it means, the fix)
_TRANSLATIONS = {
    "ConcretizationTypeError": (
        "Python control flow or a Python conversion on a traced value",
        "use lax.cond, jnp.where or lax.while_loop, or make the argument static (static_argnums)",
    ),
    "TracerBoolConversionError": (
        "Python `if`/`while`/`and`/`or` on a traced value",
        "use lax.cond, jnp.where or lax.while_loop, or make the argument static (static_argnums)",
    ),
    "TracerIntegerConversionError": (
        "a traced value used where Python needs an int (range, list index, int())",
        "use lax.fori_loop, lax.dynamic_slice or jnp.take, or make the argument static",
    ),
    "TracerArrayConversionError": (
        "NumPy (np.*, np.asarray) called on a traced value",
        "use jax.numpy (jnp) inside the function",
    ),
    "NonConcreteBooleanIndexError": (
        "boolean-mask indexing: the result's shape depends on the data",
        "use jnp.where(mask, x, fill) or a masked reduction, or pass size= to nonzero/where",
    ),
    "UnexpectedTracerError": (
        "a traced value escaped the function (kept in a global, an object or a closure)",
        "return every value the caller needs instead of storing it",
    ),
}
_NOT_AN_ARRAY = (
    "an argument is not an array (a string, a function, an object)",
    "make it static (static_argnums) or capture it with functools.partial",
)


@dataclass(frozen=True)
class CheckFinding:
    """One problem or observation.

    Attributes:
        check: which check found it: jit, purity, finite, gradient, recompile, cost.
        severity: "error" (does not work), "warning" (works, but not as meant) or "info".
        message: what was found.
        fix: what to change ("" for information).
    """

    check: str
    severity: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "severity": self.severity, "message": self.message,
                "fix": self.fix}  # fmt: skip


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check` found.

    Attributes:
        target: the function's name.
        findings: every finding, errors first.
        measurements: numbers behind the findings (compile counts, gradient
            error, memory and FLOPs of the compiled program, timings).
        seconds: wall time of the check.
    """

    target: str
    findings: tuple[CheckFinding, ...]
    measurements: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is an error or a warning."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def summary(self) -> str:
        lines = [f"check {self.target}: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        for finding in self.findings:
            lines.append(f"  [{finding.severity}] {finding.check}: {finding.message}")
            if finding.fix:
                lines.append(f"      fix: {finding.fix}")
        for key, value in self.measurements.items():
            lines.append(f"  {key}: {_fmt(value)}")
        lines.append(f"  checked in {self.seconds:.2f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "target": self.target,
                "ok": self.ok,
                "findings": [f.to_dict() for f in self.findings],
                "measurements": self.measurements,
                "seconds": self.seconds,
            }
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".3g")
    return str(value)


def check(
    fn: Callable,
    *example_args: Any,
    static_argnums: int | Sequence[int] = (),
    grad: bool = True,
    name: str | None = None,
    seed: int = 0,
) -> CheckReport:
    """Run ``fn`` on ``example_args`` the ways JAX will and report what goes wrong.

    Args:
        fn: the function to check (it is traced, compiled and run).
        *example_args: arguments as the function will get them (arrays, scalars, pytrees).
        static_argnums: positions of arguments that are static (configuration).
        grad: also check gradients (float arguments, against finite differences).
        name: the name in the report (default: ``fn.__qualname__``).
        seed: seed of the random directions of the gradient check.

    Returns:
        A :class:`CheckReport`; ``report.ok`` is False when any check found an
        error or a warning.

    Raises:
        InputError: ``fn`` is not callable or ``static_argnums`` names no argument.
    """
    start = time.perf_counter()
    if not callable(fn):
        raise InputError("must be a callable", argument="fn", received=fn)
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    for position in static:
        if (
            isinstance(position, bool)
            or not isinstance(position, int)
            or not (-len(example_args) <= position < len(example_args))
        ):
            raise InputError(
                f"must name positions of the {len(example_args)} example arguments",
                argument="static_argnums",
                received=static_argnums,
            )
    static = tuple(p % len(example_args) for p in static)
    target = name or getattr(fn, "__qualname__", None) or repr(fn)

    from jaxpro._precision import float64
    from jaxpro.core import _check_runs as runs

    findings: list[CheckFinding] = []
    measurements: dict[str, Any] = {}
    with float64():
        args = runs.as_arrays(example_args, static)
        traced = runs.trace(fn, args, static, findings, measurements)
        # what the function prints in the later runs was reported by the first
        with capture_stdout():
            if traced:
                runs.finite(fn, args, static, findings)
                if grad:
                    runs.gradients(fn, args, static, findings, measurements, seed)
                runs.recompilation(fn, args, static, findings, measurements)
                runs.cost(fn, args, static, measurements)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    return CheckReport(target, tuple(findings), measurements, time.perf_counter() - start)


def translate(error: BaseException) -> tuple[str, str]:
    """(meaning, fix) for a JAX tracing error."""
    for cls in type(error).__mro__:
        if cls.__name__ in _TRANSLATIONS:
            return _TRANSLATIONS[cls.__name__]
    text = str(error)
    if isinstance(error, TypeError) and (
        "not a valid JAX type" in text or "as an abstract array" in text
    ):
        where = text.rsplit("passed to the function at path ", 1)
        meaning, fix = _NOT_AN_ARRAY
        if len(where) == 2:
            meaning = f"{meaning}: `{where[1].strip().rstrip('.')}`"
        return meaning, fix
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first[:300]}", ""


def capture_stdout():
    """A context that collects what is printed (``print`` while tracing)."""
    return contextlib.redirect_stdout(io.StringIO())
