"""CLIP for stage `clip`: a `transformers.CLIPModel` trained from scratch, contrastively, on the export.

Reads data/export (images at clip.image_size, captions) and models/tokenizer (tokenizer and
the project's image normalisation). The model's sizes come from params alone, so the same
code trains the tiny CPU demo and a real model. Training runs in the shared accelerate
loop (pdd/train/loop.py): mixed precision, gradient accumulation and processes come
from params and the accelerate config. `python -m stages.clip --resume` continues
an interrupted run from its newest checkpoint (models/.checkpoints/clip) and ends with the
same weights as an uninterrupted run.

Writes models/clip/ (config.json, model.safetensors, tokenizer and preprocessor files:
`CLIPModel.from_pretrained` and `CLIPProcessor.from_pretrained` both load it), and
metrics/clip.json and, through the loop's live log, the train loss per step and the val loss and
image->text / text->image recall@1/@5 per evaluation, chance levels beside.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizerFast

from pdd.core.config import as_dict
from pdd.core.determinism import seed_everything
from pdd.core.hashing import hash_json, hash_path
from pdd.core import shards
from pdd.core.errors import PddError
from pdd.train import data, loop

NONDETERMINISM = [
    "clip: bit-identical weights need the same machine type, torch build, thread count "
    "(clip.train.threads) and number of processes; on GPU also the same GPU model, driver and CUDA/cuDNN; "
    "bf16/fp16 mixed precision changes the numbers (but stays deterministic on one machine)",
    "clip: with N processes the global batch (clip.train.batch_size) is split across them and the contrastive "
    "loss gathers the negatives from all of them; results match 1 process only up to float summation order",
]


# ---- data -----------------------------------------------------------------------------
class Split:
    """One split preloaded as tensors: uint8 images [N,R,R,3], token ids and masks [N,L]."""

    def __init__(self, captions: list[str], images: np.ndarray, tokenizer):
        self.captions = captions
        self.images = torch.from_numpy(np.array(images, copy=True))
        if not captions:   # an empty split (a tiny export's val): the tokenizer cannot take an empty batch
            empty = torch.zeros(0, tokenizer.model_max_length, dtype=torch.long)
            self.input_ids, self.attention_mask = empty, empty.clone()
            return
        enc = tokenizer(captions, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                        return_tensors="pt")
        self.input_ids, self.attention_mask = enc["input_ids"], enc["attention_mask"]

    def __len__(self) -> int:
        return len(self.captions)


def load_split(export_dir, split: str, resolution: int, tokenizer) -> Split:
    table = shards.read_split(export_dir, split, columns=["caption", shards.image_column(resolution)])
    return Split(table.column("caption").to_pylist(), shards.images_array(table, resolution), tokenizer)


def load_tokenizer(tokenizer_dir):
    tok_dir = Path(tokenizer_dir)
    if not (tok_dir / "tokenizer_config.json").is_file():
        raise PddError(f"{tok_dir}: no tokenizer; build it first (`dvc repro tokenizer`)")
    # local_files_only explicitly: never a hub, and transformers writes this flag into the saved
    # tokenizer_config.json, so it must not depend on the caller's HF_HUB_OFFLINE setting
    return (CLIPTokenizerFast.from_pretrained(tok_dir, local_files_only=True),
            CLIPImageProcessorPil.from_pretrained(tok_dir, local_files_only=True))


def check_inputs(export_dir, cfg) -> dict:
    """Everything that can be wrong with the inputs, found before any model is built (the cross-field
    checks of the params themselves are in pdd/core/config.py)."""
    index = shards.read_index(export_dir)
    if cfg.image_size not in index["resolutions"]:
        raise PddError(f"{export_dir}: the export has no {cfg.image_size} px images for clip.image_size (it has "
                       f"{index['resolutions']}); rebuild it (`dvc repro export`)")
    n_train = index["counts"].get("train", 0)
    if n_train == 0:
        raise PddError(f"{export_dir}: the export has no train rows; nothing to train CLIP on")
    loop.check_config(cfg.train, n_train, "clip.train")
    captions = shards.read_split(export_dir, "train", columns=["caption"]).column("caption").to_pylist()
    if not any((c or "").strip() for c in captions):
        raise PddError(f"{export_dir}: all {len(captions)} train captions are empty; nothing to train CLIP on")
    return index


# ---- model ----------------------------------------------------------------------------
def build_config(cfg, tokenizer):
    t, v = cfg.text, cfg.vision
    text = dict(vocab_size=len(tokenizer), hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                max_position_embeddings=tokenizer.model_max_length, projection_dim=cfg.projection_dim,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                  num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads,
                  image_size=cfg.image_size, patch_size=v.patch_size, num_channels=3,
                  projection_dim=cfg.projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim,
                      logit_scale_init_value=cfg.logit_scale_init)


def build_model(cfg, tokenizer):
    return CLIPModel(build_config(cfg, tokenizer))


def check_memory(cfg, tokenizer) -> int:
    """Refuse, before anything is allocated, a CLIP too large to train here (loop.check_memory)."""
    return loop.check_memory(lambda: build_model(cfg, tokenizer), cfg.train, "clip",
                             "clip.text / clip.vision hidden_size, intermediate_size or num_layers "
                             "(or tokenizer.vocab_size)")


def normalizer(processor):
    mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def pixels(images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B,R,R,3] -> normalised float [B,3,R,R], as CLIPImageProcessor does it (rescale, normalise)."""
        x = images_u8.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        return (x - mean) / std
    return pixels


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    labels = torch.arange(len(logits_per_text), device=logits_per_text.device)
    return (torch.nn.functional.cross_entropy(logits_per_text, labels)
            + torch.nn.functional.cross_entropy(logits_per_text.t(), labels)) / 2


