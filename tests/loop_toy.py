"""A toy denoiser on the shared training loop, run as its own process by tests/test_loop.py
(so a real SIGKILL can interrupt it, and torchrun can give it two processes).

    python tests/loop_toy.py EXPORT_DIR OUT_DIR [--resume] [--streaming] [--window N] [--steps N] [--ema 0.9]

Writes OUT_DIR/weights.safetensors (what shipped: EMA weights when EMA is on), OUT_DIR/raw.safetensors
(the trained weights), and OUT_DIR/noise-rank{R}.txt (the sum of the first noise each rank drew).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdd.core import config  # noqa: E402
from pdd.core.determinism import seed_everything  # noqa: E402
from pdd.core import shards  # noqa: E402
from pdd.train import data, loop  # noqa: E402

RES = 8


def train_cfg(steps: int, ema: float) -> config.TrainCfg:
    return config.TrainCfg(
        steps=steps, batch_size=8, grad_accum=1, max_grad_norm=1.0, mixed_precision="no", eval_every=0,
        checkpoint_every=2, threads=1, memory_budget_mb=1024,
        optimizer=config.OptimizerCfg("adamw", 3e-3, (0.9, 0.99), 1e-8, 0.01),
        schedule=config.ScheduleCfg("cosine", 2, 0.1), ema=config.EmaCfg(ema, False))


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def source(export_dir, streaming: bool | None, window: int | None, budget_mb: int = 1024):
    def prepare(table):
        return {"images": torch.from_numpy(np.array(shards.images_array(table, RES), copy=True))}

    def transform(batch):
        return {"x": batch["images"].permute(0, 3, 1, 2).float() / 127.5 - 1.0}

    return data.open_split(export_dir, "train", [shards.image_column(RES)], prepare, budget_mb=budget_mb,
                           transform=transform, batch_size=8, streaming=streaming, window=window)


def make_task(export_dir, streaming=None, window=None, out_dir=None):
    model = Toy()
    first = {}

    def loss(m, batch, rt):
        x = batch["x"].to(rt.device)
        noise = rt.rng.randn("noise", x.shape)
        sigma = rt.rng.rand("timesteps", (x.shape[0], 1, 1, 1))
        if not first and out_dir is not None:
            first["sum"] = float(noise.sum())
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / f"noise-rank{rt.accelerator.process_index}.txt").write_text(repr(first["sum"]))
        return torch.nn.functional.mse_loss(m(x + sigma * noise), x)

    return loop.Task("toy", model, source(export_dir, streaming, window), loss)


def main(argv=None) -> int:
    from safetensors.torch import save_file

    p = argparse.ArgumentParser()
    p.add_argument("export_dir")
    p.add_argument("out_dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--window", type=int)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--ema", type=float, default=0.9)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    seed_everything(5)
    out = Path(a.out_dir)
    task = make_task(a.export_dir, True if a.streaming else None, a.window, out)
    result = loop.train(task, train_cfg(a.steps, a.ema), 5, out / "ckpt", resume=a.resume, progress=False)
    if result.model is not None and loop_is_main(result):
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(out / "weights.safetensors"))
        if result.raw_state is not None:
            save_file({k: v.contiguous() for k, v in result.raw_state.items()}, str(out / "raw.safetensors"))
        (out / "loss.txt").write_text("".join(f"{s}\t{v!r}\n" for s, v, _ in result.train_history))
    return 0


def loop_is_main(result) -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except loop.PddError as exc:   # as the stage runner does: one line, exit 2
        print(f"loop_toy: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
