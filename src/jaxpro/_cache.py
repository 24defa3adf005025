"""Compilation caching: JAX's persistent cache on disk and jaxpro's in-process executables.

The persistent cache lets a second process skip recompiling the same model. It
is switched on the first time jaxpro compiles something (never at import), in
a per-user directory:

- ``JAXPRO_CACHE_DIR=/some/dir`` moves it;
- ``JAXPRO_CACHE_DIR=off`` (or ``0``, ``none``, empty) turns it off;
- if the program already configured ``jax_compilation_cache_dir`` itself,
  jaxpro leaves that setting alone and uses it.

Turning the cache on sets two process-wide JAX options
(``jax_compilation_cache_dir`` and ``jax_persistent_cache_min_compile_time_secs``,
lowered so that jaxpro's sub-second compilations are cached too); set
``JAXPRO_CACHE_DIR=off`` to keep JAX's configuration exactly as you left it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CacheStatus", "cache_status", "compiled", "enable_persistent_cache"]

ENV_VAR = "JAXPRO_CACHE_DIR"
_OFF_VALUES = {"", "0", "off", "none", "false", "no"}
# Compilations shorter than this are not written to disk (JAX's default is 1 s,
# which would skip most of jaxpro's kernels).
MIN_COMPILE_SECONDS = 0.05


@dataclass(frozen=True)
class CacheStatus:
    """Where the persistent compilation cache lives and who configured it.

    Attributes:
        directory: the cache directory, or None when the cache is off.
        source: "jaxpro" (our default or JAXPRO_CACHE_DIR), "user" (set in
            JAX's own configuration before jaxpro ran), or "off".
        active: whether this process has already switched it on.
    """

    directory: str | None
    source: str
    active: bool


_lock = threading.Lock()
_activated: CacheStatus | None = None


def _default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxpro" / "xla"


def configured_directory() -> Path | None:
    """The directory jaxpro would use, from ``JAXPRO_CACHE_DIR`` or the default; None if off."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return _default_directory()
    if value.strip().lower() in _OFF_VALUES:
        return None
    return Path(value).expanduser()


def cache_status() -> CacheStatus:
    """Report the cache without changing anything (used by ``jaxpro doctor``)."""
    if _activated is not None:
        return _activated
    import sys

    jax = sys.modules.get("jax")
    user_dir = jax.config.jax_compilation_cache_dir if jax is not None else None
    if user_dir:
        return CacheStatus(str(user_dir), "user", False)
    directory = configured_directory()
    if directory is None:
        return CacheStatus(None, "off", False)
    return CacheStatus(str(directory), "jaxpro", False)


def enable_persistent_cache() -> CacheStatus:
    """Switch JAX's persistent compilation cache on, once per process.

    Returns:
        The resulting :class:`CacheStatus`.
    """
    global _activated
    if _activated is not None:
        return _activated
    with _lock:
        if _activated is not None:
            return _activated
        import jax

        user_dir = jax.config.jax_compilation_cache_dir
        if user_dir:
            _activated = CacheStatus(str(user_dir), "user", True)
            return _activated
        directory = configured_directory()
        if directory is None:
            _activated = CacheStatus(None, "off", True)
            return _activated
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            # An unwritable cache must never break a computation.
            _activated = CacheStatus(None, "off", True)
            return _activated
        jax.config.update("jax_compilation_cache_dir", str(directory))
        if jax.config.jax_persistent_cache_min_compile_time_secs > MIN_COMPILE_SECONDS:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        _activated = CacheStatus(str(directory), "jaxpro", True)
        return _activated


# key -> compiled executable, least recently used first. Keys hold the model
# function itself, so a model redefined in a loop compiles again; a
# module-level model compiles once. The number kept is bounded: XLA's CPU
# executables map each kernel's code separately (a fit about 300 memory
# mappings, a fit_many about 700), and a process that compiles without end
# would reach the kernel's limit on mappings (65,530 by default) and abort.
# An evicted program comes back from the on-disk cache in a fraction of its
# compile time.
MAX_EXECUTABLES = 32
_executables: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
_building: dict[Hashable, threading.Lock] = {}  # keys being compiled, one lock each


def compiled(key: Hashable, build: Callable[[], Any]) -> tuple[Any, float]:
    """Return the executable for ``key``, compiling it with ``build()`` on first use.

    Args:
        key: hashable description of everything that changes the program
            (model, shapes, dtypes, static options).
        build: returns a ``jax.stages.Compiled`` (``jax.jit(f).lower(...).compile()``).

    Returns:
        ``(executable, compile_seconds)``; compile_seconds is 0.0 on a cache hit.
        Threads asking for the same key while it compiles wait for that one
        compilation (and report the time they waited as theirs).
    """
    start = time.perf_counter()
    with _lock:
        executable = _executables.get(key)
        if executable is not None:
            _executables.move_to_end(key)
            return executable, 0.0
        building = _building.setdefault(key, threading.Lock())
    with building:
        with _lock:
            executable = _executables.get(key)
        if executable is None:
            enable_persistent_cache()
            try:
                executable = build()
            finally:
                with _lock:
                    _building.pop(key, None)
            with _lock:
                _executables[key] = executable
                while len(_executables) > MAX_EXECUTABLES:
                    _executables.popitem(last=False)
    return executable, time.perf_counter() - start


def clear() -> None:
    """Forget every in-process executable (the on-disk cache is kept)."""
    _executables.clear()
