"""Sample quality without downloaded weights: where the model sits between a floor and a ceiling.

* SWD: multi-scale sliced Wasserstein distance between 7x7 patches of Laplacian-pyramid levels (Karras et
  al. 2018, "Progressive Growing of GANs", section 5), averaged over levels, x 1e3 as in the paper.
* FD-CLIP: the Fréchet distance between Gaussians fitted to *our own* CLIP's image embeddings.

Each is reported for: the samples vs the val split; the floor (train images vs val: real vs real); and a
trivial ceiling (per-channel Gaussian noise with the data's colour statistics vs val). All random draws
(patch positions, projection directions, the noise) come from generators seeded from the params seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pdd.train.clip import _features, normalizer


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    out, cur = [], x
    for _ in range(levels - 1):
        down = F.avg_pool2d(cur, 2)
        up = F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False)
        out.append(cur - up)
        cur = down
    out.append(cur)
    return out


def _patches(level: torch.Tensor, per_image: int, g: torch.Generator, size: int = 7) -> torch.Tensor:
    n, c, h, w = level.shape
    if h < size or w < size:
        size = min(h, w)
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=g)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=g)
    out = []
    for i in range(n):
        for y, x in zip(ys[i].tolist(), xs[i].tolist()):
            out.append(level[i, :, y:y + size, x:x + size].reshape(-1))
    return torch.stack(out)


def _normalise(d: torch.Tensor, c: int) -> torch.Tensor:
    d = d.view(len(d), c, -1)
    d = (d - d.mean(dim=(0, 2), keepdim=True)) / d.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return d.reshape(len(d), -1)


def _swd(a: torch.Tensor, b: torch.Tensor, g: torch.Generator, dirs: int = 128, repeats: int = 4) -> float:
    n = min(len(a), len(b))
    total = 0.0
    for _ in range(repeats):
        proj = torch.randn(a.shape[1], dirs, generator=g)
        proj = proj / proj.norm(dim=0, keepdim=True)
        pa = (a[torch.randperm(len(a), generator=g)[:n]] @ proj).sort(dim=0).values
        pb = (b[torch.randperm(len(b), generator=g)[:n]] @ proj).sort(dim=0).values
        total += float((pa - pb).abs().mean())
    return total / repeats


def swd(a_u8: torch.Tensor, b_u8: torch.Tensor, seed: int, levels: int = 3, per_image: int = 64) -> float:
    """Multi-scale SWD (x1e3) between two uint8 batches [N,R,R,3]."""
    g = _gen(seed)
    xa = a_u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    xb = b_u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    levels = max(1, min(levels, int(torch.log2(torch.tensor(float(xa.shape[-1]) / 4)).item()) + 1))
    dists = []
    for la, lb in zip(laplacian_pyramid(xa, levels), laplacian_pyramid(xb, levels)):
        pa = _normalise(_patches(la, per_image, g), 3)
        pb = _normalise(_patches(lb, per_image, g), 3)
        dists.append(_swd(pa, pb, g))
    return 1e3 * sum(dists) / len(dists)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet(fa: torch.Tensor, fb: torch.Tensor) -> float:
    fa, fb = fa.double(), fb.double()
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    ca, cb = torch.cov(fa.T), torch.cov(fb.T)
    sa = _sqrtm_psd(ca)
    cross = _sqrtm_psd(sa @ cb @ sa)
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(ca) + torch.trace(cb) - 2 * torch.trace(cross))


@torch.no_grad()
def clip_features(clip_model, processor, images_u8: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    size = clip_model.config.vision_config.image_size
    pixels = normalizer(processor.image_processor if hasattr(processor, "image_processor") else processor)
    out = []
    for s in range(0, len(images_u8), batch_size):
        x = images_u8[s:s + batch_size]
        if x.shape[1] != size:
            x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bicubic", antialias=True,
                              align_corners=False).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        f = _features(clip_model.get_image_features(pixel_values=pixels(x)))
        out.append(f / f.norm(dim=-1, keepdim=True))
    return torch.cat(out)


def noise_like(ref_u8: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The ceiling: per-channel Gaussian noise with the reference's colour mean and std."""
    x = ref_u8.float()
    mean, std = x.mean(dim=(0, 1, 2)), x.std(dim=(0, 1, 2))
    z = torch.randn((n, *ref_u8.shape[1:]), generator=_gen(seed))
    return (z * std + mean).round().clamp(0, 255).to(torch.uint8)


def report(samples_u8, val_u8, train_u8, seed: int, clip_model=None, processor=None) -> dict:
    """SWD and FD-CLIP of samples, floor (train) and ceiling (noise), all against val."""
    n = len(samples_u8)
    floor = train_u8[:max(n, 2)]
    ceiling = noise_like(val_u8, max(n, 2), seed)
    out = {"n_samples": n, "n_val": len(val_u8),
           "swd": swd(samples_u8, val_u8, seed), "swd_floor_train": swd(floor, val_u8, seed),
           "swd_ceiling_noise": swd(ceiling, val_u8, seed)}
    if clip_model is not None and n > 1:
        fv = clip_features(clip_model, processor, val_u8)
        out.update({"fd_clip": frechet(clip_features(clip_model, processor, samples_u8), fv),
                    "fd_clip_floor_train": frechet(clip_features(clip_model, processor, floor), fv),
                    "fd_clip_ceiling_noise": frechet(clip_features(clip_model, processor, ceiling), fv)})
    return out
