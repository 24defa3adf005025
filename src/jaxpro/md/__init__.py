"""Molecular dynamics on JAX-MD: validated simulations with the method chosen for you.

Entry points: the systems :func:`lennard_jones_fluid`, :func:`morse_fluid`,
:func:`soft_sphere_system` and :func:`custom_system` (a :class:`System`), and
:func:`simulate`, which returns a :class:`Trajectory` with its energies,
temperature, pressure, sampled positions, validation checks and plan. JAX-MD
loads on first use.
"""

from jaxpro.md._fit import PotentialFit as PotentialFit
from jaxpro.md._fit import fit_potential as fit_potential
from jaxpro.md._potentials import PairPotential as PairPotential
from jaxpro.md._simulate import simulate as simulate
from jaxpro.md._systems import System as System
from jaxpro.md._systems import custom_system as custom_system
from jaxpro.md._systems import lennard_jones_fluid as lennard_jones_fluid
from jaxpro.md._systems import morse_fluid as morse_fluid
from jaxpro.md._systems import soft_sphere_system as soft_sphere_system
from jaxpro.md._trajectory import Check as Check
from jaxpro.md._trajectory import Trajectory as Trajectory

__all__ = [
    "Check",
    "PairPotential",
    "PotentialFit",
    "System",
    "Trajectory",
    "custom_system",
    "fit_potential",
    "lennard_jones_fluid",
    "morse_fluid",
    "simulate",
    "soft_sphere_system",
]
