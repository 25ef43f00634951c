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
import tempfile
from pathlib import Path

import _common  # the set-up: offline, the repository on sys.path (first)
import torch

from pdd.core import config, determinism
from pdd.core.determinism import seed_everything
from pdd.train import clip, synthetic
from pdd.train import tokenizer as tk

CFGS = config.load(_common.ROOT / "params.yaml")
determinism.apply(CFGS["compute"])   # params.yaml compute: the stage's kernels, for both sides
CFG = config.patch(CFGS["clip"], {
    "image_size": 32, "text": {"hidden_size": 128, "intermediate_size": 512, "num_layers": 2, "num_heads": 4},
    "vision": {"hidden_size": 128, "intermediate_size": 512, "num_layers": 2, "num_heads": 4, "patch_size": 4},
    "projection_dim": 128, "train": {"batch_size": 32, "steps": 20, "eval_every": 0, "checkpoint_every": 0, "threads": 2,
                                     "schedule": {"kind": "cosine", "warmup_steps": 5, "min_lr_ratio": 0.0}}})


def stage_rate(root: Path, cfg) -> float:
    return _common.stage_rate(clip.train_clip(root / "export", root / "tok", root / "out", cfg, 1,
                                              ckpt_dir=root / "ck", progress=True))


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
    return _common.bare_rate(model, cfg, lambda: model(**batch, return_loss=True).loss, cfg.train.batch_size)


def flops_per_image(model, batch) -> float:
    return _common.flops_per_item(model, lambda: model(**batch, return_loss=True).loss, len(batch["input_ids"]))


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
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: CLIP {n_params / 1e6:.2f} M params, {cfg.image_size} px, patch {cfg.vision.patch_size}, "
          f"batch {cfg.train.batch_size}, {torch.get_num_threads()} threads, device cpu")
    _common.print_train(stage, bare, fpi)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
