"""Nonlinear least squares: jaxpro's own engine (LM and TRF in one compiled loop).

Entry points: :func:`curve_fit` and :func:`least_squares` (SciPy-compatible).
"""

from jaxpro.fit._api import curve_fit as curve_fit
from jaxpro.fit._api import least_squares as least_squares

__all__ = ["curve_fit", "least_squares"]
