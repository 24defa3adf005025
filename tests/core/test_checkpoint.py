"""Checkpoints: what is saved comes back exactly, the last K are kept, a killed writer loses nothing.

Oracles: the saved arrays themselves (bit-for-bit equality) and the step
numbers written; the crash test SIGKILLs a writer while Orbax is writing a
step (its temporary folder is on disk) and restores the last complete step.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro.core import checkpoint_steps, restore_checkpoint, save_checkpoint
from jaxpro.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def state(step):
    rng = np.random.default_rng(step)
    return {"positions": rng.normal(size=(50, 3)), "velocities": rng.normal(size=(50, 3)),
            "time": np.float64(0.01 * step), "count": np.int64(step)}  # fmt: skip


def test_round_trip_with_metadata_and_the_last_k_kept(tmp_path):
    for step in (0, 10, 20, 30):
        save_checkpoint(tmp_path, step, state(step), metadata={"dt": 0.01, "units": "LJ"}, keep=2)
    assert checkpoint_steps(tmp_path) == [20, 30]
    latest = restore_checkpoint(tmp_path)
    assert latest.step == 30
    for key, value in state(30).items():
        np.testing.assert_array_equal(latest.tree[key], value)
    assert latest.metadata["dt"] == 0.01 and latest.metadata["units"] == "LJ"
    assert latest.metadata["step"] == 30 and latest.metadata["saved_at"].endswith("+00:00")
    older = restore_checkpoint(tmp_path, 20)
    np.testing.assert_array_equal(older.tree["positions"], state(20)["positions"])


def test_jax_arrays_restore_like_a_template(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    save_checkpoint(tmp_path, 1, tree, keep=None)
    restored = restore_checkpoint(tmp_path, like=jax.tree.map(jnp.zeros_like, tree))
    assert isinstance(restored.tree["w"], jax.Array)
    np.testing.assert_array_equal(restored.tree["w"], tree["w"])


def test_bad_input_names_the_argument(tmp_path):
    with pytest.raises(InputError, match=r"directory: holds no complete checkpoint"):
        restore_checkpoint(tmp_path / "empty")
    save_checkpoint(tmp_path, 5, state(5))
    with pytest.raises(
        InputError, match=r"step: must be after the last saved step \(5\) \(got 5\)"
    ):
        save_checkpoint(tmp_path, 5, state(5))
    with pytest.raises(InputError, match=r"step: is not saved here \(steps: \[5\]\) \(got 7\)"):
        restore_checkpoint(tmp_path, 7)
    with pytest.raises(InputError, match=r"step: must be a non-negative integer \(got -1\)"):
        save_checkpoint(tmp_path, -1, state(1))
    with pytest.raises(InputError, match=r"keep: must be a positive integer or None \(got 0\)"):
        save_checkpoint(tmp_path, 6, state(1), keep=0)
    with pytest.raises(InputError, match=r"metadata: must be JSON-serialisable"):
        save_checkpoint(tmp_path, 6, state(1), metadata={"f": object()})
    with pytest.raises(InputError, match=r"metadata: must be a dict"):
        save_checkpoint(tmp_path, 6, state(1), metadata=[1])
    with pytest.raises(InputError, match=r"directory: must be a folder path"):
        save_checkpoint(None, 6, state(1))


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from jaxpro.core import save_checkpoint
    folder = sys.argv[1]
    for step in range(1, 1000):
        # 64 MB per step: a save takes long enough to be caught in the middle
        save_checkpoint(folder, step, {"x": np.full(8_000_000, float(step)), "step": step}, keep=2)
        print(step, flush=True)
    """
)


def test_a_writer_killed_mid_save_leaves_the_last_complete_step(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    caught = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and writer.poll() is None:
            done = [p for p in tmp_path.iterdir() if p.name.isdigit()]
            partial = [p for p in tmp_path.iterdir() if "tmp" in p.name]
            if len(done) >= 2 and partial:
                writer.send_signal(signal.SIGKILL)
                caught = partial[0].name
                break
            time.sleep(0.002)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert caught is not None, writer.stderr.read()[-2000:]
    steps = checkpoint_steps(tmp_path)
    assert 1 <= len(steps) <= 2, steps
    restored = restore_checkpoint(tmp_path)
    assert restored.step == steps[-1]
    assert int(restored.tree["step"]) == restored.step
    np.testing.assert_array_equal(restored.tree["x"], np.full(8_000_000, float(restored.step)))
