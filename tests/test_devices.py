"""Per-program XLA options: 512-bit vectors only where the CPU has AVX-512."""

import jax

from jaxpro import _devices


def test_wide_vectors_only_on_avx512_cpus(monkeypatch):
    assert jax.default_backend() == "cpu"  # the suite runs on CPU (no accelerator needed)
    monkeypatch.setattr(_devices, "_cpu_has_avx512", lambda: True)
    assert _devices.compiler_options() == {"xla_cpu_prefer_vector_width": 512}
    monkeypatch.setattr(_devices, "_cpu_has_avx512", lambda: False)
    assert _devices.compiler_options() == {}


def test_cpu_flags_are_read_from_proc_cpuinfo():
    _devices._cpu_has_avx512.cache_clear()
    try:
        with open("/proc/cpuinfo") as info:
            flags = info.read()
    except OSError:
        flags = ""
    assert _devices._cpu_has_avx512() == (" avx512f" in flags)
