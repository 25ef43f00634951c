"""The compiled output: a stock diffusers pipeline assembled from the trained parts, and sampling with it.

`latent-conditional` -> StableDiffusionPipeline(tokenizer, our CLIP's text tower, our VAE with the data's
scaling factor, our U-Net, a DPM-Solver++ scheduler configured from the training schedule), with
safety_checker=None and requires_safety_checker=False: there is no pretrained safety model we could ship.
`pixel-unconditional` -> DDPMPipeline(U-Net, scheduler).

Sampling: one torch.Generator per image, seeded from (seed, 'sample', prompt index, image index), so adding
a prompt changes no other image; batched sampling (`generate_batched`) seeds image j from (seed, tag, j).

What the sample, memorization and pipeline stages and the CLI's inference command share lives here: the
pipeline from the stage outputs (`build_pipe`) or from its folder (`load_folder`), the prompts
(`train_prompts`, `val_prompts`, `prompt_warning`), our CLIP for scoring images (`load_clip`), and the sample
stage's files (`write_samples`); the quality stage samples with `generate_batched` (pdd/train/yardstick.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMPipeline, DDPMScheduler, DiffusionPipeline,
                       DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel, UNet2DModel)
from diffusers.utils import logging as dlogging
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizerFast
from transformers.utils import logging as tlogging

from pdd.core import shards
from pdd.core.determinism import derive_seed, use_attention
from pdd.core.errors import PddError
from pdd.train import imaging
from pdd.train.latents import text_encoder_from_clip

SCHEDULERS = ("dpm++", "ddim", "ddpm")


def _scheduler(train_scheduler_dir, kind: str):
    cfg = DDPMScheduler.load_config(train_scheduler_dir)
    # trailing spacing ignores steps_offset; 1 is what StableDiffusionPipeline expects (else it warns)
    cfg = {**cfg, "steps_offset": 1}
    if kind == "dpm++":
        zero = bool(cfg.get("rescale_betas_zero_snr"))
        return DPMSolverMultistepScheduler.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                                       final_sigmas_type="zero" if zero else "sigma_min")
    if kind == "ddim":
        return DDIMScheduler.from_config(cfg)
    return DDPMScheduler.from_config(cfg)


def assemble(mode: str, *, unet_dir, scheduler: str = "dpm++", latents_dir=None, clip_dir=None, tokenizer_dir=None):
    """The pipeline object, from the stage outputs (nothing downloaded, no project classes inside)."""
    unet_dir = Path(unet_dir)
    sched = _scheduler(unet_dir / "scheduler", scheduler)
    if mode == "pixel-unconditional":
        return DDPMPipeline(unet=use_attention(UNet2DModel.from_pretrained(unet_dir / "unet")), scheduler=sched)
    return StableDiffusionPipeline(
        vae=use_attention(AutoencoderKL.from_pretrained(Path(latents_dir) / "vae")),
        text_encoder=text_encoder_from_clip(clip_dir),
        tokenizer=CLIPTokenizerFast.from_pretrained(tokenizer_dir, local_files_only=True),
        unet=use_attention(UNet2DConditionModel.from_pretrained(unet_dir / "unet")), scheduler=sched,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)


def mode_of(unet_dir) -> str:
    """The mode a unet stage output was trained in, from its saved U-Net class."""
    cls = json.loads((Path(unet_dir) / "unet" / "config.json").read_text())["_class_name"]
    return "latent-conditional" if cls == "UNet2DConditionModel" else "pixel-unconditional"


def build_pipe(deps, scheduler: str):
    """The pipeline from a stage's inputs `deps` (name -> folder: unet, latents, clip, tokenizer)."""
    return assemble(mode_of(deps["unet"]), unet_dir=deps["unet"], scheduler=scheduler, latents_dir=deps["latents"],
                    clip_dir=deps["clip"], tokenizer_dir=deps["tokenizer"])


def is_conditional(pipe) -> bool:
    """Text-conditional (it has a tokenizer), else unconditional."""
    return hasattr(pipe, "tokenizer")


def check_folder(path) -> dict:
    """A pipeline folder's model_index.json, after checking every component it names is there."""
    path = Path(path)
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise PddError(f"{path}: not a diffusers pipeline folder (no model_index.json); build it with `dvc repro pipeline`")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except ValueError:
        raise PddError(f"{index_file}: not valid JSON; rebuild the pipeline (`dvc repro pipeline`)") from None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec == [None, None]:
            continue
        if not (path / name).is_dir() or not any((path / name).iterdir()):
            raise PddError(f"{path}: the component {name!r} ({spec[1]}) is missing; rebuild the pipeline (`dvc repro pipeline`)")
    return index


