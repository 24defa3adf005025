"""The per-call path of a small fit: its faster helpers give what the slower ones gave.

A warm 1,000-point fit takes a few hundred microseconds, so the host work
around the compiled program (argument checks, padding, unpacking the packed
outcome) is a large share of it (issue 20). These tests pin the behaviour of
the helpers that were made cheaper, against the straightforward versions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpro
from jaxpro.errors import InputError
from jaxpro.fit import _checks, _data, _engine


def _reference_unpack(flat: np.ndarray, p: int) -> dict:
    """The field-by-field unpacking the engine used before (one slice per field)."""
    values, start = {}, 0
    for name in _engine.Outcome._fields:
        if name in _engine._MATRIX_FIELDS:
            size = p * p
        elif name in _engine._VECTOR_FIELDS:
            size = p
        else:
            size = 1
        chunk = flat[start : start + size]
        start += size
        if name in _engine._MATRIX_FIELDS:
            values[name] = chunk.reshape(p, p)
        elif name == "active_mask":
            values[name] = chunk.astype(np.int64)
        elif name in _engine._VECTOR_FIELDS:
            values[name] = chunk
        elif name in _engine._INTEGER_FIELDS:
            values[name] = int(chunk[0])
        elif name == "finite":
            values[name] = bool(chunk[0])
        else:
            values[name] = float(chunk[0])
    return values


@pytest.mark.parametrize("p", [1, 3, 7])
def test_unpack_matches_field_by_field_unpacking(p):
    size = sum(
        p * p if name in _engine._MATRIX_FIELDS else p if name in _engine._VECTOR_FIELDS else 1
        for name in _engine.Outcome._fields
    )
    flat = np.random.default_rng(p).normal(size=size) * 10.0
    got = _engine._unpack(flat, p)._asdict()
    want = _reference_unpack(flat, p)
    assert list(got) == list(want)
    for name, value in want.items():
        assert type(got[name]) is type(value), name
        np.testing.assert_array_equal(got[name], value, err_msg=name)  # copies: exact


@pytest.mark.parametrize("shape", [(5,), (2, 5), (3, 1)])
@pytest.mark.parametrize("length", [5, 8, 16])
def test_pad_edge_repeats_the_last_value_as_np_pad_does(shape, length):
    a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * 1.5 - 2.0
    got = _data._pad_edge(a, length)
    widths = [(0, 0)] * (a.ndim - 1) + [(0, length - shape[-1])]
    np.testing.assert_array_equal(got, np.pad(a, widths, mode="edge"))  # copies: exact
    assert got.flags.c_contiguous


@pytest.mark.parametrize(
    "bounds",
    [(-np.inf, np.inf), (0, 10), (-1.5, np.float64(2.0)), (0.0, np.inf)],
)
def test_scalar_bounds_match_the_array_path(bounds):
    lb, ub = _checks.check_bounds(bounds, 3)
    lb_arrays, ub_arrays = _checks.check_bounds(
        (np.full(3, float(bounds[0])), np.full(3, float(bounds[1]))), 3
    )
    np.testing.assert_array_equal(lb, lb_arrays)
    np.testing.assert_array_equal(ub, ub_arrays)
    assert lb.dtype == ub.dtype == np.float64 and lb.shape == (3,)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((np.nan, 1.0), "lower bound contains NaN"),
        ((0.0, float("nan")), "upper bound contains NaN"),
        ((2.0, 1.0), "lower bound must be below upper bound; parameter 0"),
        ((np.inf, np.inf), "lower bound must be below upper bound; parameter 0"),
        ((1, 1), "lower bound must be below upper bound; parameter 0"),
    ],
)
def test_bad_scalar_bounds_still_fail_with_the_full_checks(bounds, message):
    with pytest.raises(InputError, match=message):
        _checks.check_bounds(bounds, 2)


def _exp3(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def test_a_warm_single_device_fit_hands_host_arrays_to_the_executable(monkeypatch):
    """No separate jax.device_put per call: it cost ~90 us of a ~500 us warm fit."""
    x = np.linspace(0.0, 5.0, 1000)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).normal(size=x.size)
    first = jaxpro.curve_fit(_exp3, x, y, p0=(1.0, 1.0, 1.0))  # compiles
    calls = []
    original = jax.device_put
    monkeypatch.setattr(jax, "device_put", lambda *a, **k: calls.append(a) or original(*a, **k))
    popt, pcov = jaxpro.curve_fit(_exp3, x, y, p0=(1.0, 1.0, 1.0))
    assert calls == []
    np.testing.assert_array_equal(popt, first[0])  # the same program on the same data
    np.testing.assert_array_equal(pcov, first[1])
    from scipy.optimize import curve_fit as scipy_curve_fit

    reference, _ = scipy_curve_fit(
        lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=(1.0, 1.0, 1.0)
    )
    np.testing.assert_allclose(popt, reference, rtol=1e-6)  # MINPACK's finite differences


def test_resolved_settings_are_remembered_for_plain_options_only():
    from jaxpro.fit._orchestrate import resolve_settings

    first = resolve_settings(3, method=None, bounds=(-np.inf, np.inf), ftol=1e-8)
    again = resolve_settings(3, bounds=(-np.inf, np.inf), method=None, ftol=1e-8)
    assert again is first  # remembered, whatever the keyword order
    assert not first.lb.flags.writeable and not first.x_scale.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first.ub[0] = 1.0
    # arrays are checked afresh (and equal what the scalars give)
    arrays = resolve_settings(3, method=None, bounds=(np.full(3, -np.inf), np.full(3, np.inf)),
                              ftol=1e-8)  # fmt: skip
    assert arrays is not first and arrays.method == first.method == "lm"
    np.testing.assert_array_equal(arrays.lb, first.lb)


def test_remembered_settings_keep_every_check():
    from jaxpro.errors import JaxproWarning
    from jaxpro.fit._orchestrate import resolve_settings

    assert resolve_settings(2, max_nfev=100).max_nfev == 100
    # equal values of another type are not the same call: 100.0 and True are refused
    for bad in (100.0, True):
        with pytest.raises(InputError, match="max_nfev"):
            resolve_settings(2, max_nfev=bad)
    with pytest.raises(InputError, match="ftol"):
        resolve_settings(2, ftol=float("nan"))
    # dogbox warns on every call, not only the first
    for _ in range(2):
        with pytest.warns(JaxproWarning, match="dogbox"):
            assert resolve_settings(2, method="dogbox").method == "trf"


def test_timings_report_each_compiled_program():
    """Issue 20: compile time per program in result.timings (the fit's first call compiles)."""

    def decay(x, a, b):  # a model of this test only: its first fit compiles
        return a * jnp.exp(-b * x)

    x = np.linspace(0.0, 4.0, 500)
    y = 2.0 * np.exp(-0.8 * x)
    first = jaxpro.fit(decay, x, y, p0=[1.0, 1.0], progress=False)
    ((name, seconds),) = first.timings.programs
    assert name == "compact LM, one block of 512 points (Gram matrix of [J | r])"
    assert seconds == first.timings.compile > 0
    assert f"compiled: {name}" in first.timings.summary()
    saved = first.to_dict()["timings"]["programs"]
    assert saved == [{"program": name, "compile_s": seconds}]
    again = jaxpro.fit(decay, x, y, p0=[1.0, 1.0], progress=False)
    assert again.timings.programs == ((name, 0.0),)  # compiled once per process
    assert "compiled:" not in again.timings.summary()


def test_timings_name_the_warm_start_and_the_trf_retry():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from nist import load

    # from start 1 the compact LM gives up, LM stalls on a plateau, TRF recovers it
    box = load("BoxBOD")
    result = jaxpro.fit(box.model, box.x, box.y, p0=box.starts[0], progress=False)
    labels = [name for name, _ in result.timings.programs]
    assert [label.split(",")[0] for label in labels] == ["compact LM", "LM", "TRF"], labels
    long = np.linspace(0.0, 5.0, 1 << 17)
    chunked = jaxpro.fit(_exp3, long, _exp3(long, 2.0, 1.0, 0.5), p0=[1.0, 1.2, 0.0],
                         progress=False)  # fmt: skip
    ((label, _),) = chunked.timings.programs
    assert label.startswith("compact LM, ") and label.endswith("after a warm start on 4096 points")


def test_fit_many_reports_its_queue_program():
    x = np.linspace(0.0, 5.0, 50)
    curves = np.stack([_exp3(x, a, 1.0, 0.2) for a in (1.0, 2.0, 3.0)])
    result = jaxpro.fit_many(_exp3, x, curves, p0=[1.5, 1.0, 0.0])
    ((label, seconds),) = result.timings.programs
    assert label == "compact LM queue, 3 parameters, 50 points per curve"
    assert seconds == result.timings.compile
