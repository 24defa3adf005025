"""``Advice``: what ``jaxpro.plan`` returns, the decision jaxpro would take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxpro._result import Plan, Result, Timings

__all__ = ["Advice"]


def _bytes(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min"


@dataclass(frozen=True, repr=False)
class Advice(Result):
    """The decision jaxpro would take for a problem, made by the code a real run uses.

    Attributes:
        domain: "fit", "cfd", ...
        method: the method chosen.
        call: the Python call that runs it.
        memory_bytes: the expected peak of what jaxpro allocates (None: unknown);
            memory_note: how it was obtained.
        seconds: the expected wall time on the current devices (None: unknown);
            seconds_note: how it was obtained (measured on a short calibration
            run and scaled, or a range).
        validation: the checks the run will make.
        devices: the devices it would use.
        plan: the method and the reasons, as a real run records them.
        timings: what making this advice took.
    """

    domain: str
    method: str
    call: str
    memory_bytes: float | None
    memory_note: str
    seconds: float | None
    seconds_note: str
    validation: tuple[str, ...]
    devices: str
    plan: Plan
    timings: Timings
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "advice"

    def summary(self) -> str:
        lines = [
            f"{self.domain}: {self.method}",
            f"call: {self.call}",
            "why:",
            *(f"  - {reason}" for reason in self.plan.reasons),
            f"expected memory: {_bytes(self.memory_bytes)} ({self.memory_note})",
            f"expected time: {_seconds(self.seconds)} ({self.seconds_note})",
            f"devices: {self.devices}",
            "validation:",
            *(f"  - {check}" for check in self.validation),
        ]
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "method": self.method,
            "call": self.call,
            "memory_bytes": self.memory_bytes,
            "memory_note": self.memory_note,
            "seconds": self.seconds,
            "seconds_note": self.seconds_note,
            "validation": list(self.validation),
            "devices": self.devices,
            **self.extra,
        }

    def plot(self, **kwargs: Any):
        """Advice has no figure: a text panel with the summary."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 4))
        figure.text(0.01, 0.99, self.summary(), va="top", family="monospace", fontsize=7)
        return figure
