"""A run killed with SIGKILL and started again ends in the same state as an uninterrupted one.

Oracle: the uninterrupted run itself, compared bit for bit (positions,
velocities and every record): the checkpoint holds the whole state, so the
resumed integration repeats the same floating-point operations.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import jaxpro.md as md
from jaxpro.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 4000, 400

RUN = textwrap.dedent(
    f"""
    import sys
    import jaxpro.md as md
    system = md.lennard_jones_fluid(108, 0.8442, 0.72)
    md.simulate(system, "nvt", steps={STEPS}, dt=0.005, record_every=50, neighbor_list=True,
                checkpoint_dir=sys.argv[1], checkpoint_every={EVERY})
    """
)


def run_here(folder=None):
    system = md.lennard_jones_fluid(108, 0.8442, 0.72)
    return md.simulate(system, "nvt", steps=STEPS, dt=0.005, record_every=50, neighbor_list=True,
                       checkpoint_dir=folder, checkpoint_every=EVERY if folder else None)  # fmt: skip


def test_killed_run_resumes_to_the_same_final_state(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    folder = tmp_path / "ckpt"
    writer = subprocess.Popen([sys.executable, "-c", RUN, str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed_after = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and writer.poll() is None:
            steps = sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit()) \
                if folder.exists() else []  # fmt: skip
            if steps and steps[-1] >= 2 * EVERY:
                writer.send_signal(signal.SIGKILL)
                killed_after = steps[-1]
                break
            time.sleep(0.005)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert killed_after is not None and killed_after < STEPS, writer.stderr.read()[-2000:]
    resumed = run_here(folder)
    assert any("resumed from step" in r for r in resumed.plan.reasons)
    straight = run_here()
    np.testing.assert_array_equal(resumed.final_positions, straight.final_positions)
    np.testing.assert_array_equal(resumed.final_velocities, straight.final_velocities)
    np.testing.assert_array_equal(resumed.total_energy, straight.total_energy)
    np.testing.assert_array_equal(resumed.positions, straight.positions)


def test_a_folder_of_another_run_is_refused(tmp_path):
    system = md.lennard_jones_fluid(108, 0.8442, 0.72)
    md.simulate(system, "nvt", steps=200, dt=0.005, checkpoint_dir=tmp_path, checkpoint_every=100)
    other = md.lennard_jones_fluid(108, 0.8442, 0.80)
    with pytest.raises(InputError, match="checkpoint_dir: holds checkpoints of another run"):
        md.simulate(other, "nvt", steps=200, dt=0.005, checkpoint_dir=tmp_path,
                    checkpoint_every=100)  # fmt: skip
    with pytest.raises(InputError, match=r"checkpoint_every: must be a multiple of record_every"):
        md.simulate(system, steps=200, dt=0.005, checkpoint_dir=tmp_path / "x",
                    checkpoint_every=30)  # fmt: skip
