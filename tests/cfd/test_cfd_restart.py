"""Checkpointed flow runs: an interrupted run resumes to the same numbers, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import jaxpro.cfd as cfd
from jaxpro.cfd import _runner
from jaxpro.core._checkpoint import checkpoint_steps
from jaxpro.errors import InputError

RUN = {"flow": "decaying_turbulence", "grid": 32, "t_end": 1.0, "record_every": 0.1, "frames": 5}


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    straight = cfd.simulate(**RUN)
    folder = tmp_path / "ck"
    original = _runner._Records.add

    def interrupted(self, t, *args):
        if t > 0.55:  # Ctrl-C while the 6th record comes in
            raise KeyboardInterrupt
        original(self, t, *args)

    monkeypatch.setattr(_runner._Records, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cfd.simulate(**RUN, checkpoint_dir=folder, checkpoint_every=2)
    monkeypatch.undo()
    assert checkpoint_steps(folder) == [2, 4]
    resumed = cfd.simulate(**RUN, checkpoint_dir=folder, checkpoint_every=2)
    assert any("resumed from t = 0.4" in reason for reason in resumed.plan.reasons)
    np.testing.assert_array_equal(resumed.velocity, straight.velocity)
    np.testing.assert_array_equal(resumed.kinetic_energy, straight.kinetic_energy)
    np.testing.assert_array_equal(resumed.times, straight.times)
    # the snapshots taken before the interruption come back from the checkpoint
    np.testing.assert_array_equal(resumed.frames, straight.frames)
    np.testing.assert_array_equal(resumed.frame_times, straight.frame_times)
    assert resumed.steps == straight.steps
    # a finished run in the folder: the same call gives the result without stepping
    again = cfd.simulate(**RUN, checkpoint_dir=folder, checkpoint_every=2)
    np.testing.assert_array_equal(again.velocity, straight.velocity)
    with pytest.raises(InputError, match="checkpoint_dir: holds checkpoints of another run"):
        cfd.simulate(**{**RUN, "viscosity": 0.01}, checkpoint_dir=folder)


def test_a_steady_run_resumes_finished(tmp_path):
    first = cfd.simulate("channel", grid=(8, 16), reynolds=10, checkpoint_dir=tmp_path)
    assert first.steady
    again = cfd.simulate("channel", grid=(8, 16), reynolds=10, checkpoint_dir=tmp_path)
    assert again.steady and again.steps == first.steps
    np.testing.assert_array_equal(again.velocity, first.velocity)
