"""Fluid dynamics: 2-D incompressible Navier-Stokes, checked.

Entry point: :func:`simulate` (a named flow or a user's velocity field, a grid
and a Reynolds number), which returns a :class:`FlowResult` with energy,
enstrophy and divergence records, the final velocity and vorticity, the
validation checks, the plan (which solver and why) and timings; :func:`solver`,
the same solve as a differentiable JAX function of the start field and the
viscosity (a :class:`FlowFunction`). Periodic flows
run on JAX-CFD (pseudo-spectral or finite volumes); walled flows (lid-driven
cavity, channel) on jaxpro's own projection solver. JAX-CFD loads on first use.
"""

from jaxpro.cfd._flowresult import FlowResult as FlowResult
from jaxpro.cfd._function import FlowFunction as FlowFunction
from jaxpro.cfd._function import solver as solver
from jaxpro.cfd._simulate import simulate as simulate

__all__ = ["FlowFunction", "FlowResult", "simulate", "solver"]
