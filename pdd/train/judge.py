"""The judge for stage `judge`: an independent CLIP and a category probe, trained from scratch on the train
split only, that the quality stage (pdd/train/yardstick.py) grades samples with.

Why a second CLIP: the U-Net is trained to please our conditioning CLIP's text encoder, so grading it with
the same CLIP is a conflict of interest. The judge is trained by the same code (pdd/train/clip.py) under its
own name (its own named generators), from a seed derived from the params seed and "judge", with its own
architecture (params.yaml `judge`), and it never sees a val image or a sample.

The probe is a multinomial logistic regression on the judge's image features that tells the top-level
category of an image (the first folder of its file id: animals, computer, flags' signs_and_symbols, food,
...). Categories with fewer than judge.probe.min_rows train rows are pooled as "other". It is what the
category accuracy (Classification Accuracy Score in spirit) is measured with.

Writes models/judge/: the CLIP (config.json, model.safetensors, tokenizer and preprocessor files:
`CLIPModel.from_pretrained` and `CLIPProcessor.from_pretrained` load it), probe.safetensors and probe.json
(class names, feature width).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel, CLIPProcessor

from pdd.core import shards
from pdd.core.determinism import derive_seed
from pdd.core.errors import PddError
from pdd.train import clip, quality
from pdd.train.vae import load_images

OTHER = "other"
NONDETERMINISM = [n.replace("clip:", "judge:").replace("clip.train", "judge.train") for n in clip.NONDETERMINISM]


def category_of(file_id: str) -> str | None:
    """The top-level folder of a file id ('openclipart:animals/birds/x' -> 'animals'); None without a folder."""
    path = file_id.split(":", 1)[-1]
    return path.split("/", 1)[0] if "/" in path else None


def class_names(train_ids: list[str], min_rows: int) -> list[str]:
    """Sorted categories with at least min_rows train rows, then OTHER for the rest (if any)."""
    counts = Counter(category_of(f) for f in train_ids)
    names = sorted(c for c, n in counts.items() if c is not None and n >= min_rows)
    rest = sum(n for c, n in counts.items() if c not in names)
    return names + ([OTHER] if rest else [])


def labels_of(file_ids: list[str], names: list[str]) -> torch.Tensor:
    index = {n: i for i, n in enumerate(names)}
    other = index.get(OTHER, -1)
    return torch.tensor([index.get(category_of(f), other) for f in file_ids], dtype=torch.long)


def check_inputs(export_dir, cfg) -> None:
    clip.check_inputs(export_dir, cfg)


def train_judge(export_dir, tokenizer_dir, out_dir, cfg, seed: int, *, ckpt_dir, resume: bool = False,
                progress: bool = True, live_dir=None):
    """Train the judge CLIP and its category probe into out_dir; returns the CLIP's loop.Trained with the
    probe's figures added to its metrics."""
    judge_seed = derive_seed(seed, "judge")
    t = clip.train_clip(export_dir, tokenizer_dir, out_dir, cfg, judge_seed, ckpt_dir=ckpt_dir, resume=resume,
                        progress=progress, live_dir=live_dir, name="judge")
    model = t.model.eval()
    processor = CLIPProcessor.from_pretrained(out_dir, local_files_only=True)
    ids = {s: shards.read_split(export_dir, s, columns=["file_id"]).column("file_id").to_pylist() for s in shards.SPLITS}
    names = class_names(ids["train"], cfg.probe.min_rows)
    out_dir = Path(out_dir)
    meta = {"classes": names, "category": "first folder of the file id"}
    if len(names) < 2:   # one category (or none): nothing to tell apart; the quality stage reports n/a
        (out_dir / "probe.json").write_text(json.dumps({**meta, "probe": False, "why": (
            f"fewer than 2 categories with judge.probe.min_rows={cfg.probe.min_rows} train rows")}, indent=2) + "\n")
        t.metrics.update({"probe_classes": len(names)})
        return t
    feats = {s: quality.image_features(model, processor, load_images(export_dir, s, cfg.image_size)) for s in shards.SPLITS}
    labels = {s: labels_of(ids[s], names) for s in shards.SPLITS}
    probe = quality.train_probe(feats["train"], labels["train"], len(names), derive_seed(seed, "judge", "probe"),
                                steps=cfg.probe.steps, lr=cfg.probe.lr)
    save_file({"weight": probe.weight.detach().contiguous(), "bias": probe.bias.detach().contiguous()},
              out_dir / "probe.safetensors")
    (out_dir / "probe.json").write_text(json.dumps({**meta, "probe": True, "features": int(feats["train"].shape[1])},
                                                   indent=2) + "\n")
    t.metrics.update({"probe_classes": len(names),
                      "probe_train_accuracy": round(quality.accuracy(probe, feats["train"], labels["train"]), 6),
                      "probe_val_accuracy": round(quality.accuracy(probe, feats["val"], labels["val"]), 6),
                      "probe_val_majority": round(quality.majority_rate(labels["train"], labels["val"], len(names)), 6)})
    return t


class Judge:
    """A built judge: CLIP, its processor and tokenizer, and the category probe."""

    def __init__(self, judge_dir):
        d = Path(judge_dir)
        if not (d / "config.json").is_file() or not (d / "probe.json").is_file():
            raise PddError(f"{d}: no judge there; build it first (`dvc repro judge`)")
        self.model = CLIPModel.from_pretrained(d, local_files_only=True).eval()
        self.processor = CLIPProcessor.from_pretrained(d, local_files_only=True)
        meta = json.loads((d / "probe.json").read_text(encoding="utf-8"))
        self.classes: list[str] = meta["classes"]
        self.probe = None                     # one category: no probe, no category accuracy
        if meta.get("probe", True):
            w = load_file(d / "probe.safetensors")
            self.probe = torch.nn.Linear(w["weight"].shape[1], w["weight"].shape[0])
            self.probe.load_state_dict(w)
            self.probe.eval()

    def images(self, images_u8: torch.Tensor) -> torch.Tensor:
        return quality.image_features(self.model, self.processor, images_u8)

    def texts(self, texts: list[str]) -> torch.Tensor:
        return quality.text_features(self.model, self.processor.tokenizer, texts)

    def labels(self, file_ids: list[str]) -> torch.Tensor:
        return labels_of(file_ids, self.classes)
