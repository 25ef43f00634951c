"""Does the model copy its training images? Nearest training neighbours of generated samples, with no
downloaded copy-detection network (no SSCD): in *our own* CLIP's image-embedding space (cosine of the
normalised embeddings) and in downscaled pixel space (Pearson correlation of the images shrunk to
`pixel_size` px: the cosine of the mean-centred pixel vectors).

The reference is the val split: real images the model never saw. Their nearest-train similarities show how
close "close but not copied" gets in this dataset (near-duplicates in the data, a style shared by a source).
A sample is flagged as a likely copy when its nearest-train CLIP similarity is at or above `threshold`.

What this can catch: near-exact copies and copies that survive a small shift in colour or a blur (both spaces),
and close recompositions in CLIP space as far as our small CLIP separates images. What it cannot: copies of
a part of an image (a crop, an object pasted into a new scene), mirrored or heavily re-coloured copies, and
anything our CLIP (trained on this dataset only, at a low resolution) does not tell apart; it does not look
at text rendered into images or at style.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from pdd.core import shards
from pdd.train import imaging, pipeline, quality
from pdd.train.vae import load_images

QUANTILES = (0.0, 0.5, 0.9, 0.99, 1.0)


def pixel_features(images_u8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N,R,R,3] -> unit vectors of the images shrunk to size x size, mean-centred per image
    (their dot product is the Pearson correlation of the small images; a flat image gives 0)."""
    if len(images_u8) == 0:
        return torch.zeros((0, size * size * 3))
    x = images_u8.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear")
    x = x.flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def nearest(query: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of query (unit vectors), the largest cosine with a row of ref and its index
    (ties: the lowest index)."""
    sims = query.double() @ ref.double().T
    best = sims.max(dim=1, keepdim=True).values
    idx = (sims >= best).float().argmax(dim=1)   # the first index attaining the maximum
    return best.squeeze(1).float(), idx


def _r(x: float) -> float:
    return round(float(x), 6)


def distribution(sims: torch.Tensor) -> dict:
    """Quantiles and mean of a similarity vector (rounded: stable JSON)."""
    if len(sims) == 0:
        return {"n": 0}
    s = sims.double()
    out = {"n": len(s), "mean": _r(s.mean())}
    for q in QUANTILES:
        key = {0.0: "min", 1.0: "max"}.get(q, f"p{int(q * 100):02d}")
        out[key] = _r(torch.quantile(s, q))
    return out


@dataclass(frozen=True)
class PerSample:
    """Each sample's nearest training image (index) and similarity in both spaces, and its flag."""
    clip: torch.Tensor
    clip_idx: torch.Tensor
    pixel: torch.Tensor
    pixel_idx: torch.Tensor
    flagged: torch.Tensor


@dataclass(frozen=True)
class Analysis:
    report: dict                # JSON data: counts, distributions, the threshold, how many are flagged
    per_sample: PerSample


@dataclass(frozen=True)
class Copies:
    """What find_copies returns besides the files it wrote."""
    metrics: dict               # the memorization stage's metrics file
    pairs: bytes                # the PNG of the shown samples above their nearest training images


def analyse(samples_u8, train_u8, val_u8, *, clip_embed, threshold: float, pixel_size: int) -> Analysis:
    """Nearest-train similarities of samples and of val in both spaces; `clip_embed(u8) -> unit vectors`.
    Returns the report and the per-sample arrays."""
    ft, fs, fv = clip_embed(train_u8), clip_embed(samples_u8), clip_embed(val_u8)
    pt, ps, pv = (pixel_features(x, pixel_size) for x in (train_u8, samples_u8, val_u8))
    cs, ci = nearest(fs, ft)
    ps_sim, ps_idx = nearest(ps, pt)
    rep: dict = {"n_samples": len(samples_u8), "n_train": len(train_u8), "n_val": len(val_u8),
                 "threshold": threshold, "pixel_size": pixel_size}
    spaces = {"clip": (cs, fv, ft), "pixel": (ps_sim, pv, pt)}
    for name, (s_sims, fval, ftrain) in spaces.items():
        v_sims = nearest(fval, ftrain)[0] if len(fval) else torch.zeros(0)
        entry = {"samples": distribution(s_sims), "val": distribution(v_sims)}
        if len(v_sims):
            vmax = float(v_sims.max())
            entry["samples_above_val_max"] = int((s_sims > vmax).sum())
        # the flag is the CLIP count; the same threshold on the pixel correlation is shown beside it
        entry["samples_at_or_above_threshold"] = int((s_sims >= threshold).sum())
        entry["val_at_or_above_threshold"] = int((v_sims >= threshold).sum())
        rep[name] = entry
    flagged = cs >= threshold
    rep["flagged"] = int(flagged.sum())
    return Analysis(rep, PerSample(clip=cs, clip_idx=ci, pixel=ps_sim, pixel_idx=ps_idx, flagged=flagged))


def shown_order(clip_sims: torch.Tensor, flagged: torch.Tensor, show: int) -> list[int]:
    """Which samples to draw: the flagged ones first, then the closest others; most similar first, `show` in all."""
    order = sorted(range(len(clip_sims)), key=lambda i: (not bool(flagged[i]), -float(clip_sims[i]), i))
    return order[:show]


def pairs_image(samples_u8: torch.Tensor, train_u8: torch.Tensor, picks: list[int], nearest_idx: torch.Tensor,
                size: int, scale: int = 2):
    """A PIL image: the picked samples in the top row, each one's nearest training image below it."""
    def fit(x):
        if x.shape[1] == size:
            return x
        y = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True)
        return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)

    if not picks:
        return imaging.grid([torch.full((1, size, size, 3), 255, dtype=torch.uint8)], scale=scale)
    top = fit(samples_u8[picks])
    bottom = fit(train_u8[nearest_idx[picks]])
    return imaging.grid([top, bottom], scale=scale)


