"""Bayesian inference on NumPyro with an expert's method choice, honest diagnostics and repairs.

Entry point: :func:`sample` (returns a :class:`Posterior`); :class:`Gate` sets
the checks a posterior must pass.
"""

from jaxpro.bayes._diagnose import Gate as Gate
from jaxpro.bayes._posterior import Posterior as Posterior
from jaxpro.bayes._sample import sample as sample

__all__ = ["Gate", "Posterior", "sample"]
