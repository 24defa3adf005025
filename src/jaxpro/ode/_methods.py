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

    Implicit solvers get a PI controller (``IMPLICIT_GAINS``). Dopri8 and the
    implicit solvers, given output times, step onto them:
    - Dopri8's interpolant is of lower order than its steps: between steps it was
      10-40x less accurate than at them on the DETEST problems at rtol 1e-9
      (stepping onto 11 output times cost 1-7 more steps there);
    - the implicit solvers' Hermite interpolant takes the derivative ``f`` at each
      step's ends, and on a stiff problem ``f`` multiplies the state's error by the
      stiffness: on Prothero-Robinson (L = 1e5, rtol 1e-6) Kvaerno5 was within 2e-7
      at its steps and 6.7e-4 (3,000x the tolerance) between them; stepping onto
      the output times it is within 0.1x. Robertson at 41 log-spaced times went
      from 3.7x to 0.3x the tolerance (203 steps to 222), Van der Pol (mu = 1e3)
      at 301 times from 81x to 19x (3,012 steps to 3,408).
    """
    import diffrax

    gains = {} if METHODS[method][2] else IMPLICIT_GAINS
    onto_times = method == "dopri8" or not METHODS[method][2]
    onto = {"step_ts": t_eval} if t_eval is not None and onto_times else {}
    normed = {} if norm is None else {"norm": norm}
    return diffrax.PIDController(rtol=rtol, atol=atol, **gains, **onto, **normed)


def signature(leaves) -> tuple:
    """What a compiled program is specialised on, per leaf: its type (a Python float is
    weakly typed, a NumPy float64 is not), shape and dtype."""
    return tuple((type(x), np.shape(x), getattr(x, "dtype", None)) for x in leaves)
