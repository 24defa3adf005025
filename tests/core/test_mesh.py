"""Device helpers: the CPU device count asked for through JAX's public configuration only.

Oracle: ``jax.device_count()`` in a fresh process, and JAX's own refusal to
change the count once its backend runs.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import jaxpro
from jaxpro.core import use_cpu_cores
from jaxpro.core._mesh import request_cpu_devices
from jaxpro.errors import BackendStartedError, InputError

ROOT = Path(__file__).resolve().parents[2]


def fresh(script: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_request_is_granted_before_jax_starts_and_refused_after():
    got = fresh(
        "import json, jax\n"
        "from jaxpro.core._mesh import request_cpu_devices\n"
        "first = request_cpu_devices(3)\n"
        "count = jax.device_count()\n"
        "again = request_cpu_devices(2)\n"
        "print(json.dumps([first, count, again, jax.device_count()]))\n"
    )
    # if a JAX release stops refusing the late update, `again` turns True here
    assert got == [True, 3, False, 3]


def test_in_this_process_the_backend_already_runs():
    assert jax.device_count() >= 1
    assert request_cpu_devices(2) is False
    with pytest.raises(BackendStartedError, match="before any JAX computation"):
        use_cpu_cores(2)


def test_use_cpu_cores_is_the_same_function_at_the_top_level():
    assert jaxpro.use_cpu_cores is use_cpu_cores
    with pytest.raises(InputError, match=r"count: must be a positive integer \(got 1.5\)"):
        use_cpu_cores(1.5)


def test_jaxpro_uses_no_private_jax_module():
    """Public JAX APIs only: ``jax._src`` changes without notice between releases."""
    offenders = []
    for path in (ROOT / "src" / "jaxpro").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr == "_src":
                names = ["jax._src"]
            if any(name == "jax._src" or name.startswith("jax._src.") for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
