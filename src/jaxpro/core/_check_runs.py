"""The individual runs of ``jaxpro.core.check`` (see :mod:`jaxpro.core._check`)."""

from __future__ import annotations

import inspect
import time
import traceback
from typing import Any

import numpy as np

from jaxpro.core._check import CheckFinding, capture_stdout, translate

__all__ = ["as_arrays", "cost", "finite", "gradients", "recompilation", "trace"]

FD_TOLERANCE = 1e-4  # relative gap between the gradient and central differences
FD_DIRECTIONS = 3
_CONTAINERS = (list, dict, set, bytearray)


def as_arrays(args: tuple, static: tuple[int, ...]) -> tuple:
    """Example arguments with lists of numbers made arrays (static ones untouched)."""
    out = []
    for position, arg in enumerate(args):
        if (
            position not in static
            and isinstance(arg, list | tuple)
            and arg
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in arg)
        ):
            arg = np.asarray(arg, dtype=float)
        out.append(arg)
    return tuple(out)


def _call_with(fn, args, static):
    """``fn`` as a function of the non-static arguments only."""
    dynamic = [i for i in range(len(args)) if i not in static]

    def call(*values):
        full = list(args)
        for i, value in zip(dynamic, values, strict=True):
            full[i] = value
        return fn(*full)

    return call, [args[i] for i in dynamic]


# -- purity ------------------------------------------------------------------------


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def _watched(fn) -> dict[str, Any]:
    """Globals and closure variables the function can reach: name -> value."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    found = {}
    module_globals = getattr(fn, "__globals__", {})
    for name in _code_names(code):
        if name in module_globals and not inspect.ismodule(module_globals[name]):
            found[name] = module_globals[name]
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            found[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return found


def _fingerprint(value: Any) -> tuple:
    if isinstance(value, dict):
        return (id(value), len(value), tuple(map(id, list(value.values())[:1000])))
    if isinstance(value, _CONTAINERS):
        return (id(value), len(value), tuple(map(id, list(value)[:1000])))
    return (id(value),)


def _tracers_in(value: Any) -> bool:
    import jax

    items = value.values() if isinstance(value, dict) else value
    return isinstance(value, _CONTAINERS) and any(
        isinstance(item, jax.core.Tracer) for item in list(items)[:1000]
    )


def _where(error: BaseException, fn) -> str:
    """' (file.py, line N)' for the deepest frame of the user's file, if any."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return ""
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if f.filename == code.co_filename
    ]
    return f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def trace(fn, args, static, findings, measurements) -> bool:
    """Trace once under jit; report a failure (translated) and side effects. True if it traced."""
    import jax

    watched = _watched(fn)
    before = {name: _fingerprint(value) for name, value in watched.items()}
    module_globals = getattr(inspect.unwrap(fn), "__globals__", {})
    start = time.perf_counter()
    with capture_stdout() as printed:
        try:
            jax.make_jaxpr(fn, static_argnums=static)(*args)
        except Exception as error:  # any failure to trace is the finding
            meaning, fix = translate(error)
            findings.append(
                CheckFinding(
                    "jit",
                    "error",
                    f"does not trace under jax.jit: {meaning}{_where(error, fn)}",
                    fix,
                )
            )
            return False
    measurements["trace_s"] = time.perf_counter() - start
    text = printed.getvalue().strip()
    if text:
        first = text.splitlines()[0][:120]
        findings.append(
            CheckFinding(
                "purity", "warning",
                f"prints while tracing ({first!r}): print runs once per compilation and shows"
                " tracers, not values",
                "use jax.debug.print('{x}', x=x)",
            )
        )  # fmt: skip
    for name, value in watched.items():
        now = module_globals.get(name, value) if name in module_globals else value
        if _fingerprint(now) != before[name]:
            leaked = _tracers_in(now)
            what = "rebinds the global" if id(now) != before[name][0] else "changes"
            findings.append(
                CheckFinding(
                    "purity", "error" if leaked else "warning",
                    f"{what} `{name}` while tracing"
                    + (" and stores traced values in it (they leak out of the trace)"
                       if leaked else ": it happens once per compilation, not once per call"),
                    "return the new value instead of storing it outside the function",
                )
            )  # fmt: skip
    return True


