"""jaxpro.errors: message format, the built-in bases, describe()."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro.errors import (
    ConvergenceError,
    InputError,
    JaxproError,
    JaxproWarning,
    ModelError,
    OptimizeWarning,
    describe,
)


def test_input_error_names_the_argument_and_quotes_the_value():
    error = InputError("must be positive", argument="f_scale", received=-1.5)
    assert str(error) == "f_scale: must be positive (got -1.5)"
    assert error.argument == "f_scale"
    assert error.received == -1.5


def test_input_error_quotes_strings_with_their_quotes():
    error = InputError("unknown loss", argument="loss", received="squared")
    assert str(error) == "loss: unknown loss (got 'squared')"


def test_input_error_quotes_none():
    assert (
        str(InputError("is required", argument="y", received=None)) == "y: is required (got None)"
    )


def test_input_error_without_received_value_has_no_got_clause():
    error = InputError("no data rows", argument="data")
    assert str(error) == "data: no data rows"
    assert error.received is ...


def test_input_error_does_not_repeat_the_argument_prefix():
    assert str(InputError("p0: wrong length", argument="p0")) == "p0: wrong length"


def test_input_error_without_argument_is_the_bare_message():
    assert str(InputError("something is off")) == "something is off"


def test_input_error_describes_arrays_by_shape_and_dtype():
    error = InputError("wrong shape", argument="x", received=np.zeros((3, 2)))
    assert str(error) == "x: wrong shape (got ndarray of shape (3, 2) and dtype float64)"


def test_input_error_shortens_long_values():
    error = InputError("too long", argument="model", received="x" * 500)
    assert len(str(error)) < 120
    assert "..." in str(error)


def test_input_error_is_a_value_error_and_a_jaxpro_error():
    error = InputError("bad", argument="x")
    assert isinstance(error, ValueError)
    assert isinstance(error, JaxproError)
    with pytest.raises(ValueError, match="x: bad"):
        raise error


def test_model_error_is_a_value_error_and_a_jaxpro_error():
    assert issubclass(ModelError, ValueError)
    assert issubclass(ModelError, JaxproError)


def test_convergence_error_is_a_runtime_error_and_keeps_the_result():
    result = object()
    error = ConvergenceError("did not converge", result)
    assert isinstance(error, RuntimeError)
    assert isinstance(error, JaxproError)
    assert error.result is result
    assert str(error) == "did not converge"


def test_jaxpro_error_catches_every_jaxpro_error_and_nothing_else():
    for error in (InputError("a"), ModelError("b"), ConvergenceError("c")):
        with pytest.raises(JaxproError):
            raise error
    assert not issubclass(ValueError, JaxproError)


def test_warnings_derive_from_user_warning():
    assert issubclass(JaxproWarning, UserWarning)
    assert issubclass(OptimizeWarning, JaxproWarning)
    with pytest.warns(OptimizeWarning, match="covariance"):
        warnings.warn("covariance not estimated", OptimizeWarning, stacklevel=1)


def test_describe_numpy_array():
    assert describe(np.ones((4,), dtype=np.int32)) == "ndarray of shape (4,) and dtype int32"


def test_describe_numpy_scalar_has_shape_and_dtype():
    assert describe(np.float64(2.5)) == "float64 of shape () and dtype float64"


def test_describe_jax_array_in_float64():
    with jax.enable_x64(True):
        value = jnp.zeros((2, 5))
    text = describe(value)
    assert text.endswith("of shape (2, 5) and dtype float64")


def test_describe_plain_values_by_repr():
    assert describe(3) == "3"
    assert describe("abc") == "'abc'"
    assert describe({"a": 1}) == "{'a': 1}"


def test_describe_truncates_long_sequences():
    text = describe(list(range(1000)))
    assert text.startswith("[0, 1, 2")
    assert "..." in text
    assert len(text) < 60


def test_warnings_point_at_the_users_line_however_deep_the_call():
    """jaxpro.errors.warn skips every frame inside jaxpro: the warning names this file,
    whichever entry point (and call depth) reached it."""
    import jaxpro
    from jaxpro.errors import JaxproWarning, NumPyModelWarning, warn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("direct", JaxproWarning)
    assert caught[0].filename == __file__ and caught[0].category is JaxproWarning

    def in_place(x, a, b):  # JAX cannot trace it: the host path warns
        out = np.multiply(-b, x)
        np.exp(out, out=out)
        out *= a
        return out

    def decay(x, a, b):
        return a * jnp.exp(-b * x)

    x = np.linspace(0.0, 3.0, 50)
    y = 2.0 * np.exp(-0.7 * x)
    calls = [
        lambda: jaxpro.curve_fit(in_place, x, y, p0=[1.0, 1.0]),  # SciPy's loop on the host
        lambda: jaxpro.fit(in_place, x, y, p0=[1.0, 1.0], progress=False),
        lambda: jaxpro.curve_fit(decay, x, y, p0=[1.0, 1.0], method="dogbox", bounds=(0, 10)),
    ]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        ours = [w for w in caught if issubclass(w.category, (NumPyModelWarning, JaxproWarning))]
        assert ours and all(w.filename == __file__ for w in ours), [
            (w.category.__name__, w.filename) for w in ours
        ]
