"""Bench: training images/s of the `clip` stage's loop beside a bare PyTorch loop, in one run.

The stage side is pdd.train.clip.train_clip (accelerate, seeded data order, per-batch
indexing and normalisation of uint8 images, metric history, progress bar) with eval and
checkpoints off. The bare side is the same CLIPModel config and seed, the same batch size,
one preloaded normalised batch, AdamW, no logging. Steps after a warm-up are timed; the
two are interleaved and each side's best round is kept. Also prints the model's training
FLOPs per image (forward + backward, counted by torch's FlopCounterMode) and the FLOP/s
both loops achieve.

    python bench/train_clip.py [--steps 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pdd.core import determinism  # noqa: E402
from pdd.core.determinism import seed_everything  # noqa: E402
from pdd.train import clip, synthetic  # noqa: E402
from pdd.train import tokenizer as tk  # noqa: E402

from pdd.core import config  # noqa: E402

CFGS = config.load(Path(__file__).resolve().parents[1] / "params.yaml")
determinism.apply(CFGS["compute"])   # params.yaml compute: the stage's kernels, for both sides
CFG = config.patch(CFGS["clip"], {
    "image_size": 32, "text": {"hidden_size": 128, "intermediate_size": 512, "num_layers": 2, "num_heads": 4},
    "vision": {"hidden_size": 128, "intermediate_size": 512, "num_layers": 2, "num_heads": 4, "patch_size": 4},
    "projection_dim": 128, "train": {"batch_size": 32, "steps": 20, "eval_every": 0, "checkpoint_every": 0, "threads": 2,
                                     "schedule": {"kind": "cosine", "warmup_steps": 5, "min_lr_ratio": 0.0}}})
WARMUP = 5


def stage_rate(root: Path, cfg) -> float:
    m = clip.train_clip(root / "export", root / "tok", root / "out", cfg, 1, ckpt_dir=root / "ck", progress=True)
    r = m.result
    timed = r.step_seconds[WARMUP:]
    return len(timed) * r.items_per_step / sum(timed)


def bare_setup(root: Path, cfg):
    tokenizer, processor = clip.load_tokenizer(root / "tok")
    seed_everything(1)
    model = clip.build_model(cfg, tokenizer).train()
    train = clip.load_split(root / "export", "train", cfg.image_size, tokenizer)
    bs = cfg.train.batch_size
    batch = {"pixel_values": clip.normalizer(processor)(train.images[:bs]), "input_ids": train.input_ids[:bs],
             "attention_mask": train.attention_mask[:bs]}
    return model, batch


def bare_rate(model, batch, cfg) -> float:
    o = cfg.train.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    times = []
    for _ in range(cfg.train.steps):
        t0 = time.perf_counter()
        loss = model(**batch, return_loss=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    timed = times[WARMUP:]
    return len(timed) * cfg.train.batch_size / sum(timed)


def flops_per_image(model, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch, return_loss=True).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["input_ids"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    cfg = config.patch(CFG, {"train": {"steps": a.steps}})
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic.make_synthetic(root / "export", n_train=512, n_val=8, resolutions=[cfg.image_size])
        tk.train_tokenizer(root / "export", root / "tok", config.TokenizerCfg(600, 2, 16))
        model, batch = bare_setup(root, cfg)
        fpi = flops_per_image(model, batch)
        stage, bare = [], []
        for _ in range(a.rounds):
            stage.append(stage_rate(root, cfg))
            bare.append(bare_rate(model, batch, cfg))
    s, b = max(stage), max(bare)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: CLIP {n_params / 1e6:.2f} M params, {cfg.image_size} px, patch {cfg.vision.patch_size}, "
          f"batch {cfg.train.batch_size}, {torch.get_num_threads()} threads, device cpu")
    print(f"train FLOPs per image (fwd+bwd): {fpi / 1e6:.1f} MFLOP")
    print(f"stage loop: {s:8.1f} images/s  ({s * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(x, 1) for x in stage]}")
    print(f"bare loop:  {b:8.1f} images/s  ({b * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(x, 1) for x in bare]}")
    ratio = s / b
    print(f"ratio stage/bare: {ratio:.3f} (goal >= 0.95){'' if ratio >= 0.95 else '  BELOW GOAL'}")
    print(f"median-based ratio: {statistics.median(stage) / statistics.median(bare):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
