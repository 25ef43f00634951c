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

import tempfile
import time
from pathlib import Path

import _common  # the set-up: offline, the repository on sys.path (first)
import torch
from diffusers import AutoencoderKL

from pdd.core.determinism import seed_everything
from pdd.train import clip, imaging, latents, synthetic, vae
from pdd.train import tokenizer as tk


# ---- training -------------------------------------------------------------------------
def stage_rate(root: Path, cfg) -> float:
    return _common.stage_rate(vae.train_vae(root / "export", root / "vae-out", cfg, 1, ckpt_dir=root / "ck",
                                            progress=False))


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
    g = torch.Generator().manual_seed(1)
    return _common.bare_rate(model, cfg, lambda: bare_loss(model, x, cfg, g), len(x))


def flops_per_image(model, x, cfg) -> float:
    g = torch.Generator().manual_seed(0)
    return _common.flops_per_item(model, lambda: bare_loss(model, x, cfg, g), len(x))


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
    a = _common.parse(__doc__, "train_vae", argv, (("--encode-rows",), dict(
        type=int, default=512, help="train rows of the synthetic export (all are encoded)")))
    if a is None:
        return 2
    cfg, cfgs = _common.stage_configs(a.params, "vae", a.steps)
    lat_cfg, clip_cfg, tok_cfg = cfgs["latents"], cfgs["clip"], cfgs["tokenizer"]
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
        enc_model = AutoencoderKL.from_pretrained(root / "vae-out", local_files_only=True)
        all_u8 = torch.cat([vae.load_images(root / "export", s, cfg.resolution) for s in ("train", "val")])
        enc_stage, enc_inside, enc_bare = [], [], []
        for _ in range(a.rounds):
            w, i = stage_encode_rate(root, lat_cfg, cfg.resolution, len(all_u8))
            enc_stage.append(w)
            enc_inside.append(i)
            enc_bare.append(bare_encode_rate(enc_model, all_u8, lat_cfg.batch_size))

    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: AutoencoderKL {n_params / 1e6:.2f} M params, {cfg.resolution} px, "
          f"blocks {list(cfg.block_out_channels)}, "
          f"latent {cfg.latent_channels}x{vae.latent_size(cfg)}x{vae.latent_size(cfg)}, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads, device cpu")
    _common.print_train(stage, bare, fpi)
    es, ei, eb = max(enc_stage), max(enc_inside), max(enc_bare)
    _common.print_rates(f"encode ({len(all_u8)} images, batch {lat_cfg.batch_size}):",
                        [("latents.build, whole", enc_stage, 1), ("latents.build, in encode", enc_inside, 1),
                         ("bare vae.encode loop", enc_bare, 1)])
    print(f"encode ratio stage/bare: whole build {es / eb:.3f}, encode calls only {ei / eb:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
