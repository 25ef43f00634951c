"""What stage `quality` computes: the yardstick (measures in pdd/train/quality.py), every figure beside the
same measurement on real held-out images and a chance value.

Samples: quality.n_samples images from the built pipeline (sample.steps, guidance, scheduler), prompted
with val captions (a seeded permutation of the val split, cycled), image j drawn from its own generator
seeded from (seed, 'quality', j). The judge (models/judge) grades them; it was trained on the train split
only and never saw a val image, a sample or the U-Net's text encoder.

metrics/quality.json: for each measure {"model", "real", "chance"} (KID also its standard errors), the
palette (hue shares) of samples and val, and the counts. metrics/quality_grid.png: quality.grid_prompts val
images (left column), each beside quality.grid_samples samples of its caption.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from diffusers.utils import logging as dlogging
from transformers.utils import logging as tlogging

from pdd.core import shards
from pdd.core.determinism import derive_seed
from pdd.core.errors import PddError
from pdd.train import imaging, pipeline, quality
from pdd.train.judge import Judge, category_of


# the first prompts are also sampled without guidance (guidance 1), for the CLIP score and R-precision: guidance
# pushes samples past real images on them, and the unguided figures show by how much
UNGUIDED_SAMPLES = 200


def _r(x):
    return None if x is None else round(float(x), 6)


def load_split(export_dir, split: str, resolution: int) -> tuple[list[str], list[str], torch.Tensor]:
    """file ids, captions and uint8 images [N,R,R,3] of one export split."""
    t = shards.read_split(export_dir, split, columns=["file_id", "caption", shards.image_column(resolution)])
    images = torch.from_numpy(np.array(shards.images_array(t, resolution), copy=True))
    return t.column("file_id").to_pylist(), t.column("caption").to_pylist(), images


def check(cfg, n_val: int, n_val_captions: int, where) -> None:
    """One line for a val split too small for the chosen n_samples."""
    if n_val < 2 or n_val_captions < 2:
        raise PddError(f"{where}: the val split has {n_val} images ({n_val_captions} distinct captions); the quality "
                       f"stage needs at least 2 of each: use a larger snapshot or raise export.val_fraction")
    if cfg.n_samples > cfg.max_per_val * n_val:
        raise PddError(f"{where}: quality.n_samples={cfg.n_samples} is more than quality.max_per_val={cfg.max_per_val} "
                       f"samples per val image ({n_val} val images): lower quality.n_samples to at most "
                       f"{cfg.max_per_val * n_val}, or use a larger val split")
    if cfg.n_samples <= cfg.pr_k:
        raise PddError(f"{where}: quality.n_samples={cfg.n_samples} must be more than quality.pr_k={cfg.pr_k}")
    if n_val < 2 * (cfg.pr_k + 1):
        raise PddError(f"{where}: the val split has {n_val} images; the distribution measures cut it in two halves of "
                       f"more than quality.pr_k={cfg.pr_k} images each, so it needs at least {2 * (cfg.pr_k + 1)}: use a "
                       f"larger snapshot or raise export.val_fraction")


def prompt_order(n_val: int, n: int, seed: int) -> list[int]:
    """Val indices for n samples: a seeded permutation of the val split, cycled."""
    perm = torch.randperm(n_val, generator=torch.Generator().manual_seed(derive_seed(seed, "quality", "prompts"))).tolist()
    return [perm[j % n_val] for j in range(n)]


def grid_rows(val_ids: list[str], n_rows: int, seed: int) -> list[int]:
    """Val indices for the grid: one image of each of the most frequent categories (seeded pick), then more."""
    perm = torch.randperm(len(val_ids), generator=torch.Generator().manual_seed(derive_seed(seed, "quality", "grid"))).tolist()
    seen, first, rest = set(), [], []
    for i in perm:
        c = category_of(val_ids[i])
        (rest if c in seen else first).append(i)
        seen.add(c)
    return (first + rest)[:n_rows]


def prototypes(train_u8: torch.Tensor, train_labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The trivial generator that knows the category and nothing else: per class, the pixel mean of its train
    images (uint8 [C,R,R,3]; a blurred blob in the category's colours)."""
    x = train_u8.double()
    out = torch.full((n_classes, *train_u8.shape[1:]), 255.0, dtype=torch.float64)
    for c in range(n_classes):
        rows = train_labels == c
        if bool(rows.any()):
            out[c] = x[rows].mean(dim=0)
    return out.round().clamp(0, 255).to(torch.uint8)