def global_contrastive_loss(m, batch, accelerator=None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE with the *global* batch as negatives: with several processes each one
    gathers every process's embeddings (with their gradients, as OpenCLIP's gather_with_grad) and scores
    its own rows against all of them; the data-parallel gradient average then equals the 1-process loss."""
    if accelerator is None or accelerator.num_processes == 1:
        return m(**batch, return_loss=True).loss
    # here, not at the top: torch.distributed.nn does not import on torch builds without distributed
    # support (torch.distributed.is_available() False), and only several processes need it
    from torch.distributed.nn.functional import all_gather

    out = m(**batch)
    ie, te = out.image_embeds, out.text_embeds
    all_ie, all_te = torch.cat(all_gather(ie.contiguous())), torch.cat(all_gather(te.contiguous()))
    scale = accelerator.unwrap_model(m).logit_scale.exp()
    labels = torch.arange(len(ie), device=ie.device) + accelerator.process_index * len(ie)
    return (torch.nn.functional.cross_entropy(scale * te @ all_ie.t(), labels)
            + torch.nn.functional.cross_entropy(scale * ie @ all_te.t(), labels)) / 2


# ---- evaluation -------------------------------------------------------------------------
def chance_recall(captions: list[str], k: int) -> float:
    """Expected recall@k of a random ranking, counting any item with the same caption as a hit."""
    n = len(captions)
    counts: dict[str, int] = {}
    for c in captions:
        counts[c] = counts.get(c, 0) + 1
    k = min(k, n)
    return sum(1.0 - math.comb(n - counts[c], k) / math.comb(n, k) for c in captions) / n


def recall_at(sim: torch.Tensor, same: torch.Tensor, k: int) -> float:
    """sim [Q,N] query x candidate; same [Q,N] bool: candidate counts as correct for the query."""
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices
    return same.gather(1, top).any(dim=1).float().mean().item()


def evaluate(model, split: Split, pixels, batch_size: int) -> dict:
    device = next(model.parameters()).device
    img, txt, losses = [], [], []
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        ie = model.get_image_features(pixel_values=pixels(split.images[sl]).to(device))
        te = model.get_text_features(input_ids=split.input_ids[sl].to(device),
                                     attention_mask=split.attention_mask[sl].to(device))
        ie = _features(ie)
        te = _features(te)
        ie, te = ie / ie.norm(dim=-1, keepdim=True), te / te.norm(dim=-1, keepdim=True)
        img.append(ie.float())
        txt.append(te.float())
        if len(ie) > 1:
            losses.append(contrastive_loss(model.logit_scale.exp().float() * te.float() @ ie.float().t()).item())
    img, txt = torch.cat(img), torch.cat(txt)
    sim = img @ txt.t()                                    # [images, texts]
    caps = split.captions
    same = torch.tensor([[a == b for b in caps] for a in caps], device=sim.device)
    out = {"val_loss": sum(losses) / len(losses) if losses else float("nan")}
    for k in (1, 5):
        out[f"i2t_r{k}"] = recall_at(sim, same, k)
        out[f"t2i_r{k}"] = recall_at(sim.t(), same, k)
        out[f"chance_r{k}"] = round(chance_recall(caps, k), 6)
    return out


def _features(out):
    # transformers 5 may return a model output instead of a tensor from get_*_features
    return out if isinstance(out, torch.Tensor) else out.pooler_output


# ---- training ----------------------------------------------------------------------------
def train_source(export_dir, cfg, tokenizer, pixels, **force):
    """The train split as a loop data source (preloaded or streamed by clip.train.memory_budget_mb)."""
    col = shards.image_column(cfg.image_size)

    def prepare(table):
        enc = tokenizer(table.column("caption").to_pylist(), padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt")
        images = torch.from_numpy(np.array(shards.images_array(table, cfg.image_size), copy=True))
        return {"images": images, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def transform(batch):
        return {"pixel_values": pixels(batch["images"]), "input_ids": batch["input_ids"],
                "attention_mask": batch["attention_mask"]}

    return data.open_split(export_dir, "train", ["caption", col], prepare, budget_mb=cfg.train.memory_budget_mb,
                           transform=transform, batch_size=cfg.train.batch_size, **force)


def train_clip(export_dir, tokenizer_dir, out_dir, cfg, seed: int, *, ckpt_dir, resume: bool = False,
               progress: bool = True, live_dir=None, name: str = "clip", **force) -> loop.Trained:
    """Train and save CLIP into out_dir (model + processor); returns the final metrics, no plots (the histories
    are in the live log, live_dir), the loop's Result and the model. `name` names the run's seeds and progress
    bar (the quality judge is a second CLIP, trained by the same code under its own name)."""
    check_inputs(export_dir, cfg)
    tokenizer, processor = load_tokenizer(tokenizer_dir)
    check_memory(cfg, tokenizer)
    torch.set_num_threads(cfg.train.threads)
    seed_everything(seed)
    val = load_split(export_dir, "val", cfg.image_size, tokenizer)
    pixels = normalizer(processor)
    source = train_source(export_dir, cfg, tokenizer, pixels, **force)
    model = build_model(cfg, tokenizer)

    def loss(m, batch, rt):
        return global_contrastive_loss(m, batch, rt.accelerator)

    task = loop.Task(name, model, source, loss,
                     evaluate=(lambda m, rt: evaluate(m, val, pixels, cfg.train.batch_size)) if len(val) > 1 else None)
    fingerprint = hash_json({"cfg": as_dict(cfg), "seed": seed, "export": hash_path(export_dir),
                             "tokenizer": hash_path(tokenizer_dir)})
    result = loop.train(task, cfg.train, seed, ckpt_dir, resume=resume, fingerprint=fingerprint, progress=progress,
                         live_dir=live_dir)

    model = result.model.to("cpu")
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.size = {"shortest_edge": cfg.image_size}
    processor.crop_size = {"height": cfg.image_size, "width": cfg.image_size}
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return loop.trained(result, model, {"steps": result.steps, "train_loss": result.train_history[-1][1],
                                        "train_rows": source.n, "val_rows": len(val),
                                        "parameters": sum(p.numel() for p in model.parameters())})
