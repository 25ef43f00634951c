"""The VAE of stage `vae`: a `diffusers.AutoencoderKL` built from params and trained from scratch.

Objective: reconstruction (L1 or L2, `vae.loss`, plus `vae.chroma_weight` x the same on opponent-colour
channels) of a posterior *sample* (drawn from the loop's named
generators' 'posterior' draws) plus `vae.kl_weight` x the KL to N(0, I) per latent element; optionally a
patch-GAN discriminator trained from scratch (hinge loss, `vae.gan.weight` > 0, off by default). No
pretrained perceptual network (LPIPS, VGG) is used: their weights are not ours to use.

Evaluation on the val split: PSNR and SSIM of reconstructions (decoded posterior mean) beside two
baselines (each image's mean colour; a bicubic down-then-up resize to the latent's spatial size), the
KL, and a PNG grid of val images above their reconstructions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from pdd.core.config import as_dict
from pdd.core.determinism import seed_everything, use_attention
from pdd.core.hashing import hash_json, hash_path
from pdd.core import shards
from pdd.core.errors import PddError
from pdd.train import data, imaging, loop

NONDETERMINISM = [
    "vae: bit-identical weights need the same machine type, torch build, thread count (vae.train.threads) and "
    "number of processes; on GPU also the same GPU model, driver and CUDA/cuDNN",
]


def downsample_factor(cfg) -> int:
    return 2 ** (len(cfg.block_out_channels) - 1)


def latent_size(cfg) -> int:
    return cfg.resolution // downsample_factor(cfg)


def check_inputs(export_dir, cfg) -> dict:
    """What is on disk, before anything is trained (the rules of the params themselves are
    pdd/core/config.py's check, run before the stage starts)."""
    index = shards.read_index(export_dir)
    if cfg.resolution not in index["resolutions"]:
        raise PddError(f"{export_dir}: the export has no {cfg.resolution} px images for vae.resolution (it has "
                       f"{index['resolutions']}); rebuild it (`dvc repro export`)")
    loop.check_config(cfg.train, index["counts"].get("train", 0), "vae.train")
    loop.check_memory(lambda: VaeObjective(cfg), cfg.train, "vae",
                      "vae.block_out_channels, vae.layers_per_block" + (" or vae.gan.channels" if cfg.gan.weight > 0 else ""))
    return index


def build_vae(cfg, scaling_factor: float = 1.0):
    n = len(cfg.block_out_channels)
    return use_attention(AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_out_channels),
                         layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
                         norm_num_groups=cfg.norm_num_groups, sample_size=cfg.resolution,
                         scaling_factor=scaling_factor, mid_block_add_attention=cfg.mid_attention))


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN (Isola et al. 2017): strided convs -> one logit per patch."""

    def __init__(self, channels: int, layers: int):
        super().__init__()
        mods, c = [torch.nn.Conv2d(3, channels, 4, 2, 1), torch.nn.LeakyReLU(0.2)], channels
        for _ in range(layers - 1):
            mods += [torch.nn.Conv2d(c, c * 2, 4, 2, 1), torch.nn.GroupNorm(8, c * 2), torch.nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(torch.nn.Conv2d(c, 1, 3, 1, 1))
        self.net = torch.nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)


def opponent(x: torch.Tensor) -> torch.Tensor:
    """The two opponent-colour channels of an RGB batch (N, 3, H, W): red-green and yellow-blue."""
    r, g, b = x.unbind(1)
    return torch.stack([r - g, (r + g) / 2 - b], 1)


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, cfg) -> torch.Tensor:
    """L1 or L2 (vae.loss) over RGB, plus vae.chroma_weight x the same over the opponent-colour channels: a red
    turned brown or a green turned grey moves the RGB values a little but the opponent channels a lot."""
    dist = (lambda d: d.abs().mean()) if cfg.loss == "l1" else (lambda d: (d ** 2).mean())
    loss = dist(rec - x)
    if cfg.chroma_weight:
        loss = loss + cfg.chroma_weight * dist(opponent(rec) - opponent(x))
    return loss


class VaeObjective(torch.nn.Module):
    """The trained module: the VAE (and the discriminator when the GAN is on); forward returns the loss."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.vae = build_vae(cfg)
        self.disc = PatchDiscriminator(cfg.gan.channels, cfg.gan.layers) if cfg.gan.weight > 0 else None

    def forward(self, x, draw_normal, step: int):
        """draw_normal(shape, dtype): standard normal values (the loop's 'posterior' draws for these rows)."""
        post = self.vae.encode(x).latent_dist
        z = post.mean + post.std * draw_normal(post.mean.shape, post.mean.dtype)   # = post.sample(), its draws ours
        rec = self.vae.decode(z).sample
        rec_loss = reconstruction_loss(rec, x, self.cfg)
        kl = post.kl().mean() / z[0].numel()
        loss = rec_loss + self.cfg.kl_weight * kl
        if self.disc is not None and step >= self.cfg.gan.start_step:
            # discriminator: hinge loss on real vs (detached) reconstructions
            d_loss = F.relu(1 - self.disc(x)).mean() + F.relu(1 + self.disc(rec.detach())).mean()
            # generator: fool a frozen copy of the discriminator's weights (one optimizer trains both)
            frozen = {k: v.detach() for k, v in self.disc.named_parameters()}
            g_loss = -torch.func.functional_call(self.disc, frozen, (rec,)).mean()
            loss = loss + d_loss + self.cfg.gan.weight * g_loss
        return loss


