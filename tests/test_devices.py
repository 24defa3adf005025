"""Per-program XLA options: no YNNPACK fusions on CPU, reassociation with IEEE semantics kept,
512-bit vectors only where the CPU has AVX-512.

Oracles: NumPy's IEEE results (NaN and Inf tests, correctly rounded division,
exp to 1 ulp) and exact sums of small integers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro import _devices


def test_wide_vectors_only_on_avx512_cpus(monkeypatch):
    assert jax.default_backend() == "cpu"  # the suite runs on CPU (no accelerator needed)
    monkeypatch.setattr(_devices, "_cpu_has_avx512", lambda: True)
    assert _devices.compiler_options()["xla_cpu_prefer_vector_width"] == 512
    monkeypatch.setattr(_devices, "_cpu_has_avx512", lambda: False)
    assert "xla_cpu_prefer_vector_width" not in _devices.compiler_options()


def test_library_fusions_are_off_and_xla_accepts_every_option():
    """The options compile as they are on this JAX: none is dropped as unknown."""
    assert _devices.compiler_options()["xla_cpu_experimental_ynn_fusion_type"] == ""
    lowered = jax.jit(lambda a: jnp.sum(a * a, axis=1)).lower(jnp.ones((64, 3)))
    compiled = _devices.compile_lowered(lowered)
    assert _devices._unsupported == set()
    assert "ynn" not in compiled.as_text()  # a plain XLA loop, not a YNNPACK call
    np.testing.assert_allclose(np.asarray(compiled(jnp.ones((64, 3)))), 3.0, rtol=0)


def test_an_option_this_xla_rejects_is_left_out_and_remembered(monkeypatch):
    monkeypatch.setattr(_devices, "_unsupported", set())
    real = _devices.compiler_options
    monkeypatch.setattr(
        _devices, "compiler_options", lambda: {**real(), "xla_cpu_no_such_option_at_all": True}
    )
    lowered = jax.jit(lambda a: a + 1.0).lower(jnp.zeros(3))
    compiled = _devices.compile_lowered(lowered)
    np.testing.assert_array_equal(np.asarray(compiled(jnp.zeros(3))), 1.0)
    assert _devices._unsupported == {"xla_cpu_no_such_option_at_all"}


def test_other_compile_errors_are_not_swallowed(monkeypatch):
    class Failing:
        def compile(self, compiler_options):
            raise RuntimeError("out of memory while compiling")

    with pytest.raises(RuntimeError, match="out of memory"):
        _devices.compile_lowered(Failing())


def test_cpu_flags_are_read_from_proc_cpuinfo():
    _devices._cpu_has_avx512.cache_clear()
    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read()
    except OSError:
        flags = ""
    assert _devices._cpu_has_avx512() == (" avx512f" in flags)


def test_reassociation_keeps_nan_inf_division_and_functions():
    """Fast math, but only its reassociation: the fits' finiteness checks must still see NaN/Inf."""
    options = _devices.compiler_options()
    assert options["xla_cpu_enable_fast_math"] is True
    for honored in ("nans", "infs", "division", "functions"):
        assert options[f"xla_cpu_fast_math_honor_{honored}"] is True

    def probe(x, y):
        return (
            jnp.isnan(x),
            jnp.isinf(x),
            jnp.isfinite(x),
            jnp.maximum(x, 0.0),  # NaN propagates
            x / y,
            jnp.exp(y),
            jnp.sum(y * y),
        )

    x = jnp.array([np.nan, np.inf, -np.inf, 1.5, 0.0])
    y = jnp.array([3.0, 7.0, 0.1, 11.0, 13.0])
    compiled = _devices.compile_lowered(jax.jit(probe).lower(x, y))
    isnan, isinf, isfinite, clipped, ratio, exp, total = (np.asarray(v) for v in compiled(x, y))
    xs, ys = np.asarray(x), np.asarray(y)
    np.testing.assert_array_equal(isnan, np.isnan(xs))
    np.testing.assert_array_equal(isinf, np.isinf(xs))
    np.testing.assert_array_equal(isfinite, np.isfinite(xs))
    assert np.isnan(clipped[0]) and clipped[1] == np.inf and clipped[2] == 0.0
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(ratio, xs / ys)  # IEEE division, correctly rounded
    np.testing.assert_allclose(exp, np.exp(ys), rtol=2.3e-16)  # within about 1 ulp
    np.testing.assert_allclose(total, np.sum(ys * ys), rtol=4e-16)  # 5 terms, any order


def test_reassociated_sums_stay_exact_on_integers():
    """Any order of adding integers below 2**53 is exact: a long sum must be too."""
    values = jnp.arange(1 << 20, dtype=jnp.float64)
    compiled = _devices.compile_lowered(jax.jit(jnp.sum).lower(values))
    assert float(compiled(values)) == (1 << 20) * ((1 << 20) - 1) / 2


def test_work_given_to_run_while_compiling_runs_in_a_thread_of_its_own():
    import threading

    ran = {}
    done = threading.Event()

    def job():
        ran["thread"] = threading.current_thread().name
        done.set()

    lowered = jax.jit(lambda a: a * 2.0).lower(jnp.ones(4))
    compiled = _devices.compile_lowered(lowered, job)
    assert done.wait(10.0)
    assert ran["thread"] == "jaxpro-while-compiling" != threading.current_thread().name
    np.testing.assert_array_equal(np.asarray(compiled(jnp.ones(4))), 2.0)
