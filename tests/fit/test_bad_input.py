"""Bad input to curve_fit, fit and least_squares: each check fails early and names the argument.

Every error is a :class:`jaxpro.errors.InputError` (unusable argument) or
:class:`jaxpro.errors.ModelError` (a model JAX cannot trace, or one returning
the wrong shape or non-finite values at p0); both are ``ValueError`` s. The
messages start with the argument at fault (``"p0: ..."``) and quote or
describe what was received.

Most checks fail before anything is compiled; the few that need a solve reuse
module-level models so that each compiles once.
"""

import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import (  # noqa: E402
    InputError,
    InputTypeError,
    JaxproError,
    ModelError,
    NumPyModelWarning,
)

N = 20
X = np.linspace(0.0, 4.0, N)
Y = 2.0 * np.exp(-1.3 * X) + 0.5 + np.random.default_rng(0).normal(0.0, 0.01, N)
ONES = np.ones(N)


# ----------------------------------------------------------------------------- models


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def residuals(p):
    return p - jnp.array([1.0, 2.0])


def numpy_model(x, a, b):
    return a * np.exp(-b * x)


def branching_model(x, a, b):
    if a > 0:
        return a * x + b
    return b * x


def two_column_model(x, a, b):
    return jnp.stack([a * x, b * x], axis=1)


def short_model(x, a, b):
    return a * x[:-1] + b


def failing_model(x, a, b):
    raise KeyError("boom")


def log_model(x, a, b):
    return a * jnp.log(x - b)


# ----------------------------------------------------------------------------- helpers

# The argument names of each entry point: curve_fit follows SciPy (xdata,
# ydata), fit and least_squares use their own signatures (x, y; x0).
ARGS = {
    "curve_fit": {"x": "xdata", "y": "ydata", "p0": "p0"},
    "fit": {"x": "x", "y": "y", "p0": "p0"},
    "least_squares": {"p0": "x0"},
}


def call(entry, *args, **kwargs):
    """Call an entry point by name with curve_fit-style arguments ``(model, x, y, p0)``."""
    if entry == "curve_fit":
        return jaxpro.curve_fit(*args, **kwargs)
    if entry == "fit":
        return jaxpro.fit(*args, **kwargs)
    raise AssertionError(entry)