def split_source(export_dir, cfg, split: str, **force):
    col = shards.image_column(cfg.resolution)

    def prepare(table):
        return {"images": torch.from_numpy(np.array(shards.images_array(table, cfg.resolution), copy=True))}

    def transform(batch):
        return {"x": imaging.to_model(batch["images"])}

    return data.open_split(export_dir, split, [col], prepare, budget_mb=cfg.train.memory_budget_mb,
                           transform=transform, batch_size=cfg.train.batch_size, **force)


def load_images(export_dir, split: str, resolution: int) -> torch.Tensor:
    table = shards.read_split(export_dir, split, columns=[shards.image_column(resolution)])
    return torch.from_numpy(np.array(shards.images_array(table, resolution), copy=True))


@torch.no_grad()
def reconstruct(vae, images_u8: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, float]:
    """Decode the posterior mean of each image; returns (uint8 reconstructions, mean KL per latent element)."""
    device = next(vae.parameters()).device
    out, kls = [], []
    for s in range(0, len(images_u8), batch_size):
        x = imaging.to_model(images_u8[s:s + batch_size]).to(device)
        post = vae.encode(x).latent_dist
        out.append(imaging.to_u8(vae.decode(post.mean).sample))
        # the KL in fp32: under a bf16 autocast the posterior comes back in bf16, and its KL would be rounded to
        # bf16's 8 bits (val KL 5.0); the same diffusers distribution, built from fp32 parameters
        kls.append(DiagonalGaussianDistribution(post.parameters.float()).kl() / post.mean[0].numel())
    return torch.cat(out), float(torch.cat(kls).mean())


def evaluate(vae, val_u8: torch.Tensor, cfg) -> dict:
    rec, kl = reconstruct(vae, val_u8)
    base_mean = imaging.mean_colour(val_u8)
    base_resize = imaging.resize_baseline(val_u8, latent_size(cfg))
    colour, colour_base = imaging.colour_error(val_u8, rec), imaging.colour_error(val_u8, base_resize)
    return {"val_psnr": float(imaging.psnr(val_u8, rec).mean()), "val_ssim": float(imaging.ssim(val_u8, rec).mean()),
            "val_kl": kl,
            "val_hue_error_deg": colour["hue_error_deg"], "val_chroma_loss": colour["chroma_loss"],
            "baseline_resize_hue_error_deg": colour_base["hue_error_deg"],
            "baseline_resize_chroma_loss": colour_base["chroma_loss"],
            "baseline_mean_colour_psnr": float(imaging.psnr(val_u8, base_mean).mean()),
            "baseline_mean_colour_ssim": float(imaging.ssim(val_u8, base_mean).mean()),
            "baseline_resize_psnr": float(imaging.psnr(val_u8, base_resize).mean()),
            "baseline_resize_ssim": float(imaging.ssim(val_u8, base_resize).mean())}


def preview(vae, val_u8: torch.Tensor, n: int):
    """Val images (top row) above their reconstructions (bottom row), shown at 2x."""
    shown = val_u8[:n]
    rec, _ = reconstruct(vae, shown)
    return imaging.grid([shown, rec], scale=2)


def train_vae(export_dir, out_dir, cfg, seed: int, *, ckpt_dir, resume: bool = False, progress: bool = True,
              live_dir=None, **force) -> loop.Trained:
    """Train and save the VAE into out_dir (AutoencoderKL.save_pretrained); returns the metrics, the plots
    (the preview PNG as "grid" when val has images), the loop's Result and the VAE."""
    check_inputs(export_dir, cfg)
    torch.set_num_threads(cfg.train.threads)
    seed_everything(seed)
    val = load_images(export_dir, "val", cfg.resolution)
    source = split_source(export_dir, cfg, "train", **force)
    model = VaeObjective(cfg)

    def loss(m, batch, rt):
        return m(batch["x"].to(rt.device), lambda shape, dtype: rt.rng.randn("posterior", shape, dtype), rt.step)

    def ev(m, rt):
        return evaluate(m.vae, val, cfg) if len(val) else {}

    def pv(m, rt):
        return preview(m.vae, val, cfg.preview_images) if len(val) else None

    task = loop.Task("vae", model, source, loss, evaluate=ev, preview=pv)
    fingerprint = hash_json({"cfg": as_dict(cfg), "seed": seed, "export": hash_path(export_dir)})
    result = loop.train(task, cfg.train, seed, ckpt_dir, resume=resume, fingerprint=fingerprint, progress=progress,
                         live_dir=live_dir)
    vae = result.model.vae.to("cpu")
    vae.save_pretrained(Path(out_dir), safe_serialization=True)
    grid = {"grid": imaging.png_bytes(result.preview)} if result.preview is not None else {}
    return loop.trained(result, vae, {"steps": result.steps, "train_loss": result.train_history[-1][1],
                                      "train_rows": source.n, "val_rows": len(val),
                                      "parameters": sum(p.numel() for p in vae.parameters()),
                                      "latent_shape": [cfg.latent_channels, latent_size(cfg), latent_size(cfg)]},
                        **grid)
