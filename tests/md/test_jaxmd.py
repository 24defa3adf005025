"""JAX-MD loaded without its package ``__init__`` (``jaxpro.md._jaxmd``), in fresh processes.

Oracle: JAX-MD's own modules. After a jaxpro run, ``import jax_md`` must still
give every submodule (the eager ``rigid_body`` loads when first touched), and a
process that imported ``jax_md`` first keeps its fully initialised package.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_run_loads_only_what_it_needs_and_jax_md_still_works_after():
    out = run(
        """
        import sys
        import jaxpro.md as md
        assert "jax_md" not in sys.modules  # importing jaxpro.md loads no engine
        md.simulate(md.lennard_jones_fluid(108, 0.8, 1.0), steps=20, dt=0.002, record_every=10)
        assert "jax_md.simulate" in sys.modules and "jax_md.rigid_body" not in sys.modules
        import jax_md
        from jax_md import energy
        print(callable(energy.lennard_jones), jax_md.rigid_body.RigidBody.__name__,
              hasattr(jax_md, "no_such_module"))
        """
    )
    assert out.split() == ["True", "RigidBody", "False"]


def test_a_process_that_imported_jax_md_first_keeps_it():
    out = run(
        """
        import sys
        import jax_md
        import jaxpro.md as md
        md.simulate(md.lennard_jones_fluid(108, 0.8, 1.0), steps=20, dt=0.002, record_every=10)
        print(sys.modules["jax_md"] is jax_md, "jax_md.rigid_body" in sys.modules)
        """
    )
    assert out.split() == ["True", "True"]