def measure(samples, prompt_ids, val_ids, val_caps, val_u8, train_ids, train_u8, judge: Judge, cfg, seed: int,
            unguided=None) -> dict:
    """Every figure for samples (uint8 [n,R,R,3], prompted with val_caps[prompt_ids[j]]), for real images, for
    chance, and for the category prototype (the mean train image of the prompt's category).

    Distribution measures (KID, precision / recall, colour, SWD) are paired and held out: the val split is cut
    in two by the prompt order. The first m = min(n, val / 2) samples were prompted with the captions of half
    A; they and the m real images of half A (the same captions) are each set against half B, the other val
    images, which neither was drawn from. Against val itself, samples of val's own captions would start with an
    advantage (their layouts follow those very images); against the train split, samples would (the curate
    stage drops val images that look like train images, so val is less train-like than train itself). Half
    against half is like against like. Prompt adherence (R-precision, CLIP score, category) uses all n samples
    against the val captions."""
    n = len(samples)
    m = min(n, len(val_u8) // 2)
    order = prompt_order(len(val_u8), len(val_u8), seed)     # the first n_val prompts: val, each caption once
    half_a, half_b = torch.tensor(order[:m]), torch.tensor(order[m:])
    ref = val_u8[half_b]
    real = val_u8[half_a]
    noise = quality.noise_like(val_u8, m, derive_seed(seed, "quality", "noise"))
    lab_v, lab_t = judge.labels(val_ids), judge.labels(train_ids)
    lab_s = lab_v[torch.tensor(prompt_ids)]
    proto_all = prototypes(train_u8, lab_t, max(len(judge.classes), 1))[lab_s]
    f_s, f_v, f_p = (judge.images(x) for x in (samples, val_u8, proto_all))
    f_ref, f_n = f_v[half_b], judge.images(noise)
    t_v = judge.texts(val_caps)
    k_seed = derive_seed(seed, "quality", "kid")
    # the paired sets of the distribution measures: m images each, the captions of half A
    dist_images = {"model": samples[:m], "real": real, "chance": noise, "prototype": proto_all[:m]}
    dist_feats = {"model": f_s[:m], "real": f_v[half_a], "chance": f_n, "prototype": f_p[:m]}
    # subsets of at most half a set, so that they differ and the standard error means something
    k_size = min(cfg.kid_subset_size, max(2, m // 2), max(2, len(half_b) // 2))
    kids = {name: quality.kid(f, f_ref, k_seed, cfg.kid_subsets, k_size) for name, f in dist_feats.items()}
    pr = {name: quality.precision_recall(f_ref, f, cfg.pr_k) for name, f in dist_feats.items()}
    # prompt adherence: samples vs their prompts; val images vs their own captions; shuffled pairs
    k = min(cfg.distractors, len(set(val_caps)) - 1)
    d_seed = derive_seed(seed, "quality", "distractors")
    own = list(range(len(val_caps)))
    groups = lab_v.tolist()
    f_u = judge.images(unguided) if unguided is not None and len(unguided) else None
    if f_u is not None:
        # guidance pushes samples towards their own caption (and its category): the prompt measures are also taken
        # for the same model unguided on the first u prompts, beside the val images of those same prompts
        u = len(f_u)
        first = prompt_ids[:u]
        f_first = f_v[torch.tensor(first)]
    rp = {}
    for key, grp in (("r_precision", None), ("r_precision_same_category", groups)):
        o_s = quality.distractors(prompt_ids, val_caps, d_seed, k, grp)
        o_v = quality.distractors(own, val_caps, d_seed, k, grp)
        model, real_rp = quality.r_precision(f_s, t_v, prompt_ids, o_s), quality.r_precision(f_v, t_v, own, o_v)
        rp[key] = {"model": _r(model), "real": _r(real_rp), "chance": _r(1 / (k + 1)),
                   "prototype": _r(quality.r_precision(f_p, t_v, prompt_ids, o_s)), "candidates": k + 1,
                   "model_se": _r(_binomial_se(model, n)), "real_se": _r(_binomial_se(real_rp, len(own)))}
        if f_u is not None:     # with the same distractors
            rp[key].update({"model_unguided": _r(quality.r_precision(f_u, t_v, first, o_s[:u])),
                            "real_same_prompts": _r(quality.r_precision(f_first, t_v, first, o_s[:u])),
                            "unguided_n": u})
    shuffled = torch.randperm(len(val_caps), generator=torch.Generator().manual_seed(derive_seed(seed, "quality", "shuffle")))
    t_prompt = t_v[torch.tensor(prompt_ids)]
    out = {
        "n_samples": n, "n_val": len(val_u8), "n_paired": m, "n_reference": len(half_b), "kid_subset_size": k_size,
        **rp,
        "clip_score": {"model": _r(quality.clip_score(f_s, t_prompt)), "real": _r(quality.clip_score(f_v, t_v)),
                       "chance": _r(quality.clip_score(f_v, t_v[shuffled])),
                       "prototype": _r(quality.clip_score(f_p, t_prompt)),
                       **({"model_unguided": _r(quality.clip_score(f_u, t_prompt[:u])),
                           "real_same_prompts": _r(quality.clip_score(f_first, t_prompt[:u])),
                           "unguided_n": u} if f_u is not None else {})},
        "precision": {name: _r(v[0]) for name, v in pr.items()},
        "recall": {name: _r(v[1]) for name, v in pr.items()},
        "kid": {**{name: _r(v[0]) for name, v in kids.items()}, **{f"{name}_se": _r(v[1]) for name, v in kids.items()}},
        "colour": {name: _r(quality.colour_distance(x, ref)) for name, x in dist_images.items()},
        "swd": {name: _r(quality.swd(x, ref, seed)) for name, x in dist_images.items()},
        "palette": {"model": quality.hue_shares(samples), "val": quality.hue_shares(val_u8)},
    }
    if judge.probe is not None:
        acc_s, acc_v = quality.accuracy(judge.probe, f_s, lab_s), quality.accuracy(judge.probe, f_v, lab_v)
        out["category_accuracy"] = {"model": _r(acc_s), "real": _r(acc_v),
                                    "chance": _r(quality.majority_rate(lab_t, lab_v, len(judge.classes))),
                                    "prototype": _r(quality.accuracy(judge.probe, f_p, lab_s)),
                                    "classes": len(judge.classes),
                                    "model_se": _r(_binomial_se(acc_s, n)), "real_se": _r(_binomial_se(acc_v, len(lab_v)))}
        if f_u is not None:
            out["category_accuracy"].update({"model_unguided": _r(quality.accuracy(judge.probe, f_u, lab_s[:u])),
                                             "real_same_prompts": _r(quality.accuracy(judge.probe, f_first, lab_s[:u])),
                                             "unguided_n": u})
    else:
        out["category_accuracy"] = {"model": None, "real": None, "chance": None, "prototype": None,
                                    "classes": len(judge.classes),
                                    "why": "fewer than 2 categories in the train split: nothing to tell apart"}
    return out


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def evaluate(deps: dict, cfg, sample_cfg, seed: int, progress=print) -> tuple[dict, bytes, dict]:
    """The quality stage: (metrics, grid PNG, timings in seconds)."""
    timings = {}
    t0 = time.perf_counter()
    dlogging.set_verbosity_error()   # the pipeline warns once per batch about long captions (the judge truncates too)
    tlogging.set_verbosity_error()
    judge = Judge(deps["judge"])
    pipe = pipeline.build_pipe(deps, sample_cfg.scheduler)
    res = judge.model.config.vision_config.image_size
    index = shards.read_index(deps["export"])
    if res not in index["resolutions"]:
        raise PddError(f"{deps['export']}: no {res} px images for the judge (the export has {index['resolutions']}); "
                       f"rebuild the judge or the export")
    val_ids, val_caps, val_u8 = load_split(deps["export"], "val", res)
    check(cfg, len(val_ids), len(set(val_caps)), deps["export"])
    train_ids, _, train_u8 = load_split(deps["export"], "train", res)
    prompt_ids = prompt_order(len(val_ids), cfg.n_samples, seed)
    prompts = [val_caps[i] for i in prompt_ids]
    if not pipeline.is_conditional(pipe):
        progress("quality: the pipeline is unconditional; prompt adherence figures describe unprompted samples")
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = pipeline.generate_batched(pipe, prompts, seed=seed, tag="quality", steps=sample_cfg.steps,
                                        guidance_scale=sample_cfg.guidance_scale, batch=cfg.batch_size)
    timings["sampling"] = time.perf_counter() - t0
    samples = _to_res(samples, res)
    unguided = None
    if pipeline.is_conditional(pipe):
        m = min(UNGUIDED_SAMPLES, len(prompts))
        unguided = _to_res(pipeline.generate_batched(pipe, prompts[:m], seed=seed, tag="quality", steps=sample_cfg.steps,
                                                     guidance_scale=1.0, batch=cfg.batch_size), res)
    t0 = time.perf_counter()
    metrics = measure(samples, prompt_ids, val_ids, val_caps, val_u8, train_ids, train_u8, judge, cfg, seed, unguided)
    timings["measures"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = grid_rows(val_ids, cfg.grid_prompts, seed)
    grid_prompts = [val_caps[i] for i in rows for _ in range(cfg.grid_samples)]
    grid_samples = _to_res(pipeline.generate_batched(pipe, grid_prompts, seed=seed, tag="quality-grid",
                                                     steps=sample_cfg.steps, guidance_scale=sample_cfg.guidance_scale,
                                                     batch=cfg.batch_size), res)
    lines = [torch.cat([val_u8[i:i + 1], grid_samples[r * cfg.grid_samples:(r + 1) * cfg.grid_samples]])
             for r, i in enumerate(rows)]
    grid = imaging.png_bytes(imaging.grid(lines, scale=2))
    metrics["grid"] = [{"file_id": val_ids[i], "caption": val_caps[i]} for i in rows]
    timings["grid"] = time.perf_counter() - t0
    return metrics, grid, timings


def _to_res(images_u8: torch.Tensor, res: int) -> torch.Tensor:
    """Samples at the judge's resolution (the pipeline's output is the VAE's; they match in the default build)."""
    if images_u8.shape[1] == res:
        return images_u8
    x = torch.nn.functional.interpolate(images_u8.permute(0, 3, 1, 2).float(), size=(res, res), mode="bicubic",
                                        antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
