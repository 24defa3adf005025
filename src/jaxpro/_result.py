"""The pieces every domain's result is built from: Plan, Timings, Result.

A result answers three questions in one object: what was computed (the
domain's fields), how (the :class:`Plan`: the method chosen and why), and at
what cost (:class:`Timings`: compilation separated from execution). Every
result prints a plain-text ``summary()``, serialises with ``to_dict()`` (JSON
safe: non-finite floats become the strings "inf", "-inf", "nan"), draws itself
with ``plot()`` and writes ``result.json`` plus its figures with ``save(dir)``;
the CLI's ``--json`` and ``--out`` use exactly these.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Check", "Plan", "Result", "Timings", "format_table", "jsonable"]


def jsonable(value: Any) -> Any:
    """Convert ``value`` (nested dicts, sequences, NumPy/JAX arrays and scalars) to JSON-safe types."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return jsonable(value.to_dict())
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number):
            return number
        return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    if isinstance(value, Sequence):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.ndim == 0:
            return jsonable(array.item())
        return [jsonable(v) for v in array.tolist()]
    return str(value)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, floatfmt: str = ".6g"
) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned.

    Args:
        headers: column titles.
        rows: cell values; floats are formatted with ``floatfmt``.
        floatfmt: format spec for floats.
    """

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return format(float(value), floatfmt)
        return str(value)

    table = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in table:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in table)])


@dataclass(frozen=True)
class Plan:
    """What jaxpro decided to do and why.

    Attributes:
        method: the algorithm chosen (e.g. "trf", "lm", "nuts").
        reasons: one sentence per decision, in the order they were made.
        settings: the knobs that follow from the decisions (path, chunk size,
            tolerances, devices, ...), JSON-safe values.
    """

    method: str
    reasons: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reasons": list(self.reasons),
            "settings": jsonable(self.settings),
        }

    def summary(self) -> str:
        lines = [f"method: {self.method}"]
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.settings:
            knobs = ", ".join(f"{k}={_short(v)}" for k, v in self.settings.items())
            lines.append(f"  settings: {knobs}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".3g")
    return str(value)


@dataclass(frozen=True)
class Check:
    """One validation check.

    Attributes:
        name: "energy_drift", "momentum", "divergence", ...
        value: what was measured.
        limit: the bound it is held to.
        passed: whether it holds.
        message: the measurement in words, with advice when it fails.
    """

    name: str
    value: float
    limit: float
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit,
                "passed": self.passed, "message": self.message}  # fmt: skip


@dataclass(frozen=True)
class Timings:
    """Where the wall-clock time went, in seconds.

    Attributes:
        compile: tracing and XLA compilation (0 when the program was cached;
            None when the engine compiles inside its run and the two cannot be
            told apart, as in NumPyro's MCMC).
        run: executing the compiled program, up to results on the host.
        total: the whole call, including input checks and result assembly.
        programs: ``(program, compile seconds)`` for each compiled program the call
            ran, where the engine reports them (0 for one already compiled in this
            process; one from the disk cache shows the time to load it).
    """

    compile: float | None
    run: float
    total: float
    programs: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"compile_s": self.compile, "run_s": self.run, "total_s": self.total}
        if self.programs:
            out["programs"] = [{"program": name, "compile_s": s} for name, s in self.programs]
        return out

    def summary(self) -> str:
        if self.compile is None:
            return f"time: {self.total:.3g} s (run {self.run:.3g} s, compilation included)"
        text = f"time: {self.total:.3g} s (compile {self.compile:.3g} s, run {self.run:.3g} s)"
        if len(self.programs) > 1 or (self.programs and self.compile > 0):
            text += "; compiled: " + ", ".join(f"{name} {s:.3g} s" for name, s in self.programs)
        return text


class Result:
    """Base class of every domain's result.

    Subclasses provide ``plan`` and ``timings`` attributes and implement
    :meth:`summary`, :meth:`_fields` (the domain's JSON payload) and
    :meth:`plot`.
    """

    plan: Plan
    timings: Timings
    kind: str = "result"

    def summary(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def plot(self, **kwargs: Any):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary: the domain's fields, then the plan and timings."""
        payload = {"kind": self.kind, **self._fields()}
        payload["plan"] = self.plan.to_dict()
        payload["timings"] = self.timings.to_dict()
        return jsonable(payload)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, directory: str | Path, *, figures: bool = True) -> Path:
        """Write ``result.json`` and (unless ``figures=False``) ``<kind>.png`` into ``directory``.

        Returns:
            The directory, created if needed.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(self.to_json() + "\n")
        if figures:
            # plot() builds a bare matplotlib Figure (no pyplot), so saving
            # needs no display and leaves the user's backend alone.
            self.plot().savefig(out / f"{self.kind}.png", dpi=120, bbox_inches="tight")
        return out

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer, cycle):  # IPython
        printer.text(self.summary())
