"""Nonlinear least squares: jaxpro's own engine (LM and TRF in one compiled loop).

Entry points: :func:`fit` (named parameters, uncertainties, diagnostics, plan),
:func:`fit_many` (thousands of independent curves in one vectorised solve),
and the SciPy-compatible :func:`curve_fit` and :func:`least_squares`.
"""

import sys
import types

from jaxpro.fit._api import curve_fit as curve_fit
from jaxpro.fit._api import least_squares as least_squares
from jaxpro.fit._fit import FitResult as FitResult
from jaxpro.fit._fit import Interval as Interval
from jaxpro.fit._fit import fit as fit
from jaxpro.fit._many import fit_many as fit_many
from jaxpro.fit._many_result import ManyFitResult as ManyFitResult

__all__ = [
    "FitResult",
    "Interval",
    "ManyFitResult",
    "curve_fit",
    "fit",
    "fit_many",
    "least_squares",
]


class _CallableModule(types.ModuleType):
    """``jaxpro.fit`` is both this subpackage and the function :func:`fit`.

    Importing a submodule binds ``jaxpro.fit`` to the package, so the package
    itself forwards calls to :func:`fit`: ``jaxpro.fit(model, x, y)`` and
    ``jaxpro.fit.curve_fit(...)`` both work.
    """

    def __call__(self, *args, **kwargs):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
