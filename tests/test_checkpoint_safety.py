"""A checkpoint runs no code on --resume (issue 25, class 1). Before, accelerate restored the LR scheduler and
the EMA from custom_checkpoint_*.pkl with weights_only=False, so a file planted in a checkpoint folder ran on
resume and the resumed weights still came out right. Now nothing in a checkpoint is unpickled beyond tensors
and plain data, and a resume refuses, before loading anything, a checkpoint holding a file it did not write
or a file changed since (progress.json lists the sha256 of each)."""
from __future__ import annotations

import json
import pickle
import signal

import pytest
import torch

from conftest import REPO  # noqa: F401
from pdd.core.hashing import hash_file
from pdd.train import loop
from test_loop import export, toy  # noqa: F401  (the toy export fixture and the toy trainer)


def _pickle_to(path, marker):
    # a pickle that calls pathlib.Path.write_text: importable in the toy's process without this test module
    import pathlib

    class P:
        def __reduce__(self):
            return (pathlib.Path(marker).write_text, ("code ran",))

    path.write_bytes(pickle.dumps(P()))


@pytest.fixture
def cut(export, tmp_path):  # noqa: F811
    """A toy run with EMA killed after step 5: its newest checkpoint is step 4."""
    killed = toy(tmp_path, export, tmp_path / "cut", "--ema", "0.9", kill_after=5, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (ckpt,) = loop.checkpoints(tmp_path / "cut/ckpt")
    return ckpt


def _resume(tmp_path, export):  # noqa: F811
    return toy(tmp_path, export, tmp_path / "cut", "--ema", "0.9", "--resume", check=False)


def test_a_planted_pickle_is_refused_and_runs_nothing(cut, export, tmp_path):  # noqa: F811
    marker = tmp_path / "pwned"
    _pickle_to(cut / "custom_checkpoint_0.pkl", marker)      # what accelerate used to load with weights_only=False
    out = _resume(tmp_path, export)
    assert out.returncode != 0 and not marker.exists()
    assert "'custom_checkpoint_0.pkl' was not written by this checkpoint" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_a_replaced_file_is_refused_even_with_a_forged_digest(cut, export, tmp_path):  # noqa: F811
    marker = tmp_path / "pwned"
    target = cut / loop.TRAIN_STATE
    _pickle_to(target, marker)
    out = _resume(tmp_path, export)
    assert out.returncode != 0 and not marker.exists() and "changed after the checkpoint was written" in out.stderr
    # an attacker who also rewrites progress.json: the load itself is weights_only and refuses the pickle
    progress = json.loads((cut / loop.PROGRESS).read_text())
    progress["files"][target.name] = hash_file(target)
    (cut / loop.PROGRESS).write_text(json.dumps(progress))
    out = _resume(tmp_path, export)
    assert out.returncode != 0 and not marker.exists(), out.stderr[-2000:]
    assert "not a checkpoint file this project wrote" in out.stderr and "Traceback" not in out.stderr


def test_an_intact_checkpoint_resumes_and_holds_no_pickled_objects(cut, export, tmp_path):  # noqa: F811
    names = {p.name for p in cut.iterdir()}
    assert not any(n.startswith("custom_checkpoint") for n in names) and loop.TRAIN_STATE in names
    progress = json.loads((cut / loop.PROGRESS).read_text())
    assert set(progress["files"]) == names - {loop.PROGRESS}
    state = torch.load(cut / loop.TRAIN_STATE, weights_only=True)
    assert state["ema"]["shadow_params"] and state["scheduler"]["last_epoch"] == 4
    out = _resume(tmp_path, export)
    assert out.returncode == 0, out.stderr[-2000:]
