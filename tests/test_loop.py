"""The shared training core on a toy denoiser (tests/loop_toy.py): EMA with kill-and-resume, the
streaming and preloaded data paths, per-rank named generators with two processes, schedules, and a
non-finite loss."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, engine_env
from pdd.core.errors import PddError
from pdd.core.hashing import hash_file
from pdd.train import data, loop, synthetic

sys.path.insert(0, str(Path(__file__).parent))
import loop_toy  # noqa: E402

TOY = str(REPO / "tests/loop_toy.py")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "export"
    synthetic.make_synthetic(root, n_train=300, n_val=8, resolutions=[8], seed=3)   # 5 row groups (64 rows each)
    return root


def toy(cwd: Path, *args, torchrun: bool = False, kill_after: int = 0, check: bool = True):
    env = {**engine_env(), **({loop.KILL_ENV: str(kill_after)} if kill_after else {})}
    cmd = ([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517"]
           if torchrun else [sys.executable])
    proc = subprocess.run([*cmd, TOY, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def test_streaming_and_preloaded_give_identical_batches(export):
    pre = loop_toy.source(export, streaming=False, window=2)
    stream = loop_toy.source(export, streaming=True, window=2)
    assert not pre.streaming and stream.streaming and pre.blocks == stream.blocks == [64, 64, 64, 64, 44]
    sampler = loop.EpochBatches(pre, 8, 5, "toy", 0, 3 * (300 // 8))     # three epochs
    n = 0
    for idx in sampler:
        a, b = pre.fetch(idx), stream.fetch(idx)
        assert torch.equal(a["x"], b["x"])
        assert len(stream._cache) <= stream.capacity
        n += 1
    assert n == 3 * 37
    # bounded memory: the streamed source never held more than its window (+ a batch's blocks)
    assert stream.capacity < len(stream.blocks) and stream.loaded_blocks > len(stream.blocks)   # it re-reads


def test_the_order_is_a_window_shuffle_and_covers_every_row_once(export):
    blocks = [64, 64, 64, 64, 44]
    for window in (1, 2, 5):
        order = data.epoch_order(blocks, window, 5, "toy", 0)
        assert sorted(order.tolist()) == list(range(300))
    assert not torch.equal(data.epoch_order(blocks, 2, 5, "toy", 0), data.epoch_order(blocks, 2, 5, "toy", 1))
    # the whole split in one window is a plain permutation (the preloaded default)
    g = torch.Generator()
    from pdd.core.determinism import derive_seed
    g.manual_seed(derive_seed(5, "toy", "epoch", "0"))
    assert torch.equal(data.epoch_order(blocks, 5, 5, "toy", 0), torch.randperm(300, generator=g))


def test_memory_budget_chooses_streaming(export):
    size = data.split_bytes(data.split_files(export, "train"), ["image_8"])
    assert size == 300 * 8 * 8 * 3 + 0 or size > 300 * 8 * 8 * 3          # raw pixels, plus Parquet overhead
    assert not loop_toy.source(export, None, None, budget_mb=1).streaming     # fits: preloaded, one window
    src = loop_toy.source(export, None, None, budget_mb=size / 2**20 / 2)     # half of it fits: streamed
    assert src.streaming and 1 <= src.window < len(src.blocks)


def test_streaming_and_preloaded_train_to_identical_weights(export, tmp_path):
    toy(tmp_path, export, tmp_path / "pre", "--window", 2)
    toy(tmp_path, export, tmp_path / "stream", "--window", 2, "--streaming")
    for f in ("weights.safetensors", "raw.safetensors", "loss.txt"):
        assert (tmp_path / "pre" / f).read_bytes() == (tmp_path / "stream" / f).read_bytes(), f


def test_ema_kill_and_resume_equals_uninterrupted(export, tmp_path):
    toy(tmp_path, export, tmp_path / "full")
    killed = toy(tmp_path, export, tmp_path / "cut", kill_after=5, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in loop.checkpoints(tmp_path / "cut/ckpt")] == ["step-00000004"]
    toy(tmp_path, export, tmp_path / "cut", "--resume")
    for f in ("weights.safetensors", "raw.safetensors", "loss.txt"):
        assert (tmp_path / "full" / f).read_bytes() == (tmp_path / "cut" / f).read_bytes(), f
    # EMA is really on: what ships differs from the raw trained weights
    assert (tmp_path / "full/weights.safetensors").read_bytes() != (tmp_path / "full/raw.safetensors").read_bytes()
    # control: resuming without the saved named-generator state would not match (the test can fail)
    shutil.rmtree(tmp_path / "cut")
    toy(tmp_path, export, tmp_path / "cut", kill_after=5, check=False)
    for rngs in (tmp_path / "cut/ckpt").glob("step-*/rngs-rank0.pt"):
        rngs.unlink()
        torch.save({}, rngs)
        progress = json.loads((rngs.parent / loop.PROGRESS).read_text())   # a consistent checkpoint without them
        progress["files"][rngs.name] = hash_file(rngs)
        (rngs.parent / loop.PROGRESS).write_text(json.dumps(progress))
    toy(tmp_path, export, tmp_path / "cut", "--resume")
    assert (tmp_path / "full/weights.safetensors").read_bytes() != (tmp_path / "cut/weights.safetensors").read_bytes()


def test_two_processes_draw_different_noise_checkpoint_and_resume(export, tmp_path):
    toy(tmp_path, export, tmp_path / "full", torchrun=True)
    r0, r1 = ((tmp_path / "full" / f"noise-rank{r}.txt").read_text() for r in (0, 1))
    assert r0 != r1
    # ... and between them exactly the noise one process draws for the same global batch (loop.Rngs)
    toy(tmp_path, export, tmp_path / "one")
    assert float(r0) + float(r1) == pytest.approx(float((tmp_path / "one/noise-rank0.txt").read_text()), rel=1e-5)
    cut = toy(tmp_path, export, tmp_path / "cut", torchrun=True, kill_after=5, check=False)
    assert cut.returncode != 0
    assert [p.name for p in loop.checkpoints(tmp_path / "cut/ckpt")] == ["step-00000004"]
    assert {p.name for p in (tmp_path / "cut/ckpt/step-00000004").glob("rngs-rank*.pt")} == {"rngs-rank0.pt", "rngs-rank1.pt"}
    toy(tmp_path, export, tmp_path / "cut", "--resume", torchrun=True)
    assert (tmp_path / "full/weights.safetensors").read_bytes() == (tmp_path / "cut/weights.safetensors").read_bytes()


def test_schedules():
    cos = loop.lr_lambda("cosine", 10, 110, 0.1)
    lin = loop.lr_lambda("linear", 0, 100, 0.0)
    const = loop.lr_lambda("constant", 5, 100)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0) and cos(110) == pytest.approx(0.1)
    assert cos(60) == pytest.approx(0.55)
    assert lin(0) == 1.0 and lin(50) == pytest.approx(0.5) and lin(100) == 0.0
    assert const(0) == pytest.approx(0.2) and const(50) == 1.0


def test_optimizer_kinds_from_params():
    m = torch.nn.Linear(2, 2)
    for kind, cls in (("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        opt = loop.make_optimizer(m, loop_toy.train_cfg(4, 0).optimizer.__class__(kind, 0.1, (0.8, 0.9), 1e-7, 0.01))
        assert isinstance(opt, cls) and opt.param_groups[0]["lr"] == 0.1
        if kind != "sgd":
            assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["eps"] == 1e-7


def test_a_non_finite_loss_stops_training(export, tmp_path):
    task = loop_toy.make_task(export)
    task.loss = lambda m, batch, rt: m(batch["x"]).sum() * float("nan")
    with pytest.raises(PddError, match="toy: the loss is nan at step 1"):
        loop.train(task, loop_toy.train_cfg(4, 0), 1, tmp_path / "ck", progress=False)


def test_frozen_modules_are_on_the_device_and_not_trained(export, tmp_path):
    task = loop_toy.make_task(export)
    frozen = torch.nn.Linear(3, 3)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    seen = {}

    def loss(m, batch, rt):
        seen["grad"] = any(p.requires_grad for p in rt.frozen["enc"].parameters())
        seen["training"] = rt.frozen["enc"].training
        return torch.nn.functional.mse_loss(m(batch["x"]), rt.frozen["enc"](batch["x"].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    task.loss, task.frozen = loss, {"enc": frozen}
    loop.train(task, loop_toy.train_cfg(2, 0), 1, tmp_path / "ck", progress=False)
    assert seen == {"grad": False, "training": False}
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
