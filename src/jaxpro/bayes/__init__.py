"""Bayesian inference on NumPyro with an expert's method choice, honest diagnostics and repairs.

Entry points: :func:`sample` for a NumPyro model (returns a :class:`Posterior`)
and :func:`fit` for a regression formula such as ``"y ~ x + (1 + x | g)"``
(returns a :class:`FormulaPosterior`); :class:`Gate` sets the checks a
posterior must pass.
"""

from jaxpro.bayes._diagnose import Gate as Gate
from jaxpro.bayes._fit import FormulaPosterior as FormulaPosterior
from jaxpro.bayes._fit import fit as fit
from jaxpro.bayes._posterior import Posterior as Posterior
from jaxpro.bayes._sample import sample as sample

__all__ = ["FormulaPosterior", "Gate", "Posterior", "fit", "sample"]
