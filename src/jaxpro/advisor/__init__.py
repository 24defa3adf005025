"""The advisor: the decision jaxpro would take for a problem, before running it.

:func:`plan` (also ``jaxpro.plan`` and ``jaxpro plan`` on the command line)
states the method, the call to make, why, the expected memory and time on the
current devices, and the validation that will run. It is computed by the code
the domains run (never a separate table): ``fit`` by the fit's own settings
and layout rules plus a calibration fit, ``cfd`` by one record of the real
simulation, ``md`` by the real simulation's first two chunks, ``ode`` by
``jaxpro.ode.solve`` on a linear stand-in with the stated spectrum, ``bayes``
by ``jaxpro.bayes.fit`` on synthetic data of the stated shape, stopped where
sampling would start.
"""

from __future__ import annotations

from typing import Any

from jaxpro.advisor._advice import Advice as Advice

__all__ = ["DOMAINS", "Advice", "plan"]

DOMAINS = ("fit", "bayes", "ode", "md", "cfd")


def plan(domain: str, **facts: Any) -> Advice:
    """The decision jaxpro would take for a ``domain`` problem described by ``facts``.

    Args:
        domain: "fit" (facts: ``n``, ``params``, ``bounds=False``, ``loss="linear"``,
            ``method=None``, ``calibrate=True``) or "cfd" (facts: ``flow``, ``grid``,
            ``reynolds`` or ``viscosity``, ``t_end``, ``method``, ``precision``: as
            :func:`jaxpro.cfd.simulate`) or "md" (facts: ``n``, ``density``,
            ``temperature``, ``ensemble``, ``steps``, ``cutoff``, ``pressure``,
            ``precision``: a Lennard-Jones fluid, as :func:`jaxpro.md.simulate`) or
            "ode" (facts: ``n`` states, ``stiff`` or ``radius`` (the Jacobian's spectral
            radius), ``span``, ``rtol``, ``atol``, ``points``, ``batch``: see
            :mod:`jaxpro.advisor._ode`) or "bayes" (facts: ``n`` rows,
            ``hierarchical``, ``family``, ``predictors``, ``groups``, ``method``,
            ``num_chains``, ``num_warmup``, ``num_samples``: see
            :mod:`jaxpro.advisor._bayes`).

    Returns:
        An :class:`Advice`.
    """
    from jaxpro.errors import InputError

    if domain == "fit":
        from jaxpro.advisor._fit import plan_fit

        return plan_fit(**facts)
    if domain == "bayes":
        from jaxpro.advisor._bayes import plan_bayes

        return plan_bayes(**facts)
    if domain == "ode":
        from jaxpro.advisor._ode import plan_ode

        return plan_ode(**facts)
    if domain == "md":
        from jaxpro.advisor._md import plan_md

        return plan_md(**facts)
    if domain == "cfd":
        from jaxpro.advisor._cfd import plan_cfd

        return plan_cfd(**facts)
    raise InputError(
        f"must be one of {DOMAINS}",
        argument="domain", received=domain,
    )  # fmt: skip
