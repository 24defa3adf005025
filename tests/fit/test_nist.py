"""NIST StRD nonlinear regression: certified values at default settings.

Oracle: the certified parameter values and standard errors (tests/data/nist-strd).
Criterion (the issue's): every problem-start reaches >= 6 correct digits (log
relative error) in every parameter and >= 4 in every standard error, except
Lanczos1's standard errors (its certified residual is rounding noise, see the
data README).
"""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from nist import NAMES, load, log_relative_error  # noqa: E402

import jaxpro  # noqa: E402

CASES = [(name, start) for name in NAMES for start in (0, 1)]


def _digits(problem, start, **kwargs):
    popt, pcov = jaxpro.curve_fit(
        problem.model, problem.x, problem.y, p0=problem.starts[start], **kwargs
    )
    params = log_relative_error(popt, problem.certified_values).min()
    errors = log_relative_error(np.sqrt(np.diag(pcov)), problem.certified_std_errors).min()
    return params, errors


@pytest.mark.parametrize(("name", "start"), CASES, ids=[f"{n}-start{s + 1}" for n, s in CASES])
def test_defaults_reach_certified_digits(name, start):
    problem = load(name)
    params, errors = _digits(problem, start)
    assert params >= 6.0, (
        f"{name} start {start + 1}: {params:.1f} correct digits in the parameters, need >= 6"
    )
    if name != "Lanczos1":
        assert errors >= 4.0, (
            f"{name} start {start + 1}: {errors:.1f} digits in the standard errors, need >= 4"
        )


@pytest.mark.parametrize(("name", "start"), CASES, ids=[f"{n}-start{s + 1}" for n, s in CASES])
def test_trf_reaches_certified_digits(name, start):
    problem = load(name)
    params, errors = _digits(problem, start, method="trf")
    assert params >= 6.0, f"TRF {name} start {start + 1}: {params:.1f} digits, need >= 6"
    if name != "Lanczos1":
        assert errors >= 4.0, (
            f"TRF {name} start {start + 1}: {errors:.1f} digits in std errors, need >= 4"
        )
