"""jaxpro: expert-grade scientific computing on JAX.

``import jaxpro`` is light: JAX and the domain engines load on first use of
the function that needs them. The public entry points are

- :func:`jaxpro.fit`, :func:`jaxpro.curve_fit`, :func:`jaxpro.least_squares`
  (nonlinear least squares, :mod:`jaxpro.fit`);
- :func:`jaxpro.cfd.simulate` (2-D incompressible flows, :mod:`jaxpro.cfd`);
- :func:`jaxpro.plan` (the decision jaxpro would take, :mod:`jaxpro.advisor`);
- :func:`jaxpro.core.pmap_batch` (a function mapped over a batch split over
  every device, :mod:`jaxpro.core`);
- :mod:`jaxpro.errors`, :mod:`jaxpro.expr` and :mod:`jaxpro.io`, shared by
  every domain.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access so that
# `import jaxpro` does not import JAX.
_LAZY = {
    "fit": None,  # the subpackage, callable as the function jaxpro.fit.fit
    "curve_fit": "jaxpro.fit",
    "fit_many": "jaxpro.fit",
    "ManyFitResult": "jaxpro.fit",
    "least_squares": "jaxpro.fit",
    "FitResult": "jaxpro.fit",
    "use_cpu_cores": "jaxpro.core._mesh",
    "plan": "jaxpro.advisor",
    "advisor": None,
    "bayes": None,
    "cfd": None,
    "core": None,
    "md": None,
    "ode": None,
    "errors": None,
    "expr": None,
    "io": None,
}

if TYPE_CHECKING:  # pragma: no cover
    from jaxpro import advisor, bayes, cfd, core, errors, expr, io, md, ode
    from jaxpro.advisor import plan
    from jaxpro.core._mesh import use_cpu_cores
    from jaxpro.fit import FitResult, ManyFitResult, curve_fit, fit, fit_many, least_squares

__all__ = [
    "FitResult",
    "ManyFitResult",
    "__version__",
    "advisor",
    "bayes",
    "cfd",
    "core",
    "curve_fit",
    "errors",
    "expr",
    "fit",
    "fit_many",
    "io",
    "least_squares",
    "md",
    "ode",
    "plan",
    "use_cpu_cores",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxpro' has no attribute {name!r}")
    module_name = _LAZY[name]
    if module_name is None:
        value = importlib.import_module(f"jaxpro.{name}")
    else:
        value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
