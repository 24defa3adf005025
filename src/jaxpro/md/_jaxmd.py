"""JAX-MD's modules without its package ``__init__`` (the cold start of a first run).

``import jax_md`` runs ``jax_md/__init__.py``, which imports every submodule; one
of them (``rigid_body``) builds shapes eagerly at import time, compiling about 270
small XLA programs: 4.4 s on a 2-core CPU, most of a first ``simulate`` call.
jaxpro needs ``space``, ``smap``, ``simulate``, ``minimize``, ``quantity`` and
``partition``, which import in 0.07 s.

When ``jax_md`` is not imported yet, :func:`lean` registers its package module
without running its ``__init__``; the module's ``__getattr__`` (PEP 562) imports
a submodule when it is first touched, so ``import jax_md; jax_md.rigid_body``
later in the same process still works. When ``jax_md`` is already imported,
nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

__all__ = ["lean"]

_lock = threading.Lock()


def _submodule(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"jax_md.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"jax_md.{name}":
            raise  # a dependency of that submodule is missing: say so
        raise AttributeError(f"module 'jax_md' has no attribute {name!r}") from None


def lean() -> None:
    """Make ``from jax_md import space`` (etc.) load only what it names."""
    if "jax_md" in sys.modules:
        return
    with _lock:
        if "jax_md" in sys.modules:
            return
        spec = importlib.util.find_spec("jax_md")
        if spec is None or not spec.submodule_search_locations:
            return  # not installed: the caller's import raises as usual
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = _submodule
        sys.modules["jax_md"] = module
