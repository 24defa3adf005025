"""Run test scripts in fresh Python processes (shared by the Bayes tests).

JAX's CPU device count is fixed when its backend starts, so checks that need
another count (a device per chain) run in a new process each, concurrently.
pytest puts this folder on ``sys.path`` (``tests/bayes`` has no ``__init__.py``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(scripts: dict) -> dict:
    """Run ``{name: (source, argv)}`` in fresh processes, concurrently; last stdout line as JSON.

    The processes import this checkout's ``src`` and inherit no XLA device settings.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", source, *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (source, argv) in scripts.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        results[name] = json.loads(out.strip().splitlines()[-1])
    return results
