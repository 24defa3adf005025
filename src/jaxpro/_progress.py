"""A progress bar (rich) for long runs, shown only on a terminal unless asked for."""

from __future__ import annotations

import contextlib
import sys

__all__ = ["progress_bar"]


def progress_bar(enabled: bool | None, total: float, *, by: str = "advance",
                 label: str = "simulating"):  # fmt: skip
    """A context yielding ``update(value)`` (or None when the bar is off).

    Args:
        enabled: True, False, or None for "when stderr is a terminal".
        total: the bar's full length (steps, flow time, ...).
        by: "advance" (each value adds to the bar) or "completed" (each value is
            the position reached).
        label: the text before the bar.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda value: progress.update(task, **{by: value})

    return bar()