def check(info, kind, argument=None, contains=()):
    """The raised exception is ``kind``, a ValueError, names ``argument`` and says ``contains``."""
    exc = info.value
    text = str(exc)
    assert type(exc) is kind, f"{type(exc).__name__}: {text}"
    assert isinstance(exc, ValueError)
    assert isinstance(exc, JaxproError)
    if argument is not None:
        assert exc.argument == argument, text
        assert text.startswith(f"{argument}: "), text
    for piece in contains:
        assert piece in text, f"{piece!r} not in {text!r}"
    return text


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_x_y_length_mismatch(entry):
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y[:-1])
    check(info, InputError, ARGS[entry]["x"], ("20", "19"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_two_row_x_against_longer_y(entry):
    with pytest.raises(InputError) as info:
        call(entry, decay, np.ones((2, N)), np.ones(N + 1), p0=[1.0, 1.0, 1.0])
    check(info, InputError, ARGS[entry]["x"], (f"{N} points", f"{N + 1}", "(2, 20)"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_fewer_points_than_parameters(entry):
    # curve_fit raises SciPy's class there (TypeError), still an InputError
    kind = InputTypeError if entry == "curve_fit" else InputError
    with pytest.raises(InputError) as info:
        call(entry, decay, X[:2], Y[:2])
    check(info, kind, ARGS[entry]["y"], ("2 data points", "3 parameters"))


def test_least_squares_lm_needs_as_many_residuals_as_variables():
    with pytest.raises(InputError) as info:
        jaxpro.least_squares(lambda p: p[:1] - 1.0, [5.0, 1.0], method="lm")
    check(info, InputError, "method", ("(1)", "(2)", "'lm'"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_nan_in_y_names_the_index(entry):
    y = Y.copy()
    y[3] = np.nan
    with pytest.raises(InputError) as info:
        call(entry, decay, X, y)
    check(info, InputError, ARGS[entry]["y"], ("index 3", "NaN"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_inf_in_x_names_the_index(entry):
    x = X.copy()
    x[5] = np.inf
    with pytest.raises(InputError) as info:
        call(entry, decay, x, Y)
    check(info, InputError, ARGS[entry]["x"], ("index 5", "Inf"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_nan_in_sigma_names_the_index(entry):
    sigma = ONES.copy()
    sigma[7] = np.nan
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, sigma=sigma)
    check(info, InputError, "sigma", ("index 7",))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
@pytest.mark.parametrize("policy", ["propagate", "bogus"])
def test_unusable_nan_policy(entry, policy):
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, nan_policy=policy)
    check(info, InputError, "nan_policy", ("omit",))


def test_nan_policy_omit_drops_nan_rows_and_fits():
    x, y = X.copy(), Y.copy()
    y[[2, 11]] = np.nan
    x[15] = -np.inf
    keep = np.isfinite(x) & np.isfinite(y)
    p0 = [1.0, 1.0, 0.0]

    popt, pcov = jaxpro.curve_fit(decay, x, y, p0=p0, nan_policy="omit")
    clean_popt, clean_pcov = jaxpro.curve_fit(decay, x[keep], y[keep], p0=p0)
    np.testing.assert_allclose(popt, clean_popt, rtol=1e-10)
    np.testing.assert_allclose(pcov, clean_pcov, rtol=1e-10)

    result = jaxpro.fit(decay, x, y, p0=p0, nan_policy="omit")
    assert result.n == keep.sum() == N - 3
    np.testing.assert_allclose(result.values, clean_popt, rtol=1e-10)
    np.testing.assert_allclose(result.covariance, clean_pcov, rtol=1e-10)


# ----------------------------------------------------------------------------- p0 and bounds


@pytest.mark.parametrize("p0", [[1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
def test_curve_fit_p0_of_the_wrong_length(p0):
    # the model cannot be called with p0: SciPy's TypeError, still an InputError
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(decay, X, Y, p0=p0)
    check(info, InputTypeError, "p0", (f"{len(p0)} parameters",))


def test_fit_p0_of_the_wrong_length():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, p0=[1.0, 1.0])
    check(info, InputError, "p0", ("2 values", "3 parameters", "[1.0, 1.0]"))


def test_least_squares_x0_not_one_dimensional():
    with pytest.raises(InputError) as info:
        jaxpro.least_squares(residuals, [[5.0, 1.0]])
    check(info, InputError, "x0", ("1-D", "(1, 2)"))


def test_fit_p0_dict_with_an_unknown_name():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, p0={"a": 1.0, "b": 1.0, "c": 1.0, "d": 2.0})
    check(info, InputError, "p0", ("unknown parameter", "d", "a, b, c"))


def test_fit_p0_dict_with_a_missing_name():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, p0={"a": 1.0, "b": 1.0})
    check(info, InputError, "p0", ("no starting value for c", "{'a': 1.0, 'b': 1.0}"))


def test_curve_fit_p0_outside_the_bounds():
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(decay, X, Y, p0=[1.0, 5.0, 1.0], bounds=(0.0, 2.0))
    check(info, InputError, "p0", ("parameter 1", "= 5", "[0, 2]"))


def test_fit_p0_outside_the_bounds_names_the_parameter():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, p0={"a": 1.0, "b": 5.0, "c": 1.0}, bounds={"b": (0.0, 2.0)})
    check(info, InputError, "p0", ("b = 5", "[0, 2]"))


def test_least_squares_x0_outside_the_bounds():
    with pytest.raises(InputError) as info:
        jaxpro.least_squares(residuals, [5.0, 1.0], bounds=(0.0, 2.0))
    check(info, InputError, "x0", ("parameter 0", "= 5", "[0, 2]"))


@pytest.mark.parametrize("upper_b", [1.0, 0.5])
def test_curve_fit_lower_not_below_upper(upper_b):
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(decay, X, Y, bounds=([0.0, 1.0, 0.0], [2.0, upper_b, 2.0]))
    check(info, InputError, "bounds", ("parameter 1", f"lower 1 >= upper {upper_b:g}"))


def test_fit_lower_not_below_upper():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, bounds={"b": (3.0, 1.0)})
    check(info, InputError, "bounds", ("parameter 1", "lower 3 >= upper 1"))


def test_least_squares_lower_not_below_upper():
    with pytest.raises(InputError) as info:
        jaxpro.least_squares(residuals, [1.0, 1.0], bounds=(2.0, 2.0))
    check(info, InputError, "bounds", ("parameter 0", "lower 2 >= upper 2"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_bounds_of_the_wrong_length(entry):
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, bounds=([0.0, 0.0], [1.0, 1.0]))
    check(info, InputError, "bounds", ("3 values", "[0.0, 0.0]"))


def test_fit_bounds_dict_with_an_unknown_name():
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, bounds={"z": (0.0, 1.0)})
    check(info, InputError, "bounds", ("'z'", "a, b, c"))


# ----------------------------------------------------------------------------- sigma


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_sigma_with_a_zero(entry):
    sigma = ONES.copy()
    sigma[4] = 0.0
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, sigma=sigma)
    check(info, InputError, "sigma", ("> 0", "index 4 has 0"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_sigma_negative(entry):
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, sigma=-ONES)
    check(info, InputError, "sigma", ("> 0", "index 0 has -1"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
@pytest.mark.parametrize("shape", [(N - 1,), (N, 3), (N + 1, N + 1)])
def test_sigma_of_the_wrong_shape(entry, shape):
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, sigma=np.ones(shape))
    check(info, InputError, "sigma", (f"({N},) or ({N}, {N})", f"shape {shape}"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_two_d_sigma_not_positive_definite(entry):
    sigma = np.eye(N)
    sigma[3, 3] = -1.0
    with pytest.raises(InputError) as info:
        call(entry, decay, X, Y, sigma=sigma)
    check(info, InputError, "sigma", ("positive-definite",))


# ----------------------------------------------------------------------------- models


# A model JAX cannot trace is no longer refused: it runs as its exact
# jax.numpy translation, or on the host (tests/fit/test_numpy_model.py). The
# tracing error and its fix survive where the model fails on NumPy arrays too.


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_model_calling_numpy_fits_through_its_translation(entry):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumPyModelWarning)  # translated: no host path
        result = call(entry, numpy_model, X, Y)
    values = result[0] if entry == "curve_fit" else result.values
    assert np.all(np.isfinite(values))


def test_least_squares_fun_calling_numpy_fits():
    result = jaxpro.least_squares(lambda p: np.exp(p) - 2.0, [1.0, 1.0])
    np.testing.assert_allclose(result.x, np.log([2.0, 2.0]), rtol=1e-10)


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_model_with_python_if_on_a_parameter_runs_on_the_host(entry):
    with pytest.warns(NumPyModelWarning, match=r"jnp\.where for if"):
        call(entry, branching_model, X, Y)


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
@pytest.mark.parametrize("model", [two_column_model, short_model], ids=["n-by-2", "n-minus-1"])
def test_model_returning_the_wrong_shape(entry, model):
    with pytest.raises(ModelError) as info:
        call(entry, model, X, Y)
    check(info, ModelError, contains=("shape",))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_model_raising_while_tracing_is_named(entry):
    with pytest.raises(ModelError) as info:
        call(entry, failing_model, X, Y)
    check(info, ModelError, contains=("KeyError", "boom"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_model_non_finite_everywhere_at_p0(entry):
    # b = 10 lies above every x: log of a negative number at every point
    with pytest.raises(ModelError) as info:
        call(entry, log_model, X, Y, p0=[1.0, 10.0])
    check(info, ModelError, contains=("p0", "non-finite", f"{N} of {N} points", "index 0"))


@pytest.mark.parametrize("entry", ["curve_fit", "fit"])
def test_model_non_finite_at_some_points_names_the_first(entry):
    # x runs from 4 down to 0; with b = 2.5 the log is NaN from index 8 on
    x = X[::-1].copy()
    bad = np.flatnonzero(x - 2.5 < 0)
    assert bad[0] == 8
    with pytest.raises(ModelError) as info:
        call(entry, log_model, x, Y, p0=[1.0, 2.5])
    check(info, ModelError, contains=("p0", f"{bad.size} of {N} points", "index 8"))


def test_least_squares_fun_non_finite_at_x0():
    with pytest.raises(ModelError) as info:
        jaxpro.least_squares(lambda p: jnp.log(p), [-1.0, 1.0])
    check(info, ModelError, contains=("x0", "non-finite"))


def test_least_squares_fun_returning_a_2d_array():
    # SciPy: "`fun` must return at most 1-d array_like"
    with pytest.raises(ModelError) as info:
        jaxpro.least_squares(lambda p: jnp.stack([p - 1.0, p + 1.0]), [5.0, 1.0])
    check(info, ModelError, contains=("fun", "1-D", "(2, 2)"))


def test_fit_model_neither_callable_nor_string():
    with pytest.raises(InputError) as info:
        jaxpro.fit(5, X, Y)
    check(info, InputError, "model", ("expression", "5"))


@pytest.mark.parametrize(
    ("expression", "detail"),
    [("__import__('os')", "__import__"), ("a*x.__class__", "__class__")],
)
def test_fit_hostile_expression(expression, detail):
    with pytest.raises(InputError) as info:
        jaxpro.fit(expression, X, Y)
    check(info, InputError, "model", (detail, "column"))


def test_least_squares_jac_neither_callable_nor_string():
    with pytest.raises(InputError) as info:
        jaxpro.least_squares(residuals, [1.0, 1.0], jac=5)
    check(info, InputError, "jac", ("callable", "(got 5)"))


def test_curve_fit_jac_neither_callable_nor_string():
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(decay, X, Y, jac=[1, 2])
    check(info, InputError, "jac", ("callable", "[1, 2]"))


# ----------------------------------------------------------------------------- solver options


def _options_call(entry, **options):
    if entry == "least_squares":
        return jaxpro.least_squares(residuals, [1.0, 1.0], **options)
    return call(entry, decay, X, Y, **options)


ENTRIES = ["curve_fit", "fit", "least_squares"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_unknown_loss(entry):
    with pytest.raises(InputError) as info:
        _options_call(entry, loss="l2")
    check(info, InputError, "loss", ("unknown loss", "soft_l1", "'l2'"))


@pytest.mark.parametrize("entry", ENTRIES)
def test_unknown_method(entry):
    # ('dogbox' is known: it runs as 'trf', tests/fit/test_scipy_conventions.py)
    with pytest.raises(InputError) as info:
        _options_call(entry, method="newton")
    check(info, InputError, "method", ("unknown method", "'newton'"))


@pytest.mark.parametrize("entry", ENTRIES)
def test_lm_with_bounds(entry):
    bounds = {"a": (0.0, 10.0)} if entry == "fit" else (0.0, 10.0)
    with pytest.raises(InputError) as info:
        _options_call(entry, method="lm", bounds=bounds)
    check(info, InputError, "method", ("bounds", "'lm'"))


@pytest.mark.parametrize("entry", ENTRIES)
def test_lm_with_a_robust_loss(entry):
    with pytest.raises(InputError) as info:
        _options_call(entry, method="lm", loss="huber")
    check(info, InputError, "method", ("linear loss", "'lm'"))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("f_scale", [0.0, -1.0])
def test_f_scale_not_positive(entry, f_scale):
    with pytest.raises(InputError) as info:
        _options_call(entry, loss="huber", f_scale=f_scale)
    check(info, InputError, "f_scale", ("positive", f"(got {f_scale!r})"))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("name", ["ftol", "xtol", "gtol"])
def test_negative_tolerance(entry, name):
    with pytest.raises(InputError) as info:
        _options_call(entry, **{name: -1})
    check(info, InputError, name, (">= 0", "(got -1)"))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("max_nfev", [0, -5, 2.5])
def test_max_nfev_not_a_positive_integer(entry, max_nfev):
    with pytest.raises(InputError) as info:
        _options_call(entry, max_nfev=max_nfev)
    check(info, InputError, "max_nfev", ("positive integer", f"(got {max_nfev!r})"))


def test_curve_fit_maxfev_zero():
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(decay, X, Y, maxfev=0)
    check(info, InputError, "max_nfev", ("(got 0)",))


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("x_scale", ["bogus", -1.0])
def test_bad_x_scale(entry, x_scale):
    with pytest.raises(InputError) as info:
        _options_call(entry, x_scale=x_scale)
    check(info, InputError, "x_scale", ("'jac'", f"(got {x_scale!r})"))


@pytest.mark.parametrize("confidence", [1.5, 0.0, 1.0, -0.1, "high"])
def test_fit_confidence_outside_zero_one(confidence):
    with pytest.raises(InputError) as info:
        jaxpro.fit(decay, X, Y, confidence=confidence)
    check(info, InputError, "confidence", ("(0, 1)", f"(got {confidence!r})"))


@pytest.mark.parametrize("entry", ["curve_fit", "least_squares"])
def test_unknown_keyword_argument(entry):
    with pytest.raises(InputError) as info:
        _options_call(entry, tolerance=1e-3)
    check(info, InputTypeError, "kwargs", ("tolerance",))
