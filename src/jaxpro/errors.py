"""The exceptions and warnings jaxpro raises.

Every error jaxpro raises on purpose is a :class:`JaxproError`, so ``except
jaxpro.errors.JaxproError`` catches all of them and nothing else. Each one also
derives from the built-in exception a Python user would expect (``ValueError``
for bad input, ``RuntimeError`` for a result that failed validation), so code
written for SciPy keeps working.

Messages name the argument at fault and quote what was received, so the user
can fix the call without reading a traceback.
"""

from __future__ import annotations

import os
import reprlib
import warnings

__all__ = [
    "BackendStartedError",
    "ConvergenceError",
    "InputError",
    "InputTypeError",
    "JaxproError",
    "JaxproWarning",
    "ModelError",
    "NumPyModelWarning",
    "OptimizeWarning",  # noqa: F822 - built on first use by __getattr__ below
    "SimulationError",
    "SimulationWarning",
    "describe",
    "warn",
]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 6
_short.maxtuple = 6
_short.maxdict = 6


def describe(value: object) -> str:
    """A short, quotable description of ``value`` for an error message.

    Arrays are described by shape and dtype (their contents can be huge);
    everything else by a truncated ``repr``.
    """
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return _short.repr(value)


class JaxproError(Exception):
    """Base class of every error jaxpro raises deliberately."""


class InputError(JaxproError, ValueError):
    """An argument is unusable: wrong shape, type, value or content.

    Args:
        message: what is wrong and how to fix it.
        argument: the name of the argument at fault (``"p0"``, ``"--model"``).
        received: the offending value; it is quoted (shortened) in the message.
    """

    def __init__(self, message: str, *, argument: str | None = None, received: object = ...):
        self.argument = argument
        self.received = received
        text = message
        if argument is not None and not message.startswith(f"{argument}:"):
            text = f"{argument}: {message}"
        if received is not ...:
            text = f"{text} (got {describe(received)})"
        super().__init__(text)


class InputTypeError(InputError, TypeError):
    """Bad input where SciPy raises ``TypeError``: a function called with the wrong arguments.

    For example ``args`` that the residual function does not accept, or fewer
    data points than the model has parameters. Both ``except ValueError`` and
    ``except TypeError`` catch it.
    """


class ModelError(JaxproError, ValueError):
    """A user model cannot be traced by JAX, or returns the wrong shape or non-finite values.

    The message carries the usual fix when the cause is recognised (NumPy
    calls on traced values, Python ``if`` on a traced value, ...).
    """


class ConvergenceError(JaxproError, RuntimeError):
    """A result failed validation and the caller asked for strictness.

    Attributes:
        result: the (untrustworthy) result object, kept for inspection.
    """

    def __init__(self, message: str, result: object = None):
        self.result = result
        super().__init__(message)


class BackendStartedError(JaxproError, RuntimeError):
    """A setting that must precede JAX's backend start came too late (e.g. the CPU device count)."""


class JaxproWarning(UserWarning):
    """Base class of jaxpro's warnings."""


def __getattr__(name: str):
    # OptimizeWarning derives from SciPy's, so code written for SciPy
    # (``pytest.warns(scipy.optimize.OptimizeWarning)``, warning filters)
    # catches jaxpro's too. It is built on first use: scipy.optimize takes a
    # few hundred milliseconds to import and `import jaxpro` stays light.
    if name == "OptimizeWarning":
        from scipy.optimize import OptimizeWarning as ScipyOptimizeWarning

        cls = type(
            "OptimizeWarning",
            (ScipyOptimizeWarning, JaxproWarning),
            {
                "__module__": __name__,
                "__doc__": "An optimisation result needs care (e.g. the covariance could not be"
                " estimated); a ``scipy.optimize.OptimizeWarning`` and a :class:`JaxproWarning`.",
            },
        )
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NumPyModelWarning(JaxproWarning):
    """A function JAX cannot trace ran on the host (as SciPy runs it): slower, finite differences.

    The message says why it could not be traced, what the host evaluations
    cost and the jax.numpy rewrite that would avoid them.
    """


class SimulationError(JaxproError, RuntimeError):
    """A simulation cannot go on (NaN energies, a neighbour list that cannot be sized).

    Attributes:
        step: the step where it was found (the last record before it is good).
        partial: what was computed up to there (a Trajectory), or None.
    """

    def __init__(self, message: str, *, step: int | None = None, partial: object = None):
        self.step = step
        self.partial = partial
        super().__init__(message)


class SimulationWarning(JaxproWarning):
    """A simulation ran but failed a validation check (energy drift, temperature off target)."""


# jaxpro's own source folder: warnings are attributed to the first frame outside it
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = JaxproWarning) -> None:
    """Warn at the user's line: the first caller outside jaxpro, however deep the call.

    A fixed ``stacklevel`` points into jaxpro whenever the same warning is
    reached through another entry point (``curve_fit`` against ``fit``, the
    host loop against the compiled path); ``skip_file_prefixes`` (Python
    3.12) skips every jaxpro frame instead.

    Args:
        message: the text; category: a ``Warning`` subclass (jaxpro's own).
    """
    warnings.warn(message, category, skip_file_prefixes=(_PACKAGE_DIR,))
