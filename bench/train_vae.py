"""Bench: training images/s of the `vae` stage's loop, and encode images/s of the `latents` stage, each beside a
bare PyTorch loop, in one run.

Training. The stage side is pdd.train.vae.train_vae (the shared accelerate loop, seeded data order, per-batch
uint8 -> [-1, 1] conversion, named posterior generator, metric history) with eval and checkpoints off, on a
synthetic export at the params.yaml vae size (vae.resolution, block_out_channels, batch_size). The bare side is
the same AutoencoderKL config and seed, the same batch size, one preloaded [-1, 1] batch, the same objective
(L1/L2 reconstruction of a posterior sample + kl_weight x KL per latent element), AdamW with the stage's
lr/betas/eps/weight decay, gradient clipping, no logging. Steps after a warm-up are timed; the two are
interleaved and each side's best round is kept. Also prints the training FLOPs per image (forward + backward,
torch's FlopCounterMode) and the FLOP/s both loops achieve.

Encoding. The stage side is pdd.train.latents.build on the same export (reads the shards, encodes every train
and val image to its posterior mean with latents.batch_size, encodes the captions with the text tower, writes
the Parquet files and the VAE). pdd/train/latents.py has no separate encode function, so the whole build is
timed and, around it, the time spent inside AutoencoderKL.encode is measured by wrapping the class method:
both rates are printed. The bare side is `vae.encode(x).latent_dist.mean` on preloaded [-1, 1] batches of the
same size over the same number of images, same VAE weights, under no_grad.

    python bench/train_vae.py [--steps 20] [--rounds 3] [--encode-rows 512]
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
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pdd.core import config  # noqa: E402
from pdd.core import determinism  # noqa: E402
from pdd.core.determinism import seed_everything  # noqa: E402
from pdd.train import clip, imaging, latents, synthetic, vae  # noqa: E402
from pdd.train import tokenizer as tk  # noqa: E402

WARMUP = 5


def configs(params: Path, steps: int):
    cfgs = config.load(params)
    determinism.apply(cfgs["compute"])   # params.yaml compute: the stages' kernels, for both sides
    v = config.patch(cfgs["vae"], {"train": {"steps": steps, "eval_every": 0, "checkpoint_every": 0,
                                             "schedule": {"warmup_steps": min(WARMUP, steps)}}})
    return v, cfgs["latents"], cfgs["clip"], cfgs["tokenizer"]


# ---- training -------------------------------------------------------------------------
def stage_rate(root: Path, cfg) -> float:
    m = vae.train_vae(root / "export", root / "vae-out", cfg, 1, ckpt_dir=root / "ck", progress=False)
    r = m.result
    timed = r.step_seconds[WARMUP:]
    return len(timed) * r.items_per_step / sum(timed)


def bare_setup(root: Path, cfg):
    seed_everything(1)
    model = vae.build_vae(cfg).train()
    x = imaging.to_model(vae.load_images(root / "export", "train", cfg.resolution)[:cfg.train.batch_size])
    return model, x


def bare_loss(model, x, cfg, g):
    post = model.encode(x).latent_dist
    z = post.sample(generator=g)
    rec = model.decode(z).sample
    rec_loss = (rec - x).abs().mean() if cfg.loss == "l1" else ((rec - x) ** 2).mean()
    return rec_loss + cfg.kl_weight * post.kl().mean() / z[0].numel()


def bare_rate(model, x, cfg) -> float:
    o = cfg.train.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(cfg.train.steps):
        t0 = time.perf_counter()
        loss = bare_loss(model, x, cfg, g)
        loss.backward()
        if cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    timed = times[WARMUP:]
    return len(timed) * len(x) / sum(timed)


def flops_per_image(model, x, cfg) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        bare_loss(model, x, cfg, torch.Generator().manual_seed(0)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


# ---- encoding -------------------------------------------------------------------------
def text_parts(root: Path, clip_cfg, tok_cfg) -> None:
    """A tokenizer and an (untrained) CLIP of the params' size: latents.build needs a text tower."""
    tk.train_tokenizer(root / "export", root / "tok", tok_cfg)
    tokenizer, _ = clip.load_tokenizer(root / "tok")
    seed_everything(1)
    clip.build_model(clip_cfg, tokenizer).save_pretrained(root / "clip", safe_serialization=True)


class EncodeTimer:
    """Wraps AutoencoderKL.encode (the class method) to add up the seconds spent inside it."""

    def __init__(self):
        from diffusers import AutoencoderKL

        self.cls, self.orig, self.seconds, self.images = AutoencoderKL, AutoencoderKL.encode, 0.0, 0

    def __enter__(self):
        orig, timer = self.orig, self

        def encode(module, x, *a, **k):
            t0 = time.perf_counter()
            out = orig(module, x, *a, **k)
            timer.seconds += time.perf_counter() - t0
            timer.images += len(x)
            return out

        self.cls.encode = encode
        return self

    def __exit__(self, *exc):
        self.cls.encode = self.orig


