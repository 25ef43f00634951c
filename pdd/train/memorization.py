"""Does the model copy its training images? Nearest training neighbours of generated samples, with no
downloaded copy-detection network (no SSCD), in three spaces: *our own* CLIP's image embeddings (cosine of the
normalised embeddings), downscaled pixels (Pearson correlation of the images shrunk to `pixel_size` px: the
cosine of the mean-centred pixel vectors) and a perceptual hash (DCT pHash of `hash_size`^2 bits; similarity
1 - Hamming distance / bits).

Calibrated on the data, not a fixed number: the val split (real images the model never saw) shows how close
"close but not copied" gets in this dataset (near-duplicate series, a style shared by a source). In each space
the threshold is the `percentile` (99) of val's nearest-train similarities. A space whose threshold is at or
above `saturated_above` is *saturated*: the data's own near-duplicates already sit there, so nothing above it
can be told apart, and the space takes no part in the flag. A sample is flagged as a likely copy only when it
is closer to a training image than the threshold in *every* unsaturated space among CLIP and pixels: a copy is
close in both, a look-alike (same subject or style, other pixels) is close in CLIP only and is counted as
such, not flagged. The pHash is reported beside them (its 64 bits saturate on small clip art). When neither
CLIP nor pixels is usable, nothing is flagged and the report says the check cannot separate copies here.

The flagged rate on training captions (the prompts most likely to pull a copy out) is reported beside
Somepalli et al.'s anchor: 1.88 % of Stable Diffusion 1.4 generations from LAION captions above 0.5 SSCD
similarity to a training image. Not the same measure, model or data: context, not a like-for-like comparison.

What this can catch: near-exact copies and copies that survive a small shift in colour or a blur (both spaces),
as far as our small CLIP separates images. What it cannot: copies of a part of an image (a crop, an object
pasted into a new scene), mirrored or heavily re-coloured copies, and anything our CLIP (trained on this dataset
only, at a low resolution) does not tell apart; it does not look at text rendered into images or at style. By
construction about 1 % of val images are above each threshold: a flag says "closer than 99 % of real unseen
images get", not "proven copy".
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
SPACES = ("clip", "pixel", "phash")
FLAG_SPACES = ("clip", "pixel")       # the flag needs every unsaturated one of these
ANCHOR = {"source": "Somepalli et al. 2023, Diffusion Art or Digital Forgery? Investigating Data Replication in "
                    "Diffusion Models",
          "rate_percent": 1.88,
          "what": "Stable Diffusion 1.4 generations from LAION captions with SSCD similarity above 0.5 to a "
                  "training image",
          "comparable": "context only: another model, data set, and measure (SSCD, a trained copy detector)"}


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


def _dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix (n x n), float64."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(torch.pi * (2 * i + 1) * k / (2 * n)) * (2.0 / n) ** 0.5
    m[0] /= 2 ** 0.5
    return m


def phash_features(images_u8: torch.Tensor, hash_size: int = 8) -> torch.Tensor:
    """uint8 [N,R,R,3] -> the DCT perceptual hash (grey image at 4*hash_size px, the hash_size^2 lowest
    frequencies, each bit: above the median of the non-DC ones) as +-1/sqrt(bits) vectors, so that
    (1 + dot) / 2 is 1 - Hamming distance / bits (`hash_similarity`)."""
    bits = hash_size * hash_size
    if len(images_u8) == 0:
        return torch.zeros((0, bits))
    x = images_u8.permute(0, 3, 1, 2).double() / 255.0
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    n = 4 * hash_size
    if grey.shape[-1] != n:
        grey = F.interpolate(grey, size=(n, n), mode="area" if grey.shape[-1] > n else "bilinear")
    d = _dct_matrix(n)
    low = (d @ grey[:, 0] @ d.T)[:, :hash_size, :hash_size].flatten(1)
    med = low[:, 1:].median(dim=1, keepdim=True).values
    return torch.where(low > med, 1.0, -1.0).float() / bits ** 0.5


def hash_similarity(dot: torch.Tensor) -> torch.Tensor:
    """1 - Hamming / bits, from the dot product of two phash_features rows."""
    return ((1 + dot) / 2).clamp(0, 1)


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
    """Each sample's nearest training image (index) and similarity in each space, and its flag."""
    clip: torch.Tensor
    clip_idx: torch.Tensor
    pixel: torch.Tensor
    pixel_idx: torch.Tensor
    phash: torch.Tensor
    phash_idx: torch.Tensor
    flagged: torch.Tensor


@dataclass(frozen=True)
class Analysis:
    report: dict                # JSON data: counts, distributions, the calibrated thresholds, how many are flagged
    per_sample: PerSample


@dataclass(frozen=True)
class Copies:
    """What find_copies returns besides the files it wrote."""
    metrics: dict               # the memorization stage's metrics file
    pairs: bytes                # the PNG of the shown samples above their nearest training images


def calibrate(val_sims: torch.Tensor, percentile: float, saturated_above: float) -> dict:
    """The threshold of one space: the PERCENTILE of val's nearest-train similarities; saturated when it is at or
    above SATURATED_ABOVE (or when there is no val to calibrate on)."""
    if len(val_sims) == 0:
        return {"threshold": None, "saturated": True, "why": "no val images to calibrate on"}
    t = _r(torch.quantile(val_sims.double(), percentile / 100.0))
    out = {"threshold": t, "saturated": t >= saturated_above}
    if out["saturated"]:
        out["why"] = (f"val's p{percentile:g} is {t:.4f}, at or above {saturated_above}: the data's own "
                      "near-duplicates sit there, nothing above it can be told apart")
    return out