def generate(pipe, prompts: list[str] | None, *, seed: int, steps: int, guidance_scale: float, per_prompt: int = 1,
             progress: bool = False):
    """[(prompt index, image index, prompt, PIL image)], each from its own generator."""
    if guidance_scale < 1:
        raise PddError(f"guidance scale {guidance_scale} is below 1; use 1 (no guidance) or more")
    pipe.set_progress_bar_config(disable=not progress)
    out = []
    conditional = is_conditional(pipe)
    for i, prompt in enumerate(prompts if conditional else [None] * len(prompts or [None])):
        for k in range(per_prompt):
            g = torch.Generator().manual_seed(derive_seed(seed, "sample", str(i), str(k)))
            if conditional:
                image = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance_scale, generator=g).images[0]
            else:
                image = pipe(batch_size=1, generator=g, num_inference_steps=steps).images[0]
            out.append((i, k, prompt, image))
    return out


def generate_batched(pipe, prompts: list[str], *, seed: int, tag: str, steps: int, guidance_scale: float,
                     batch: int = 16) -> torch.Tensor:
    """uint8 [N, H, W, 3] images, one per prompt (ignored by unconditional pipelines), in batches; image j
    draws from its own generator seeded from (seed, tag, j), so N and the batch size change no image."""
    conditional = is_conditional(pipe)
    out = []
    for s in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(derive_seed(seed, tag, str(j))) for j in range(s, min(len(prompts), s + batch))]
        if conditional:
            imgs = pipe(prompts[s:s + len(gens)], num_inference_steps=steps, guidance_scale=guidance_scale,
                        generator=gens).images
        else:
            imgs = pipe(batch_size=len(gens), generator=gens, num_inference_steps=steps).images
        out += [torch.from_numpy(np.asarray(im.convert("RGB")).copy()) for im in imgs]
    return torch.stack(out)


def write_samples(shown, out_dir, cfg) -> bytes:
    """The sample stage's folder from generate()'s images: one PNG per prompt and image and prompts.json
    (cfg: the sample config); returns the grid PNG (one column per prompt, one row per image index)."""
    out_dir = Path(out_dir)
    listing = []
    for i, k, prompt, image in shown:
        name = f"{i:02d}-{k}.png"
        (out_dir / name).write_bytes(imaging.png_bytes(image))
        listing.append({"file": name, "prompt": prompt, "prompt_index": i, "image_index": k})
    (out_dir / "prompts.json").write_text(json.dumps({"steps": cfg.steps, "guidance_scale": cfg.guidance_scale,
                                                      "scheduler": cfg.scheduler, "images": listing}, indent=2) + "\n")
    u8 = {(i, k): torch.from_numpy(np.asarray(img.convert("RGB"))) for i, k, _, img in shown}
    rows = [torch.stack([u8[(i, k)] for i in range(len(cfg.prompts))]) for k in range(cfg.images_per_prompt)]
    return imaging.png_bytes(imaging.grid(rows, scale=2))


def train_prompts(export_dir, n: int) -> list[str]:
    """n training captions spread evenly over the train split (cycled when there are fewer than n)."""
    caps = shards.read_split(export_dir, "train", columns=["caption"]).column("caption").to_pylist()
    return [caps[(j * len(caps)) // n] if n <= len(caps) else caps[j % len(caps)] for j in range(n)]


def val_prompts(latents_dir, n: int) -> list[str]:
    """n val captions (cycled), as the latents stage cached them."""
    caps = pq.read_table(Path(latents_dir) / "val-00000.parquet", columns=["caption"]).column("caption").to_pylist()
    return [caps[j % len(caps)] for j in range(n)]


def load_clip(clip_dir):
    """Our CLIP (in eval mode) and its processor, from a clip stage output, for scoring images."""
    return (CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval(),
            CLIPProcessor.from_pretrained(clip_dir, local_files_only=True))


def load_folder(path):
    """A pipeline folder loaded with stock diffusers (one-line errors for a missing or broken folder)."""
    check_folder(path)
    dlogging.set_verbosity_error()   # our own warnings below say what matters, once
    tlogging.set_verbosity_error()
    try:
        return DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PddError(f"{path}: diffusers could not load the pipeline ({first}); rebuild it (`dvc repro pipeline`)") from None


def prompt_warning(pipe, prompt: str) -> str | None:
    """One warning line when the prompt is longer than the text encoder reads (the rest is ignored)."""
    tok = getattr(pipe, "tokenizer", None)
    if tok is None or prompt is None:
        return None
    n = len(tok(prompt, truncation=False).input_ids)
    if n > tok.model_max_length:
        kept = tok.decode(tok(prompt, truncation=True, max_length=tok.model_max_length).input_ids, skip_special_tokens=True)
        return (f"prompt is {n} tokens, the model reads only the first {tok.model_max_length} (tokenizer max_length); "
                f"it was truncated to: {kept!r}")
    return None
