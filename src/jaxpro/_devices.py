"""XLA options for jaxpro's own programs on this machine (per program, never process-wide).

How many CPU devices JAX shows (``jaxpro.use_cpu_cores``) lives with the
other device helpers in :mod:`jaxpro.core._mesh`.
"""

from __future__ import annotations

import functools


@functools.cache
def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


# XLA hands some reductions to the YNNPACK library ("ynn" fusions). Over the
# short rows of a batch of small fits its call costs about 4x XLA's own loop
# (205 vs 54 us for 32,768 rows of 3 values, AMD EPYC), and a loop holding a
# library call cannot be compiled into one kernel. An empty list turns them off.
_NO_LIBRARY_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
# Reassociation (and contraction into FMAs) only: XLA's fast math with every
# "honor" switch on keeps NaN and Inf semantics (the fits' finiteness checks
# need them), IEEE division and accurate exp/log. jaxlib 0.12.1's CPU emitter
# vectorises a sum over an array only when it may reassociate it; 0.12.0.1's did
# so regardless. The chunked pass's 28-output sum of pair products over 2^20
# points of the two-Gaussian model: 19.6 ms without, 4.0 ms with on 0.12.1
# (4.7-4.9 ms either way on 0.12.0.1; AMD EPYC, 2 cores). Sums then differ from
# the sequential order at rounding level (lane-wise partial sums, usually more
# accurate), as they would between any two SIMD widths.
_REASSOCIATE = {
    "xla_cpu_enable_fast_math": True,
    "xla_cpu_fast_math_honor_nans": True,
    "xla_cpu_fast_math_honor_infs": True,
    "xla_cpu_fast_math_honor_division": True,
    "xla_cpu_fast_math_honor_functions": True,
}
# options this XLA rejected (an experimental one may be renamed): not asked for again
_unsupported: set[str] = set()


def compiler_options() -> dict[str, int | str | bool]:
    """XLA options for jaxpro's own programs on this machine (per program, never process-wide).

    On the CPU backend: no library (YNNPACK) fusions, see ``_NO_LIBRARY_FUSIONS``;
    floating-point reassociation with IEEE NaN/Inf, division and functions kept,
    see ``_REASSOCIATE``; and, on CPUs with AVX-512, 512-bit vectors, which XLA does not emit by
    default (a ``fit_many`` of 100,000 curves 13% faster, 587 ms -> 510 ms, AMD
    EPYC, 2 cores). Other backends get nothing.
    """
    import jax

    if jax.default_backend() != "cpu":
        return {}
    options: dict[str, int | str | bool] = {**_NO_LIBRARY_FUSIONS, **_REASSOCIATE}
    if _cpu_has_avx512():
        options["xla_cpu_prefer_vector_width"] = 512
    return {key: value for key, value in options.items() if key not in _unsupported}


def compile_lowered(lowered, while_compiling=None):
    """``lowered.compile()`` with :func:`compiler_options`, leaving out any this XLA rejects.

    Args:
        lowered: a ``jax.stages.Lowered``.
        while_compiling: optional host work (a callable) started in a thread of
            its own just before XLA compiles: compilation releases the GIL, so
            Python work beside it costs no wall time.

    Returns:
        The ``jax.stages.Compiled`` program.
    """
    if while_compiling is not None:
        import threading

        threading.Thread(target=while_compiling, name="jaxpro-while-compiling").start()
    options = compiler_options()
    while True:
        try:
            return lowered.compile(compiler_options=options)
        except Exception as error:  # JaxRuntimeError (INVALID_ARGUMENT) names the option
            rejected = [
                key for key in options if f"option {key}" in str(error) or f"'{key}'" in str(error)
            ]
            if not rejected:
                raise
            _unsupported.update(rejected)
            options = {key: value for key, value in options.items() if key not in rejected}