def stage_encode_rate(root: Path, lat_cfg, resolution: int, n_rows: int) -> tuple[float, float]:
    """(images/s of the whole latents.build, images/s inside its AutoencoderKL.encode calls)."""
    out = root / "latents"
    out.mkdir(exist_ok=True)
    with EncodeTimer() as t:
        t0 = time.perf_counter()
        latents.build(root / "export", root / "vae-out", root / "clip", root / "tok", out, lat_cfg, resolution)
        wall = time.perf_counter() - t0
    return n_rows / wall, t.images / t.seconds


@torch.no_grad()
def bare_encode_rate(model, images_u8, batch_size: int) -> float:
    model.eval()
    xs = [imaging.to_model(images_u8[s:s + batch_size]) for s in range(0, len(images_u8), batch_size)]
    model.encode(xs[0]).latent_dist.mean  # warm-up
    t0 = time.perf_counter()
    for x in xs:
        model.encode(x).latent_dist.mean
    return len(images_u8) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per round (the first 5 are not timed)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--encode-rows", type=int, default=512, help="train rows of the synthetic export (all are encoded)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    a = p.parse_args(argv)
    if not a.params.is_file():
        print(f"train_vae bench: {a.params} not found", file=sys.stderr)
        return 2
    if a.steps <= WARMUP:
        print(f"train_vae bench: --steps must be more than the {WARMUP} warm-up steps", file=sys.stderr)
        return 2
    cfg, lat_cfg, clip_cfg, tok_cfg = configs(a.params, a.steps)
    torch.set_num_threads(cfg.train.threads)
    n_val = 8
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic.make_synthetic(root / "export", n_train=max(a.encode_rows, cfg.train.batch_size), n_val=n_val,
                                 resolutions=[cfg.resolution])
        model, x = bare_setup(root, cfg)
        fpi = flops_per_image(model, x, cfg)
        stage, bare = [], []
        for _ in range(a.rounds):
            stage.append(stage_rate(root, cfg))
            bare.append(bare_rate(model, x, cfg))

        # encode: the stage's VAE (the last round's output) on both sides
        text_parts(root, clip_cfg, tok_cfg)
        torch.set_num_threads(lat_cfg.threads)
        from diffusers import AutoencoderKL

        enc_model = AutoencoderKL.from_pretrained(root / "vae-out", local_files_only=True)
        all_u8 = torch.cat([vae.load_images(root / "export", s, cfg.resolution) for s in ("train", "val")])
        enc_stage, enc_inside, enc_bare = [], [], []
        for _ in range(a.rounds):
            w, i = stage_encode_rate(root, lat_cfg, cfg.resolution, len(all_u8))
            enc_stage.append(w)
            enc_inside.append(i)
            enc_bare.append(bare_encode_rate(enc_model, all_u8, lat_cfg.batch_size))

    s, b = max(stage), max(bare)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: AutoencoderKL {n_params / 1e6:.2f} M params, {cfg.resolution} px, "
          f"blocks {list(cfg.block_out_channels)}, "
          f"latent {cfg.latent_channels}x{vae.latent_size(cfg)}x{vae.latent_size(cfg)}, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads, device cpu")
    print(f"train FLOPs per image (fwd+bwd): {fpi / 1e6:.1f} MFLOP")
    print(f"stage loop: {s:8.1f} images/s  ({s * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in stage]}")
    print(f"bare loop:  {b:8.1f} images/s  ({b * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in bare]}")
    ratio = s / b
    print(f"train ratio stage/bare: {ratio:.3f} (goal >= 0.95){'' if ratio >= 0.95 else '  BELOW GOAL'}")
    print(f"median-based ratio: {statistics.median(stage) / statistics.median(bare):.3f}")
    es, ei, eb = max(enc_stage), max(enc_inside), max(enc_bare)
    print(f"encode ({len(all_u8)} images, batch {lat_cfg.batch_size}):")
    print(f"  latents.build, whole:      {es:8.1f} images/s   rounds {[round(v, 1) for v in enc_stage]}")
    print(f"  latents.build, in encode:  {ei:8.1f} images/s   rounds {[round(v, 1) for v in enc_inside]}")
    print(f"  bare vae.encode loop:      {eb:8.1f} images/s   rounds {[round(v, 1) for v in enc_bare]}")
    print(f"encode ratio stage/bare: whole build {es / eb:.3f}, encode calls only {ei / eb:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