def find_copies(pipe, cfg, *, seed: int, steps: int, guidance_scale: float, export_dir, clip_dir, out_dir) -> Copies:
    """The memorization stage: cfg.n_samples images from `pipe` (training captions spread evenly, one
    generator each: tag 'memorization'), their nearest training images in our CLIP's space (clip_dir) and in
    pixel space, beside val's. Writes out_dir/samples/NNNN.png and out_dir/neighbours.tsv."""
    pipe.set_progress_bar_config(disable=True)
    n = cfg.n_samples
    prompts = pipeline.train_prompts(export_dir, n) if pipeline.is_conditional(pipe) else [""] * n
    samples_u8 = pipeline.generate_batched(pipe, prompts, seed=seed, tag="memorization", steps=steps,
                                           guidance_scale=guidance_scale)
    res = samples_u8.shape[1]
    resolutions = shards.read_index(export_dir)["resolutions"]
    data_res = res if res in resolutions else max(resolutions)
    train_u8 = load_images(export_dir, "train", data_res)
    val_u8 = load_images(export_dir, "val", data_res)
    train_ids = shards.read_split(export_dir, "train", columns=["file_id"]).column("file_id").to_pylist()
    clip_model, processor = pipeline.load_clip(clip_dir)

    def embed(x):
        return quality.clip_features(clip_model, processor, x) if len(x) else torch.zeros((0, 1))

    found = analyse(samples_u8, train_u8, val_u8, clip_embed=embed, threshold=cfg.threshold, pixel_size=cfg.pixel_size)
    rep, per = found.report, found.per_sample

    out = Path(out_dir)
    (out / "samples").mkdir()
    lines = ["sample\tprompt\tclip_nearest_train\tclip_similarity\tpixel_nearest_train\tpixel_similarity\tflagged"]
    flagged_list = []
    for j, img in enumerate(samples_u8):
        name = f"samples/{j:04d}.png"
        (out / name).write_bytes(imaging.png_bytes(Image.fromarray(img.numpy())))
        ci, pi = int(per.clip_idx[j]), int(per.pixel_idx[j])
        c, p, f = float(per.clip[j]), float(per.pixel[j]), bool(per.flagged[j])
        lines.append(f"{name}\t{' '.join(prompts[j].split())}\t{train_ids[ci]}\t{c:.6f}\t{train_ids[pi]}\t{p:.6f}\t{int(f)}")
        if f:
            flagged_list.append({"sample": name, "prompt": prompts[j], "nearest_train": train_ids[ci],
                                 "clip_similarity": round(c, 6), "pixel_similarity": round(p, 6)})
    (out / "neighbours.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep["flagged_samples"] = sorted(flagged_list, key=lambda r: (-r["clip_similarity"], r["sample"]))
    picks = shown_order(per.clip, per.flagged, cfg.show)
    rep["shown"] = [f"samples/{j:04d}.png" for j in picks]
    return Copies(metrics=rep, pairs=imaging.png_bytes(pairs_image(samples_u8, train_u8, picks, per.clip_idx, res)))
