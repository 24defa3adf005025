"""A bounded fit whose TRF runs out of evaluations gets LM's interior second opinion.

Oracle: NIST StRD MGH10 (Meyer 1970, "higher difficulty", public domain,
https://www.itl.nist.gov/div898/strd/nls/data/mgh10.shtml): its 16 observations,
start 1 and certified values below, checked against the certified residual sum of
squares. From start 1 with every parameter >= 0, TRF alone drives b1 to 1e-33 and
crawls for ~7,000 evaluations (its default budget is 800; SciPy's TRF does not
converge in 10,000); the certified answer lies well inside the bounds.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from nist import log_relative_error  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import ConvergenceError  # noqa: E402
from jaxpro.fit._orchestrate import interior_answer, resolve_settings  # noqa: E402

X = np.arange(50.0, 126.0, 5.0)
# fmt: off
Y = np.array([34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744,
              8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872], dtype=float)
# fmt: on
START1 = [2.0, 400000.0, 25000.0]
CERTIFIED = np.array([5.6096364710e-03, 6.1813463463e03, 3.4522363462e02])
CERTIFIED_SD = np.array([1.5687892471e-04, 2.3309021107e01, 7.8486103508e-01])
CERTIFIED_RSS = 8.7945855171e01


def meyer(x, b1, b2, b3):
    return b1 * jnp.exp(b2 / (x + b3))


def meyer_numpy(x, b1, b2, b3):
    out = np.empty_like(x)
    for i in range(x.size):  # in place and in Python: runs on the host only
        out[i] = b1 * np.exp(b2 / (x[i] + b3))
    return out


def test_transcription_matches_the_certified_residual_sum_of_squares():
    rss = float(np.sum((np.asarray(meyer(X, *CERTIFIED)) - Y) ** 2))
    assert rss == pytest.approx(CERTIFIED_RSS, rel=1e-9)


@pytest.mark.filterwarnings("ignore::jaxpro.errors.NumPyModelWarning")  # the host model's
@pytest.mark.parametrize("model", [meyer, meyer_numpy], ids=["jax", "host"])
def test_curve_fit_reaches_the_certified_values_inside_the_bounds(model):
    popt, pcov, info, _, status = jaxpro.curve_fit(
        model, X, Y, p0=START1, bounds=(0, np.inf), full_output=True
    )
    assert status > 0
    assert log_relative_error(popt, CERTIFIED).min() >= 6.0
    assert log_relative_error(np.sqrt(np.diag(pcov)), CERTIFIED_SD).min() >= 4.0
    # SciPy's bounded output (TRF's fields), though LM finished the fit
    assert "fjac" not in info and "ipvt" not in info


def test_the_plan_says_trf_ran_out_and_lm_finished_inside():
    result = jaxpro.fit(meyer, X, Y, p0=START1, bounds=(0, np.inf))
    assert log_relative_error(np.asarray(result.values), CERTIFIED).min() >= 6.0
    assert result.plan.method == "lm"
    said = " ".join(result.plan.reasons)
    assert "Trust Region Reflective: parameters have bounds" in said
    assert "TRF used its 800 evaluations without converging" in said
    assert "converged strictly inside them" in said and "it was kept" in said


def test_an_explicit_trf_is_respected():
    with pytest.raises(ConvergenceError, match="max_nfev=800"):
        jaxpro.curve_fit(meyer, X, Y, p0=START1, bounds=(0, np.inf), method="trf")


def test_an_answer_beyond_a_bound_leaves_trfs_result():
    # b3 >= 400 excludes the certified 345: LM's unbounded answer is outside
    with pytest.raises(ConvergenceError, match="max_nfev=800"):
        jaxpro.curve_fit(meyer, X, Y, p0=START1, bounds=([0, 0, 400.0], np.inf))
    result = jaxpro.fit(meyer, X, Y, p0=START1, bounds=([0, 0, 400.0], np.inf))
    assert not result.converged
    assert "ended outside the bounds or on one, so TRF's result stands" in " ".join(
        result.plan.reasons
    )


def _outcome(x, status=1, cost=1.0):
    return SimpleNamespace(x=np.asarray(x, dtype=float), status=status, cost=cost)


def test_interior_answer_rules():
    settings = resolve_settings(2, bounds=([0.0, -1.0], [1.0, 1.0]))
    trf = _outcome([0.5, 0.0], status=0, cost=2.0)
    assert interior_answer(_outcome([0.5, 0.5]), settings, trf)
    assert not interior_answer(_outcome([0.0, 0.5]), settings, trf)  # on a bound
    assert not interior_answer(_outcome([0.5, 1.5]), settings, trf)  # outside
    assert not interior_answer(_outcome([0.5, 0.5], status=0), settings, trf)  # not converged
    assert not interior_answer(_outcome([0.5, 0.5], cost=3.0), settings, trf)  # worse than TRF