def analyse(samples_u8, train_u8, val_u8, *, clip_embed, pixel_size: int, percentile: float = 99.0,
            saturated_above: float = 0.995, hash_size: int = 8) -> Analysis:
    """Nearest-train similarities of samples and of val in each space, the thresholds calibrated on val, and
    the flags; `clip_embed(u8) -> unit vectors`. Returns the report and the per-sample arrays."""
    feats = {
        "clip": [clip_embed(x) for x in (samples_u8, val_u8, train_u8)],
        "pixel": [pixel_features(x, pixel_size) for x in (samples_u8, val_u8, train_u8)],
        "phash": [phash_features(x, hash_size) for x in (samples_u8, val_u8, train_u8)],
    }
    n = len(samples_u8)
    rep: dict = {"n_samples": n, "n_train": len(train_u8), "n_val": len(val_u8), "pixel_size": pixel_size,
                 "hash_size": hash_size, "percentile": percentile, "saturated_above": saturated_above}
    sims, idxs, above = {}, {}, {}
    for name, (fs, fv, ft) in feats.items():
        s_sims, s_idx = nearest(fs, ft)
        v_sims = nearest(fv, ft)[0] if len(fv) else torch.zeros(0)
        if name == "phash":
            s_sims, v_sims = hash_similarity(s_sims), hash_similarity(v_sims)
        cal = calibrate(v_sims, percentile, saturated_above)
        entry = {"samples": distribution(s_sims), "val": distribution(v_sims), **cal,
                 "in_flag": name in FLAG_SPACES and not cal["saturated"]}
        if len(v_sims):
            entry["samples_above_val_max"] = int((s_sims > float(v_sims.max())).sum())
        if cal["threshold"] is not None:
            above[name] = s_sims > cal["threshold"]
            entry["samples_above_threshold"] = int(above[name].sum())
            entry["val_above_threshold"] = int((v_sims > cal["threshold"]).sum())
        rep[name] = entry
        sims[name], idxs[name] = s_sims, s_idx
    usable = [s for s in FLAG_SPACES if rep[s]["in_flag"]]
    rep["flag_spaces"] = usable
    rep["can_separate"] = bool(usable)
    flagged = torch.zeros(n, dtype=torch.bool)
    if usable:
        flagged = torch.ones(n, dtype=torch.bool)
        for s in usable:
            flagged &= above[s]
    rep["flagged"] = int(flagged.sum())
    # close in CLIP (above its threshold) but not flagged: look-alikes, same subject or style, other pixels
    rep["clip_only"] = int((above["clip"] & ~flagged).sum()) if "clip" in above else 0
    rep["rate_percent"] = round(100.0 * rep["flagged"] / n, 3) if n else 0.0
    rep["anchor"] = ANCHOR
    return Analysis(rep, PerSample(clip=sims["clip"], clip_idx=idxs["clip"], pixel=sims["pixel"],
                                   pixel_idx=idxs["pixel"], phash=sims["phash"], phash_idx=idxs["phash"],
                                   flagged=flagged))


def summary(rep: dict) -> str:
    """One line for the build log."""
    spaces = ", ".join(f"{s} {rep[s]['threshold']:.4f}{' (saturated)' if rep[s]['saturated'] else ''}"
                       for s in SPACES if rep[s].get("threshold") is not None)
    head = (f"memorization: {rep['flagged']} of {rep['n_samples']} samples flagged ({rep['rate_percent']:.2f} %; "
            f"Somepalli et al.'s SD 1.4 anchor {ANCHOR['rate_percent']} %), {rep['clip_only']} close in CLIP only "
            f"(look-alikes); thresholds at val's p{rep['percentile']:g}: {spaces}")
    return head if rep["can_separate"] else head + "; no unsaturated space: this data cannot separate copies"


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

    found = analyse(samples_u8, train_u8, val_u8, clip_embed=embed, pixel_size=cfg.pixel_size,
                    percentile=cfg.percentile, saturated_above=cfg.saturated_above, hash_size=cfg.hash_size)
    rep, per = found.report, found.per_sample

    out = Path(out_dir)
    (out / "samples").mkdir()
    lines = ["sample\tprompt\tclip_nearest_train\tclip_similarity\tpixel_nearest_train\tpixel_similarity\t"
             "phash_nearest_train\tphash_similarity\tflagged"]
    flagged_list = []
    for j, img in enumerate(samples_u8):
        name = f"samples/{j:04d}.png"
        (out / name).write_bytes(imaging.png_bytes(Image.fromarray(img.numpy())))
        ci, pi, hi = int(per.clip_idx[j]), int(per.pixel_idx[j]), int(per.phash_idx[j])
        c, p, h, f = float(per.clip[j]), float(per.pixel[j]), float(per.phash[j]), bool(per.flagged[j])
        lines.append(f"{name}\t{' '.join(prompts[j].split())}\t{train_ids[ci]}\t{c:.6f}\t{train_ids[pi]}\t{p:.6f}\t"
                     f"{train_ids[hi]}\t{h:.6f}\t{int(f)}")
        if f:
            flagged_list.append({"sample": name, "prompt": prompts[j], "nearest_train": train_ids[ci],
                                 "clip_similarity": round(c, 6), "pixel_similarity": round(p, 6),
                                 "phash_similarity": round(h, 6)})
    (out / "neighbours.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep["flagged_samples"] = sorted(flagged_list, key=lambda r: (-r["clip_similarity"], r["sample"]))
    picks = shown_order(per.clip, per.flagged, cfg.show)
    rep["shown"] = [f"samples/{j:04d}.png" for j in picks]
    return Copies(metrics=rep, pairs=imaging.png_bytes(pairs_image(samples_u8, train_u8, picks, per.clip_idx, res)))