# -- finite values -------------------------------------------------------------------


def _float_leaves(tree) -> list[np.ndarray]:
    import jax

    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    return [leaf for leaf in leaves if np.issubdtype(leaf.dtype, np.inexact)]


def finite(fn, args, static, findings) -> None:
    """NaN and division by zero inside the function (checkify), non-finite outputs."""
    import jax
    from jax.experimental import checkify

    call, dynamic = _call_with(fn, args, static)
    checked = jax.jit(checkify.checkify(call, errors=checkify.float_checks))
    error, out = checked(*dynamic)
    message = error.get()
    if message:
        findings.append(
            CheckFinding(
                "finite", "error", message.strip().splitlines()[0],
                "guard the operation's input (jnp.where before log, sqrt or a division), or"
                " check the arguments",
            )
        )  # fmt: skip
    bad = sum(
        int(np.size(leaf) - np.count_nonzero(np.isfinite(leaf))) for leaf in _float_leaves(out)
    )
    if bad:
        findings.append(
            CheckFinding(
                "finite",
                "error",
                f"the output holds {bad} non-finite value(s) (NaN or Inf)",
                "find where they first appear: jax.config.update("
                "'jax_debug_nans', True) stops at the first NaN",
            )
        )


# -- gradients -------------------------------------------------------------------------


