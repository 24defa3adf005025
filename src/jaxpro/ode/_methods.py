"""The solvers ``jaxpro.ode`` runs and how they are set up: Diffrax's classes by name,
the implicit solvers' Newton iteration and step-size control."""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["IMPLICIT_GAINS", "METHODS", "NEWTON_KAPPA", "controller", "make_solver",
           "signature", "split_parts", "summed"]  # fmt: skip

# name -> (Diffrax class name, stages per step for the evaluation estimate, explicit?)
METHODS = {
    "tsit5": ("Tsit5", 6, True),
    "dopri5": ("Dopri5", 6, True),
    "dopri8": ("Dopri8", 12, True),
    "kvaerno5": ("Kvaerno5", 7, False),
    "kencarp5": ("KenCarp5", 8, False),  # IMEX: f = (explicit part, implicit part)
}
# Implicit solvers: a PI step-size controller, and a Newton (chord) iteration that
# accepts a stage once its predicted remaining error is under NEWTON_KAPPA x the
# tolerance (Hairer-Wanner's kappa, which they put between 0.01 and 0.1; Diffrax's
# default is 0.01). Measured with Kvaerno5 on Robertson, Van der Pol (mu = 1e3),
# HIRES, the Oregonator and Prothero-Robinson, at rtol 1e-4, 1e-6 and 1e-8 against
# Radau at rtol 1e-12: kappa 0.01 with gains (0.3, 0.4) rejected 25-50% of steps, most
# because Newton stopped short, not for error; kappa 0.1 with (0.4, 0.3) took 1.7-2.8x
# fewer steps, as accurately (every final error within 1.6x the tolerance, the
# same spread as before), and at rtol 1e-8 finished the Oregonator, where the old
# settings ran out of 200,000 steps. kappa 0.2 overshot the tolerance 2x there.
IMPLICIT_GAINS = {"pcoeff": 0.4, "icoeff": 0.3}
NEWTON_KAPPA = 0.1


def make_solver(method: str):
    """The Diffrax solver for ``method``; implicit ones with the chord iteration's
    ``kappa`` set to ``NEWTON_KAPPA`` (tolerances taken from the step-size controller)."""
    import diffrax

    cls = getattr(diffrax, METHODS[method][0])
    if METHODS[method][2]:
        return cls()
    newton = diffrax.with_stepsize_controller_tols(diffrax.VeryChord)(kappa=NEWTON_KAPPA)
    return cls(root_finder=newton)


def split_parts(f):
    """``(explicit, implicit)`` for a split right-hand side (a pair of functions), else None."""
    if isinstance(f, tuple | list) and len(f) == 2 and all(callable(g) for g in f):
        return tuple(f)
    return None


@functools.lru_cache(maxsize=64)
def summed(explicit, implicit):
    """``f = explicit + implicit`` (one function object per pair: compiled programs and
    the stiffness memory are keyed by it)."""
    import jax

    def f(t, y, args):
        return jax.tree.map(lambda a, b: a + b, explicit(t, y, args), implicit(t, y, args))

    return f


def controller(method: str, rtol, atol, t_eval=None, norm=None):
    """Diffrax's adaptive step-size controller for ``method``.

    Implicit solvers get a PI controller (``IMPLICIT_GAINS``). Dopri8 with output
    times steps onto them: its interpolant is of lower order than its steps, and
    between steps it was 10-40x less accurate than at them on the DETEST problems
    at rtol 1e-9 (stepping onto 11 output times cost 1-7 more steps there).
    """
    import diffrax

    gains = {} if METHODS[method][2] else IMPLICIT_GAINS
    onto = {"step_ts": t_eval} if t_eval is not None and method == "dopri8" else {}
    normed = {} if norm is None else {"norm": norm}
    return diffrax.PIDController(rtol=rtol, atol=atol, **gains, **onto, **normed)


def signature(leaves) -> tuple:
    """What a compiled program is specialised on, per leaf: its type (a Python float is
    weakly typed, a NumPy float64 is not), shape and dtype."""
    return tuple((type(x), np.shape(x), getattr(x, "dtype", None)) for x in leaves)
