"""Differential equations on Diffrax: the solver chosen for you, the solution checked.

Entry point: :func:`solve` (an initial-value problem, ``solve_ivp``-like), which
returns an :class:`ODESolution` with its output times and states, solver
statistics, success flag and message, and the plan (which solver and why);
:func:`solver`, the same solve as a differentiable JAX function of ``(y0, args)``
with the adjoint chosen (an :class:`ODEFunction`); :func:`fit`, parameters (and
initial states) from observations by jaxpro's least-squares engine;
:func:`bayes_fit`, their posterior by NUTS through the solver (jaxpro.bayes);
:func:`steady_state`, where a system settles (:class:`SteadyState`), with
implicit-function gradients through ``solver(f, (t0, inf), None, ...)``;
:func:`solve_sde`, Ito SDEs on one path or an ensemble.
Diffrax loads on first use.
"""

from jaxpro.ode._bayes import bayes_fit as bayes_fit
from jaxpro.ode._fit import fit as fit
from jaxpro.ode._function import ODEFunction as ODEFunction
from jaxpro.ode._function import solver as solver
from jaxpro.ode._sde import solve_sde as solve_sde
from jaxpro.ode._solution import ODESolution as ODESolution
from jaxpro.ode._solve import solve as solve
from jaxpro.ode._steady import SteadyState as SteadyState
from jaxpro.ode._steady import steady_state as steady_state

__all__ = [
    "ODEFunction",
    "ODESolution",
    "SteadyState",
    "bayes_fit",
    "fit",
    "solve",
    "solve_sde",
    "solver",
    "steady_state",
]