def gradients(fn, args, static, findings, measurements, seed: int) -> None:
    """Gradient of a random projection of the outputs: finite, and equal to central differences."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    call, dynamic = _call_with(fn, args, static)
    floating = [
        i for i, value in enumerate(dynamic)
        if (leaves := jax.tree.leaves(value))
        and all(np.issubdtype(np.asarray(leaf).dtype, np.inexact) for leaf in leaves)
    ]  # fmt: skip
    if not floating:
        findings.append(CheckFinding("gradient", "info", "no float argument to differentiate"))
        return
    rng = np.random.default_rng(seed)
    out = jax.jit(call)(*dynamic)
    out_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(out)]
    weights = [rng.normal(size=leaf.shape) for leaf in out_leaves]
    if not any(np.issubdtype(leaf.dtype, np.inexact) for leaf in out_leaves):
        findings.append(CheckFinding("gradient", "info", "no float output to differentiate"))
        return

    def objective(*values):
        full = list(dynamic)
        for i, value in zip(floating, values, strict=True):
            full[i] = value
        leaves = jax.tree.leaves(call(*full))
        return sum(
            jnp.sum(w * leaf)
            for w, leaf in zip(weights, leaves, strict=True)
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
        )

    x = [dynamic[i] for i in floating]
    try:
        grads = jax.jit(jax.grad(objective, argnums=tuple(range(len(x)))))(*x)
    except Exception as error:  # e.g. a primitive without a derivative
        meaning, fix = translate(error)
        findings.append(CheckFinding("gradient", "error", f"jax.grad fails: {meaning}", fix))
        return
    flat_x, unravel = ravel_pytree(tuple(x))
    flat_g, _ = ravel_pytree(tuple(grads))
    if not np.all(np.isfinite(flat_g)):
        count = int(np.size(flat_g) - np.count_nonzero(np.isfinite(flat_g)))
        findings.append(
            CheckFinding(
                "gradient",
                "error",
                f"the gradient holds {count} non-finite value(s)",
                "a NaN gradient often comes from sqrt or log at 0, or a jnp.where whose"
                " other branch is NaN: guard the input, not only the output",
            )
        )
        return
    along = jax.jit(lambda z: objective(*unravel(z)))
    scale = max(1.0, float(np.sqrt(np.mean(np.asarray(flat_x) ** 2))))
    step = 1e-6 * scale
    worst = 0.0
    for _ in range(FD_DIRECTIONS):
        v = rng.normal(size=flat_x.shape)
        v /= np.linalg.norm(v)
        numeric = (float(along(flat_x + step * v)) - float(along(flat_x - step * v))) / (2 * step)
        exact = float(np.dot(np.asarray(flat_g), v))
        gap = abs(numeric - exact) / max(abs(numeric), abs(exact), 1e-12)
        worst = max(worst, gap)
    measurements["gradient_vs_finite_differences"] = worst
    if worst > FD_TOLERANCE:
        findings.append(
            CheckFinding(
                "gradient", "warning",
                f"the gradient differs from central finite differences by {worst:.2g} (relative)",
                "check custom_jvp/custom_vjp rules and stop_gradient; at a kink (abs, max,"
                " where) the two may legitimately differ",
            )
        )  # fmt: skip


# -- recompilation and cost ---------------------------------------------------------------------


def _grown(value, extra: int):
    """``value`` with ``extra`` more rows along its first axis (arrays of rank >= 1)."""
    import jax

    def grow(leaf):
        array = np.asarray(leaf)
        if array.ndim == 0:
            return leaf
        return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)])

    return jax.tree.map(grow, value)


def recompilation(fn, args, static, findings, measurements) -> None:
    """Compilations for a repeated call and for new input shapes (jax.monitoring events)."""
    import jax
    import jax.monitoring

    target = getattr(inspect.unwrap(fn), "__name__", None)
    traces: list[float] = []

    def listen(event: str, seconds: float, **info) -> None:
        if event == "/jax/core/compile/jaxpr_trace_duration" and info.get("fun_name") == target:
            traces.append(seconds)

    jitted = jax.jit(fn, static_argnums=static)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        start = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        first = time.perf_counter() - start
        jax.block_until_ready(jitted(*args))
        same = len(traces)
        shapes = 1
        compilations = min(len(traces), 1)
        grown_names = []
        # one argument at a time gets one more row (a batch that grows); those
        # the function accepts show what a new shape costs
        for position, value in enumerate(args):
            if position in static or not any(np.ndim(leaf) for leaf in jax.tree.leaves(value)):
                continue
            grown = tuple(_grown(a, 1) if i == position else a for i, a in enumerate(args))
            before = len(traces)
            try:
                jax.block_until_ready(jitted(*grown))
            except Exception:  # this argument's shape is fixed: nothing to report
                continue
            shapes += 1
            compilations += len(traces) - before
            grown_names.append(str(position))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    if target is None:
        return
    measurements["first_call_s"] = first
    measurements["traces_for_two_identical_calls"] = same
    if same > 1:
        findings.append(
            CheckFinding(
                "recompile", "warning",
                f"traced {same} times for two identical calls: every call compiles again",
                "a static argument's hash changes between calls, or the function object is"
                " created anew: keep one jitted function and hashable static arguments",
            )
        )  # fmt: skip
    if shapes > 1:
        measurements[f"traces_for_{shapes}_input_shapes"] = compilations
        findings.append(
            CheckFinding(
                "recompile", "info",
                f"each new input shape compiles again ({shapes} shapes, {compilations}"
                f" compilations, growing argument(s) {', '.join(grown_names)} by one row;"
                f" the first call took {first:.3g} s)",
                "pad inputs to a few fixed sizes (buckets), or vmap over a batch of fixed shape",
            )
        )  # fmt: skip


def cost(fn, args, static, measurements) -> None:
    """XLA's compiled memory and FLOPs for the example arguments."""
    import jax

    compiled = jax.jit(fn, static_argnums=static).lower(*args).compile()
    memory = compiled.memory_analysis()
    if memory is not None:
        for key in ("argument", "output", "temp", "generated_code"):
            value = getattr(memory, f"{key}_size_in_bytes", None)
            if value is not None:
                measurements[f"{key}_bytes"] = int(value)
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else {}
    for key in ("flops", "transcendentals", "bytes accessed"):
        if analysis and key in analysis:
            measurements[key.replace(" ", "_")] = float(analysis[key])
