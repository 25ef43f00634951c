"""Typed configs: one frozen dataclass per params.yaml section, and the one declaration of every key.

Each field is declared once, with `knob(...)`: its type (the annotation), the value committed in
params.yaml (`default`), its bounds or choices (JSON-schema words in snake_case), a one-line help and,
for the few keys that may be left out, the value it has when absent. From these declarations come
the JSON schema workflow/schemas/params.schema.yaml (what `pdd` and the Snakefile validate against)
and the reference table docs/params.md: `python -m pdd.core.config --write` regenerates both,
`--check` (and tests/test_param_declarations.py) fails when they, or params.yaml's values, drift.

The rules that span fields or sections are all here too (`check`), run before any stage touches its
inputs. Tests and benches write `replace(cfg, steps=20)`.

Bookkeeping, not a build input: nothing here can change an artifact's bytes (see pdd/build/codedeps.py).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import sys
import types
import typing
from dataclasses import MISSING, dataclass, replace  # noqa: F401  (replace re-exported: config.replace)
from pathlib import Path

import yaml

from pdd.core import params as params_mod
from pdd.core.errors import PddError

_WORDS = {"minimum": "minimum", "maximum": "maximum", "exclusive_minimum": "exclusiveMinimum",
          "exclusive_maximum": "exclusiveMaximum", "enum": "enum", "pattern": "pattern", "min_length": "minLength",
          "max_length": "maxLength", "min_items": "minItems", "max_items": "maxItems", "unique": "uniqueItems"}


def knob(default=MISSING, help: str = "", *, absent=MISSING, items: dict | None = None, **bounds):
    """Declare one params.yaml key. default: the value committed in params.yaml, as plain YAML data (a
    dict of overrides for a nested section; none when a parent section gives it); absent: only for an
    optional key, its value when left out; items: the bounds of a list's items; bounds: minimum,
    maximum, exclusive_minimum, exclusive_maximum, enum, pattern, min_length, max_length, min_items,
    max_items, unique."""
    for where in (bounds, items or {}):
        unknown = sorted(set(where) - set(_WORDS))
        if unknown:
            raise TypeError(f"knob: unknown bound {unknown[0]!r} (known: {', '.join(_WORDS)})")
    meta = {"default": default, "help": help, "bounds": bounds, "items": items or {}, "required": absent is MISSING}
    if absent is MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=absent, metadata=meta)


def _def_name(cls) -> str:
    """SnapshotCfg -> snapshot, RuleResourcesCfg -> rule_resources (a section's key, a shared $def's name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__.removesuffix("Cfg")).lower()


# bounds used by several keys (a bound, not a declaration: each key is still declared once)
THREADS = dict(minimum=1, maximum=256)
RESOLUTION = dict(minimum=8, maximum=4096)
CHANNELS = dict(min_items=1, max_items=8, items=dict(minimum=1, maximum=4096))
MEM_MB = dict(minimum=1, maximum=16777216)      # per node, up to 16 TiB
RUNTIME = dict(minimum=1, maximum=525600)       # minutes, up to a year
GPUS = dict(minimum=0, maximum=64)              # per node
NODES = dict(minimum=1, maximum=4096)
PARTITION = dict(max_length=64, pattern="^[A-Za-z0-9_.,-]*$")
LICENCES = ["pd", "cc0"]


# ---- shared training settings ---------------------------------------------------------
@dataclass(frozen=True)
class OptimizerCfg:
    kind: str = knob(help="optimizer", enum=["adamw", "adam", "sgd"])
    lr: float = knob(help="peak learning rate", exclusive_minimum=0, maximum=10)
    betas: tuple[float, float] = knob(help="Adam betas", items=dict(minimum=0, exclusive_maximum=1))
    eps: float = knob(help="Adam epsilon", exclusive_minimum=0, maximum=1)
    weight_decay: float = knob(help="decoupled weight decay (adamw), L2 (adam, sgd)", minimum=0, maximum=10)


@dataclass(frozen=True)
class ScheduleCfg:
    kind: str = knob(help="learning-rate schedule after the warm-up", enum=["constant", "cosine", "linear"])
    warmup_steps: int = knob(help="linear warm-up steps; more than train.steps warms up over all of them (so a "
                                  "shorter run needs only steps changed)", minimum=0)
    min_lr_ratio: float = knob(help="the schedule's floor, as a fraction of lr", minimum=0, maximum=1)


@dataclass(frozen=True)
class EmaCfg:
    decay: float = knob(help="0 turns EMA off; else the EMA of the weights is evaluated and shipped",
                        minimum=0, exclusive_maximum=1)
    warmup: bool = knob(help="diffusers' EMA warm-up (decay ramps up over the first steps)")


@dataclass(frozen=True)
class TrainCfg:
    steps: int = knob(help="optimizer steps", minimum=1)
    batch_size: int = knob(help="global batch per micro-step, split over the processes", minimum=2)
    grad_accum: int = knob(help="micro-steps per optimizer step", minimum=1)
    max_grad_norm: float = knob(help="gradient clipping norm; 0 turns clipping off", minimum=0)
    mixed_precision: str = knob(help="autocast precision (accelerate)", enum=["no", "bf16", "fp16"])
    eval_every: int = knob(help="steps between val evaluations, and at the last step (0: none; more than steps: "
                                "the last step only)", minimum=0)
    checkpoint_every: int = knob(help="steps between resumable checkpoints (0, or steps or more: none)", minimum=0)
    threads: int = knob(help="torch CPU threads", **THREADS)
    memory_budget_mb: int = knob(help="a train split larger than this is streamed from the shards instead of "
                                      "preloaded", minimum=1)
    optimizer: OptimizerCfg = knob(help="the optimizer")
    schedule: ScheduleCfg = knob(help="the learning-rate schedule")
    ema: EmaCfg = knob(help="exponential moving average of the weights")


def _train(steps, batch_size, eval_every, checkpoint_every, lr, betas, eps, weight_decay, warmup_steps, min_lr_ratio,
           ema_decay=0.0, ema_warmup=False, mixed_precision="no") -> dict:
    """A training section's committed values (what params.yaml says for clip, vae and unet)."""
    return dict(steps=steps, batch_size=batch_size, grad_accum=1, max_grad_norm=1.0, mixed_precision=mixed_precision,
                eval_every=eval_every, checkpoint_every=checkpoint_every, threads=2, memory_budget_mb=2048,
                optimizer=dict(kind="adamw", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
                schedule=dict(kind="cosine", warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio),
                ema=dict(decay=ema_decay, warmup=ema_warmup))


# ---- sections -------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotCfg:
    """The pinned dataset snapshot."""
    name: str = knob("openclipart-0.18", "the pinned dataset snapshot the build compiles",
                     pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str = knob("data/snapshots/openclipart-0.18.parquet", "its Parquet file (the demo's is in git; real "
                                                                "snapshots are tracked with DVC)")


@dataclass(frozen=True)
class AuditCfg:
    """The licence audit."""
    allowed_licences: tuple[str, ...] = knob(LICENCES, "licence kinds that may enter a build; anything else fails it",
                                             min_items=1, items=dict(enum=LICENCES))


@dataclass(frozen=True)
class CaptionCfg:
    template: str = knob("{title}, {category}, {keywords}", "comma-separated parts; a part whose {field} has no "
                                                            "usable label is dropped with its comma", min_length=1)
    label_licences: tuple[str, ...] = knob(LICENCES, "only labels whose own licence is listed may become training text",
                                           items=dict(enum=["pd", "cc0", "cc-by", "cc-by-sa"]))
    fallback: str = knob("a clip art image", "caption when no usable label exists")
    max_parts: int = knob(8, "keep at most this many comma-separated parts (repeats dropped first); 0: all",
                          absent=0, minimum=0, maximum=1000)


@dataclass(frozen=True)
class CurateCfg:
    """Held-out by content and near-duplicate curation, before the export."""
    resolution: int = knob(32, "px the images are rendered at (as the export renders them) for their perceptual key",
                           **RESOLUTION)
    hash_size: int = knob(8, "difference-hash grid: hash_size^2 bits horizontally and as many vertically", minimum=2,
                          maximum=32)
    near_distance: int = knob(4, "a val image within this many hash bits of a train image is a near-duplicate of it; "
                                 "-1: no check", minimum=-1, maximum=2048)
    val_near_train: str = knob("drop", "a val near-duplicate of a train image: drop it from val, or keep it (counted)",
                               enum=["drop", "keep"])
    cap_per_cluster: int = knob(4, "train images kept per near-duplicate cluster (same perceptual key), the first by "
                                   "sha256; 0: keep all", minimum=0)
    cap_per_caption: int = knob(0, "train images kept per identical caption (a series: one caption on many pictures), "
                                   "the first by sha256; 0: keep all", minimum=0)


@dataclass(frozen=True)
class ExportCfg:
    """The training export: images at fixed sizes, captions, split."""
    resolutions: tuple[int, ...] = knob([32], "square training image sizes in px, one column per size",
                                        min_items=1, unique=True, items=RESOLUTION)
    resample: str = knob("lanczos", "Pillow resampling filter", enum=["lanczos", "bicubic", "bilinear"])
    fit: str = knob("pad", "crop: center-crop to square; pad: keep the whole image, pad to square", enum=["crop", "pad"])
    background: tuple[int, int, int] = knob([255, 255, 255], "pad colour (transparency is flattened onto white at "
                                                             "decode)", items=dict(minimum=0, maximum=255))
    val_fraction: float = knob(0.1, "share of images in val (by seeded hash of the image's perceptual key: "
                                    "stage curate)", exclusive_minimum=0,
                               maximum=0.5)
    caption: CaptionCfg = knob(help="how a training caption is made from a file's labels")
    shard_rows: int = knob(1024, "rows per Parquet shard", minimum=1)
    threads: int = knob(2, "decode/resize worker threads", **THREADS)


TOKENIZER_BASE_VOCAB = 2 + 2 * 256     # the special tokens and the byte-level BPE's 512 symbols (pdd/train/tokenizer.py)


@dataclass(frozen=True)
class TokenizerCfg:
    """The byte-level BPE tokenizer."""
    vocab_size: int = knob(2048, "total tokens: 2 special + 512 byte symbols + learned merges (min 514)",
                           minimum=1, maximum=1000000)
    min_frequency: int = knob(2, "a pair must occur this often in train captions to be merged", minimum=1)
    max_length: int = knob(48, "tokens per caption incl. start/end; longer captions are truncated",
                           minimum=1, maximum=4096)


@dataclass(frozen=True)
class TowerCfg:
    hidden_size: int = knob(128, "width (must be a multiple of num_heads)", minimum=1, maximum=8192)
    intermediate_size: int = knob(256, "MLP width", minimum=1, maximum=32768)
    num_layers: int = knob(2, "transformer layers", minimum=1, maximum=128)
    num_heads: int = knob(4, "attention heads", minimum=1, maximum=256)


@dataclass(frozen=True)
class VisionTowerCfg(TowerCfg):
    patch_size: int = knob(4, "ViT patch size in px (must divide clip.image_size)", minimum=1, maximum=4096)


@dataclass(frozen=True)
class ClipCfg:
    """CLIP trained from scratch."""
    image_size: int = knob(32, "image size in px; must be one of export.resolutions", **RESOLUTION)
    text: TowerCfg = knob(help="the text tower (its hidden_size is also the U-Net's cross-attention width)")
    vision: VisionTowerCfg = knob(help="the vision tower (a ViT)")
    projection_dim: int = knob(64, "width of the shared image-text embedding", minimum=1, maximum=8192)
    logit_scale_init: float = knob(2.6592, "initial log of the logit scale: log(1/0.07), as in CLIP (at most "
                                           "log(100), CLIP's own cap)", minimum=0, maximum=4.6052)
    train: TrainCfg = knob(_train(1000, 64, 250, 250, 0.001, [0.9, 0.98], 1.0e-6, 0.1, 50, 0.0),
                           "training; batch_size is also the contrastive negatives")


@dataclass(frozen=True)
class ProbeCfg:
    min_rows: int = knob(20, "categories with fewer train rows are pooled as 'other'", minimum=1)
    steps: int = knob(300, "full-batch optimizer steps of the probe", minimum=1, maximum=100000)
    lr: float = knob(0.05, "the probe's learning rate (Adam)", exclusive_minimum=0, maximum=10)


@dataclass(frozen=True)
class JudgeCfg:
    """The quality judge: a second CLIP and a category probe, trained from scratch on the train split."""
    image_size: int = knob(32, "image size in px; must be one of export.resolutions", **RESOLUTION)
    text: TowerCfg = knob(dict(hidden_size=96, intermediate_size=192, num_layers=2, num_heads=4), "the text tower")
    vision: VisionTowerCfg = knob(dict(hidden_size=96, intermediate_size=192, num_layers=3, num_heads=4, patch_size=4),
                                  "the vision tower (a ViT; deeper and narrower than the conditioning CLIP's)")
    projection_dim: int = knob(64, "width of the shared image-text embedding (the quality metrics' feature space)",
                               minimum=1, maximum=8192)
    logit_scale_init: float = knob(2.6592, "initial log of the logit scale", minimum=0, maximum=4.6052)
    train: TrainCfg = knob(_train(1000, 64, 500, 250, 0.001, [0.9, 0.98], 1.0e-6, 0.1, 50, 0.0),
                           "training (its seeds are derived from the params seed and 'judge')")
    probe: ProbeCfg = knob(help="the category probe on the judge's image features")


@dataclass(frozen=True)
class GanCfg:
    weight: float = knob(0.0, "generator loss weight of the patch-GAN (trained from scratch); 0: no discriminator",
                         minimum=0, maximum=100)
    start_step: int = knob(0, "step from which the GAN loss is on", minimum=0)
    channels: int = knob(32, "discriminator channels of the first layer", minimum=8, maximum=1024)
    layers: int = knob(3, "discriminator strided layers", minimum=1, maximum=6)


@dataclass(frozen=True)
class VaeCfg:
    """The VAE (diffusers AutoencoderKL) trained from scratch."""
    resolution: int = knob(32, "image size in px it trains on; one of export.resolutions", **RESOLUTION)
    latent_channels: int = knob(8, "latent channels", minimum=1, maximum=64)
    block_out_channels: tuple[int, ...] = knob([32, 64, 64], "channels per block; downsampling factor "
                                                             "2**(blocks-1): 32 px -> 8x8x8", **CHANNELS)
    layers_per_block: int = knob(1, "resnet layers per block", minimum=1, maximum=8)
    norm_num_groups: int = knob(8, "group-norm groups (divides every block's channels); channels per group >= 4: "
                                   "per-channel norms at the first block wash out colour", minimum=1, maximum=256)
    mid_attention: bool = knob(False, "self-attention in the mid block")
    loss: str = knob("l1", "reconstruction loss", enum=["l1", "l2"])
    kl_weight: float = knob(1.0e-4, "x KL(posterior || N(0, I)) per latent element", minimum=0, maximum=100)
    chroma_weight: float = knob(0.0, "x the same loss on the two opponent-colour channels (R - G, (R + G) / 2 - B) "
                                     "of image and reconstruction, added to the RGB loss: a hue shift costs more; "
                                     "0: off", minimum=0, maximum=100)
    gan: GanCfg = knob(help="patch-GAN from scratch; weight 0: off")
    preview_images: int = knob(8, "val images shown above their reconstructions in metrics/vae_grid.png",
                               minimum=1, maximum=64)
    train: TrainCfg = knob(_train(1000, 32, 500, 200, 0.001, [0.9, 0.99], 1.0e-8, 0.0, 50, 0.1,
                                           mixed_precision="bf16"), "training")


@dataclass(frozen=True)
class LatentsCfg:
    """The export encoded once by the VAE, and the text states."""
    batch_size: int = knob(64, "images per VAE encode / text encode call", minimum=1, maximum=4096)
    threads: int = knob(2, "torch CPU threads", **THREADS)


@dataclass(frozen=True)
class NoiseCfg:
    timesteps: int = knob(1000, "training noise timesteps", minimum=2, maximum=10000)
    beta_schedule: str = knob("squaredcos_cap_v2", "noise schedule",
                              enum=["linear", "scaled_linear", "squaredcos_cap_v2"])
    prediction_type: str = knob("v_prediction", "what the U-Net predicts", enum=["epsilon", "v_prediction"])
    snr_gamma: float = knob(5.0, "min-SNR-gamma loss weighting; 0: off", minimum=0, maximum=1000)
    zero_terminal_snr: bool = knob(False, "rescale the betas to zero terminal SNR")


@dataclass(frozen=True)
class UnetCfg:
    """The denoiser trained from scratch."""
    mode: str = knob("latent-conditional", "latent-conditional (StableDiffusionPipeline) | pixel-unconditional "
                                           "(DDPMPipeline)", enum=["latent-conditional", "pixel-unconditional"])
    resolution: int = knob(32, "pixel mode: the export resolution it trains on (latent mode: the VAE's)", **RESOLUTION)
    in_channels: int = knob(8, "latent mode: must equal vae.latent_channels; pixel mode: 3", minimum=1, maximum=64)
    block_out_channels: tuple[int, ...] = knob([64, 128, 128], "channels per block", **CHANNELS)
    attention: tuple[bool, ...] = knob([False, True, True], "per block: cross-attention to the text (latent mode) / "
                                                            "self-attention", min_items=1, max_items=8)
    layers_per_block: int = knob(1, "resnet layers per block", minimum=1, maximum=8)
    attention_head_dim: int = knob(32, "width of an attention head", minimum=1, maximum=1024)
    norm_num_groups: int = knob(32, "group-norm groups (divides every block's channels)", minimum=1, maximum=256)
    caption_dropout: float = knob(0.1, "share of captions replaced by the empty prompt (classifier-free guidance)",
                                  minimum=0, maximum=1)
    noise: NoiseCfg = knob(help="the training noise schedule")
    train: TrainCfg = knob(_train(2500, 32, 500, 500, 0.002, [0.9, 0.999], 1.0e-8, 0.01, 100, 0.1, 0.995, True,
                                           mixed_precision="bf16"),
                           "training")


@dataclass(frozen=True)
class SampleCfg:
    """Sampling (the sample grid; the quality and memorization stages sample the same way)."""
    prompts: tuple[str, ...] = knob(["Apple, food/fruit, apple, fruit", "star, shapes/stars, stars, shapes",
                                     "Flag of France, signs_and_symbols/flags/europe/france, flag",
                                     "card, recreation/games/cards/white",
                                     "Cartoon Cat, animals/mammals, mammal, cat, animal", "House, buildings/homes, building",
                                     "Tree, plants/trees, tree, plant", "car, transportation, car, vehicle"],
                                    "prompts, in the training captions' own style: title, category, keywords",
                                    min_items=1, max_items=256, items=dict(max_length=1000))
    images_per_prompt: int = knob(2, "images per prompt", minimum=1, maximum=64)
    steps: int = knob(25, "sampling steps", minimum=1, maximum=1000)
    guidance_scale: float = knob(3.0, "classifier-free guidance scale, >= 1 (1: no guidance)", minimum=0, maximum=100)
    scheduler: str = knob("dpm++", "sampler (configured from the training noise schedule)",
                          enum=["dpm++", "ddim", "ddpm"])
    threads: int = knob(2, "torch CPU threads", **THREADS)


@dataclass(frozen=True)
class QualityCfg:
    """The yardstick: samples from val captions graded by the judge, beside real images and chance."""
    n_samples: int = knob(1000, "samples generated from val captions (sample.steps, guidance, scheduler)",
                          minimum=8, maximum=20000)
    batch_size: int = knob(50, "images per pipeline call", minimum=1, maximum=4096)
    max_per_val: int = knob(10, "at most this many samples per val image (n_samples above that: the val split is too "
                                "small)", minimum=1, maximum=1000)
    kid_subsets: int = knob(50, "random subsets KID is averaged over", minimum=2, maximum=10000)
    kid_subset_size: int = knob(500, "rows per KID subset (at most the smaller set)", minimum=2, maximum=100000)
    pr_k: int = knob(3, "k of the k-NN manifolds of precision / recall", minimum=1, maximum=100)
    distractors: int = knob(31, "other val captions each image's own prompt is ranked against (R-precision)",
                            minimum=1, maximum=1023)
    grid_prompts: int = knob(8, "val captions in metrics/quality_grid.png (one row each)", minimum=1, maximum=64)
    grid_samples: int = knob(4, "samples beside each real image in the grid", minimum=1, maximum=32)
    threads: int = knob(2, "torch CPU threads", **THREADS)


@dataclass(frozen=True)
class MemorizationCfg:
    """Does the model copy? nearest training images of samples."""
    n_samples: int = knob(64, "generated samples (training captions as prompts; sample.steps, guidance, scheduler) "
                              "checked against the training set", minimum=1, maximum=100000)
    percentile: float = knob(99.0, "calibration: in each space the threshold is this percentile of the val images' "
                                   "nearest-train similarities; a sample is flagged only when it is above the "
                                   "threshold in every unsaturated space (CLIP and pixels)", minimum=50, maximum=100)
    saturated_above: float = knob(0.995, "a space whose calibrated threshold is at or above this is saturated (the "
                                         "data's own near-duplicates sit there) and takes no part in the flag",
                                  minimum=0, maximum=1)
    hash_size: int = knob(8, "perceptual hash (DCT pHash) side: hash_size^2 bits, reported beside CLIP and pixels",
                          minimum=4, maximum=32)
    pixel_size: int = knob(16, "images are shrunk to this many px for the pixel-space neighbours (correlation)",
                           minimum=2, maximum=512)
    show: int = knob(8, "flagged (else closest) samples drawn above their nearest training image", minimum=0, maximum=256)


@dataclass(frozen=True)
class ComputeCfg:
    """How torch computes, for every stage that runs a model."""
    deterministic: bool = knob(True, "deterministic algorithms, cuDNN deterministic, TF32 off, CUBLAS_WORKSPACE_CONFIG "
                                     "(pdd.core.determinism); false: fastest kernels, two runs may differ")
    attention: str = knob("sdpa", "sdpa: PyTorch scaled_dot_product_attention | xformers: memory-efficient kernels for "
                                  "the diffusers VAE and U-Net (CUDA, the xformers package, deterministic: false)",
                          enum=["sdpa", "xformers"])


@dataclass(frozen=True)
class ReleaseCfg:
    """Who signs the built pipeline folder (pdd sign); its model card names the key."""
    signing_key: str = knob("", "SHA256:<64 hex digits>, the fingerprint of the public key `pdd sign` signs "
                                "models/pipeline with (`pdd sign` prints it and refuses any other key); the model "
                                "card lists it. \"\": not signed", pattern="^(SHA256:[0-9a-f]{64})?$")


# ---- resources: what each Snakemake rule asks of a machine (pdd/build/cluster.py); no stage reads it ----
@dataclass(frozen=True)
class RuleResourcesCfg:
    mem_mb: int | None = knob(help="memory per node in MB (else resources.default's)", absent=None, **MEM_MB)
    runtime: int | None = knob(help="minutes (else resources.default's)", absent=None, **RUNTIME)
    gpus: int | None = knob(help="GPUs per node (else resources.default's)", absent=None, **GPUS)
    partition: str | None = knob(help="SLURM partition (else resources.default's)", absent=None, **PARTITION)


@dataclass(frozen=True)
class ExportResourcesCfg(RuleResourcesCfg):
    slices: int | None = knob(help="N cluster jobs each export whole shards, one more gathers them (absent: 1)",
                              absent=None, minimum=1, maximum=4096)


@dataclass(frozen=True)
class TrainResourcesCfg(RuleResourcesCfg):
    nodes: int | None = knob(help="nodes of a multi-node run (absent: 1)", absent=None, **NODES)
    processes_per_node: int | None = knob(help="training processes per node, at most one per GPU (absent: 1)",
                                          absent=None, minimum=1, maximum=64)


@dataclass(frozen=True)
class RulesCfg:
    """Per rule, over resources.default (the rules are the stages of pdd/build/dag.py)."""
    audit: RuleResourcesCfg | None = knob(help="the audit rule", absent=None)
    curate: RuleResourcesCfg | None = knob(dict(mem_mb=4000), "the curate rule", absent=None)
    export: ExportResourcesCfg | None = knob(dict(mem_mb=4000, slices=1), "the export rule", absent=None)
    tokenizer: RuleResourcesCfg | None = knob(help="the tokenizer rule", absent=None)
    clip: TrainResourcesCfg | None = knob(dict(mem_mb=4000, runtime=120, nodes=1, processes_per_node=1), "the clip rule",
                                          absent=None)
    judge: TrainResourcesCfg | None = knob(dict(mem_mb=4000, runtime=120, nodes=1, processes_per_node=1),
                                           "the judge rule", absent=None)
    vae: TrainResourcesCfg | None = knob(dict(mem_mb=4000, runtime=240, nodes=1, processes_per_node=1), "the vae rule",
                                         absent=None)
    latents: RuleResourcesCfg | None = knob(dict(mem_mb=4000, runtime=60), "the latents rule", absent=None)
    unet: TrainResourcesCfg | None = knob(dict(mem_mb=6000, runtime=480, nodes=1, processes_per_node=1), "the unet rule",
                                          absent=None)
    sample: RuleResourcesCfg | None = knob(dict(mem_mb=4000, runtime=60), "the sample rule", absent=None)
    quality: RuleResourcesCfg | None = knob(dict(mem_mb=4000, runtime=60), "the quality rule", absent=None)
    memorization: RuleResourcesCfg | None = knob(dict(mem_mb=4000, runtime=60), "the memorization rule", absent=None)
    pipeline: RuleResourcesCfg | None = knob(dict(runtime=10), "the pipeline rule", absent=None)


@dataclass(frozen=True)
class DefaultResourcesCfg:
    mem_mb: int = knob(2000, "memory per node in MB", **MEM_MB)
    runtime: int = knob(30, "minutes", **RUNTIME)
    gpus: int = knob(0, "GPUs per node", **GPUS)
    partition: str = knob("", "SLURM partition; \"\": the profile's", **PARTITION)


@dataclass(frozen=True)
class LimitsCfg:
    """The most a rule may ask, here or in a profile; more fails when the Snakefile is parsed."""
    mem_mb: int = knob(128000, "memory per node in MB", **MEM_MB)
    runtime: int = knob(2880, "minutes", **RUNTIME)
    gpus: int = knob(8, "GPUs per node", **GPUS)
    nodes: int = knob(8, "nodes", **NODES)
    threads: int = knob(64, "threads per node (a stage's threads x its processes per node)", minimum=1, maximum=4096)


@dataclass(frozen=True)
class LaunchCfg:
    port: int = knob(29500, "rendezvous port of a multi-node run (torchrun --master-port)", minimum=1024, maximum=65535)


@dataclass(frozen=True)
class ResourcesCfg:
    """Cluster asks per Snakemake rule (pdd/build/cluster.py); no stage reads it."""
    default: DefaultResourcesCfg = knob(help="what every rule asks unless resources.rules says otherwise")
    rules: RulesCfg = knob(help="per rule, over the default; clip, vae and unet also take nodes and "
                                "processes_per_node, export slices")
    limits: LimitsCfg = knob(help="the most a rule may ask, here or in a profile (set-resources, set-threads, "
                                  "default-resources)")
    launch: LaunchCfg = knob(help="how a multi-node run meets")


# ---- the whole file ---------------------------------------------------------------------
def _whole(*sections) -> type:
    """params.yaml: the seed, then one key per section class (its name without Cfg, its docstring as help)."""
    fields = [("seed", int, knob(20261122, "the seed of every named random generator of the build",
                                 minimum=0, maximum=4294967295))]
    fields += [(_def_name(c), c, knob(help=c.__doc__.strip().rstrip(".")))
               for c in sections]
    cls = dataclasses.make_dataclass("ParamsCfg", fields, frozen=True, namespace={
        "__doc__": "params.yaml: every section a stage reads, the seed, and the resources no stage reads."})
    cls.__module__ = __name__
    return cls


ParamsCfg = _whole(SnapshotCfg, AuditCfg, CurateCfg, ExportCfg, TokenizerCfg, ClipCfg, JudgeCfg, VaeCfg, LatentsCfg,
                   UnetCfg, SampleCfg, QualityCfg, MemorizationCfg, ComputeCfg, ReleaseCfg, ResourcesCfg)


STAGE_FREE = ("seed", "resources")   # read by no stage as a section of its own
SECTIONS: dict[str, type] = {name: typ for name, typ in typing.get_type_hints(ParamsCfg).items() if name not in STAGE_FREE}


# ---- building -------------------------------------------------------------------------
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _optional_of(typ):
    """X for `X | None`, else None."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    return None


def build(cls, data, where: str, source="params.yaml"):
    """Turn a validated mapping into cls (nested dataclasses, tuples for lists)."""
    inner = _optional_of(cls)
    if inner is not None:
        return None if data is None else build(inner, data, where, source)
    if dataclasses.is_dataclass(cls):
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = build(hints[f.name], data[f.name], f"{where}.{f.name}", source)
            elif f.default is MISSING:
                raise PddError(f"{source}: {where}.{f.name}: missing required key")
        return cls(**kwargs)
    if typing.get_origin(cls) is tuple:
        item = typing.get_args(cls)[0]
        return tuple(build(item, v, where, source) for v in data)
    if cls is float:
        return float(data)
    return data


def as_dict(cfg) -> dict:
    """The config as plain JSON data (tuples as lists), e.g. for fingerprints."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def section(params: dict, name: str, source="params.yaml"):
    return build(SECTIONS[name], params[name], name, source)


# ---- what the declarations say: committed defaults, the schema, the docs table ----------
def _dataclass_of(typ):
    typ = _optional_of(typ) or typ
    return typ if dataclasses.is_dataclass(typ) else None


def declared(cls=ParamsCfg) -> dict:
    """The params a class declares, as plain YAML data: what params.yaml must hold."""
    out = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        default, sub = f.metadata["default"], _dataclass_of(hints[f.name])
        if sub is not None:
            value = declared(sub)
            if default is not MISSING:
                deep_update(value, copy.deepcopy(default))
            if value or f.metadata["required"]:
                out[f.name] = value
        elif default is not MISSING:
            out[f.name] = copy.deepcopy(default)
    return out


def _leaf_schema(typ, meta_bounds: dict, items: dict) -> dict:
    bounds = {_WORDS[k]: v for k, v in meta_bounds.items()}
    if typing.get_origin(typ) is tuple:
        args = typing.get_args(typ)
        fixed = {} if args[-1] is Ellipsis else {"minItems": len(args), "maxItems": len(args)}
        return {"type": "array", **fixed, **bounds, "items": _leaf_schema(args[0], items, {})}
    if "enum" in bounds:                 # a choice: the enum alone (its message lists the choices)
        return bounds
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[typ]
    return {"type": kind, **bounds}


def _uses(cls, counts: dict) -> dict:
    for f in dataclasses.fields(cls):
        sub = _dataclass_of(_hints(cls)[f.name])
        if sub is not None:
            counts[sub] = counts.get(sub, 0) + 1
            if counts[sub] == 1:
                _uses(sub, counts)
    return counts


def _object_schema(cls, shared: dict, defs: dict) -> dict:
    hints = _hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        typ = _optional_of(hints[f.name]) or hints[f.name]
        if f.metadata["required"]:
            required.append(f.name)
        if dataclasses.is_dataclass(typ):
            if typ in shared:
                if _def_name(typ) not in defs:
                    defs[_def_name(typ)] = None     # placeholder: keeps the order of first use
                    defs[_def_name(typ)] = _object_schema(typ, shared, defs)
                node = {"$ref": f"#/$defs/{_def_name(typ)}"}
            else:
                node = _object_schema(typ, shared, defs)
        else:
            node = _leaf_schema(typ, f.metadata["bounds"], f.metadata["items"])
        if f.metadata["help"]:
            node = {"description": f.metadata["help"], **node}
        props[f.name] = node
    out = {"type": "object", "additionalProperties": False}
    if required:
        out["required"] = required
    out["properties"] = props
    return out


def schema() -> dict:
    """The JSON schema of params.yaml, from the declarations (a class used more than once is a $def)."""
    shared = {c for c, n in _uses(ParamsCfg, {}).items() if n > 1}
    defs: dict = {}
    top = _object_schema(ParamsCfg, shared, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top, "$defs": defs}


SCHEMA_HEADER = """\
# JSON Schema of params.yaml, GENERATED from the declarations in pdd/core/config.py: do not edit, run
# `python -m pdd.core.config --write` (tests/test_param_declarations.py fails when it drifts).
# Used by `pdd` (pdd/core/params.py) at load time and by Snakemake (`validate(config, ...)` in the
# Snakefile): one schema, two readers. docs/params.md is the same declarations as a table.
"""


class _Dumper(yaml.SafeDumper):
    pass


def schema_text() -> str:
    return SCHEMA_HEADER + yaml.dump(schema(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True,
                                     default_flow_style=None)


def _type_name(typ) -> str:
    inner = _optional_of(typ)
    if inner is not None:
        return _type_name(inner)
    if typing.get_origin(typ) is tuple:
        args = typing.get_args(typ)
        if args[-1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"[{', '.join(_type_name(a) for a in args)}]"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(typ, "section")


def _bounds_text(bounds: dict, items: dict) -> str:
    words = {"minimum": ">= {}", "maximum": "<= {}", "exclusive_minimum": "> {}", "exclusive_maximum": "< {}",
             "pattern": "matches `{}`", "min_length": "at least {} characters", "max_length": "at most {} characters",
             "min_items": "at least {} item(s)", "max_items": "at most {} item(s)"}
    out = []
    for k, v in bounds.items():
        if k == "enum":
            out.append("one of " + ", ".join(f"`{x}`" for x in v))
        elif k == "unique":
            out.append("no repeats")
        else:
            out.append(words[k].format(v))
    if items:
        out.append("each " + _bounds_text(items, {}))
    return ", ".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(cls, prefix: str, defaults: dict) -> list[str]:
    rows = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key, typ = f"{prefix}{f.name}", hints[f.name]
        sub = _dataclass_of(typ)
        here = defaults.get(f.name, MISSING) if isinstance(defaults, dict) else MISSING
        if sub is not None:
            rows += _rows(sub, f"{key}.", here if here is not MISSING else {})
            continue
        default = "" if here is MISSING else f"`{json.dumps(here, ensure_ascii=False)}`"
        if not f.metadata["required"]:
            absent = "" if f.default is None else f"`{json.dumps(f.default)}`"
            default += f" (optional{'; absent: ' + absent if absent else ''})"
        rows.append(f"| `{key}` | {_type_name(typ)} | {_cell(default.strip())} | "
                    f"{_cell(_bounds_text(f.metadata['bounds'], f.metadata['items']))} | {_cell(f.metadata['help'])} |")
    return rows


DOCS_HEADER = """\
# params.yaml, key by key

GENERATED from the declarations in `pdd/core/config.py` (`python -m pdd.core.config --write`; do not edit:
`tests/test_param_declarations.py` fails when this table, `workflow/schemas/params.schema.yaml` or the values
in `params.yaml` drift from them). Every key is required unless marked optional; the default is the value
committed in `params.yaml`. The rules that span several keys (an exported resolution, channels that divide,
resources within their limits, ...) are `check` in the same module and run before any stage starts.

| key | type | default | bounds | help |
|---|---|---|---|---|
"""


def docs_text() -> str:
    return DOCS_HEADER + "\n".join(_rows(ParamsCfg, "", declared())) + "\n"


GENERATED = {"workflow/schemas/params.schema.yaml": schema_text, "docs/params.md": docs_text}


def _drift(committed, want, key: str = ""):
    """Key paths where a committed params tree differs from the declared one, with why."""
    if isinstance(committed, dict) and isinstance(want, dict):
        for k in list(committed) + [k for k in want if k not in committed]:
            sub = f"{key}.{k}" if key else str(k)
            if k not in want:
                yield sub, "has no declaration in pdd/core/config.py"
            elif k not in committed:
                yield sub, f"declared with default {json.dumps(want[k])} but missing"
            else:
                yield from _drift(committed[k], want[k], sub)
    elif committed != want or type(committed) is not type(want):
        yield key, f"{json.dumps(committed)} is not the declared default {json.dumps(want)} (pdd/core/config.py)"


def check_generated(root: str | Path = params_mod.REPO_ROOT) -> list[str]:
    """What drifted from the declarations, one line each: a generated file that differs from what
    `write_generated` would write, a params.yaml value that is not its declared default, a key without
    a declaration. Empty when all agree."""
    root = Path(root)
    problems = [f"{rel}: differs from the declarations in pdd/core/config.py (run `python -m pdd.core.config "
                f"--write`)" for rel, make in GENERATED.items()
                if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != make()]
    committed = params_mod.read(root / "params.yaml")
    problems += [f"params.yaml: {key}: {why}" for key, why in _drift(committed, declared())]
    return problems


def write_generated(root: str | Path = params_mod.REPO_ROOT) -> list[str]:
    """Write the schema and the docs table from the declarations; returns the files that changed."""
    changed = []
    for rel, make in GENERATED.items():
        path, text = Path(root) / rel, make()
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            changed.append(rel)
    return changed


# ---- cross-field rules: all of them, in one place ---------------------------------------
def _failer(source):
    def fail(key: str, why: str):
        raise PddError(f"{source}: {key}: {why}")
    return fail


def check_train(t: TrainCfg, where: str, source="params.yaml") -> None:
    """Nothing spans a training section's fields: warmup_steps, eval_every and checkpoint_every larger than
    steps are valid (the warm-up is cut to steps, evaluation happens at the last step, no checkpoint is
    written), so changing `steps` alone (`dvc exp run -S unet.train.steps=20`) is always a valid run."""


def _check_groups(prefix: str, channels, groups: int, source) -> None:
    for c in channels:
        if c % groups:
            raise PddError(f"{source}: {prefix}.block_out_channels entry {c} is not a multiple of "
                           f"{prefix}.norm_num_groups={groups}")


def _check_vae(cfg: VaeCfg, source) -> None:
    """Geometry: the latent at least 2 px, the resolution a multiple of the downsampling factor."""
    f = 2 ** (len(cfg.block_out_channels) - 1)   # = pdd.train.vae.downsample_factor
    if cfg.resolution // f < 2:
        raise PddError(f"{source}: vae.block_out_channels has {len(cfg.block_out_channels)} blocks: too many down "
                       f"blocks for vae.resolution={cfg.resolution} (the latent would be {cfg.resolution / f:g} px); "
                       "use fewer blocks")
    if cfg.resolution % f:
        raise PddError(f"{source}: vae.resolution={cfg.resolution} is not divisible by the VAE's downsampling factor "
                       f"{f} (2 ** (len(vae.block_out_channels) - 1)); pick a resolution that is a multiple of {f}")
    _check_groups("vae", cfg.block_out_channels, cfg.norm_num_groups, source)


def _check_unet(cfg: UnetCfg, source) -> None:
    if len(cfg.attention) != len(cfg.block_out_channels):
        raise PddError(f"{source}: unet.attention has {len(cfg.attention)} entries but unet.block_out_channels has "
                       f"{len(cfg.block_out_channels)}; give one flag per block")
    _check_groups("unet", cfg.block_out_channels, cfg.norm_num_groups, source)
    if cfg.mode == "pixel-unconditional" and cfg.in_channels != 3:
        raise PddError(f"{source}: unet.in_channels={cfg.in_channels}: the pixel-unconditional U-Net sees RGB (3)")


def _check_clip(clip, fail, name: str = "clip") -> None:
    """The CLIP rules, for the conditioning CLIP (section clip) and the judge (section judge)."""
    if clip.image_size % clip.vision.patch_size:
        fail(f"{name}.vision.patch_size", f"{clip.vision.patch_size} does not divide {name}.image_size={clip.image_size}")
    for tower in ("text", "vision"):
        t = getattr(clip, tower)
        if t.hidden_size % t.num_heads:
            fail(f"{name}.{tower}.hidden_size", f"{t.hidden_size} is not a multiple of {name}.{tower}.num_heads={t.num_heads}")


def check(params: dict, only: tuple | None = None, source="params.yaml") -> dict:
    """Build every known section and run the rules that span fields or sections; returns {name: cfg}.
    With `only` (a stage's params sections), run just the rules of those sections: a stage is not
    refused for a problem in a section it does not read. `source`: the file the params came from, named
    in the one-line error."""
    fail = _failer(source)
    cfgs = {name: section(params, name, source) for name in SECTIONS if name in params}

    def want(name):
        return cfgs.get(name) if (only is None or name in only) else None

    ex, clip, vae, unet, sample = cfgs.get("export"), want("clip"), want("vae"), want("unet"), want("sample")
    tok = want("tokenizer")
    if tok is not None and tok.vocab_size < TOKENIZER_BASE_VOCAB:
        fail("tokenizer.vocab_size", f"{tok.vocab_size} is too small: the 2 special tokens (<|startoftext|>, "
                                     f"<|endoftext|>) and the 512 byte symbols need {TOKENIZER_BASE_VOCAB}; raise it "
                                     f"to at least {TOKENIZER_BASE_VOCAB}")
    if tok is not None and tok.max_length < 3:
        fail("tokenizer.max_length", f"{tok.max_length} leaves no room for text between <|startoftext|> and "
                                     "<|endoftext|>; use at least 3")
    if clip is not None:
        check_train(clip.train, "clip.train", source)
    if vae is not None:
        check_train(vae.train, "vae.train", source)
        _check_vae(vae, source)
    both_vae, both_unet = cfgs.get("vae"), cfgs.get("unet")
    if (vae is not None or unet is not None) and both_vae is not None and both_unet is not None \
            and both_unet.mode == "latent-conditional" and both_unet.in_channels != both_vae.latent_channels:
        fail("unet.in_channels", f"{both_unet.in_channels} does not match vae.latent_channels={both_vae.latent_channels}: "
                                 "the U-Net denoises the VAE's latents")
    if unet is not None:
        check_train(unet.train, "unet.train", source)
        _check_unet(unet, source)
    # the one place that says a size must be exported (the stages check only what is on disk)
    sized = [("clip.image_size", clip and clip.image_size), ("vae.resolution", vae and vae.resolution),
             ("judge.image_size", want("judge") and want("judge").image_size),
             ("unet.resolution", unet and unet.mode == "pixel-unconditional" and unet.resolution)]
    for key, size in sized:
        if size and ex is not None and size not in ex.resolutions:
            fail(key, f"{size} is not an exported resolution (export.resolutions is {list(ex.resolutions)})")
    if clip is not None:
        _check_clip(clip, fail)
    judge = want("judge")
    if judge is not None:
        check_train(judge.train, "judge.train", source)
        _check_clip(judge, fail, "judge")
    compute = want("compute")
    if compute is not None and compute.attention == "xformers" and compute.deterministic:
        fail("compute.attention", "xformers is not deterministic; set compute.deterministic: false to use it, "
                                  "or keep attention: sdpa")
    if only is None and "resources" in params:   # no stage reads resources: checked for the whole file only
        check_resources(params, source)
    if sample is not None:
        if sample.guidance_scale < 1:
            fail("sample.guidance_scale", f"{sample.guidance_scale} is below 1 (1 means no guidance)")
        if not sample.prompts:
            fail("sample.prompts", "give at least one prompt")
    return cfgs


RULE_LIMITED = ("mem_mb", "runtime", "gpus", "nodes")   # resources.limits.threads: cluster.check_params (the registry's threads)


def rule_asks(res: ResourcesCfg, rule: str, key: str) -> tuple[int | str, str]:
    """(value, the key that sets it) of what rule asks: resources.rules.<rule>.<key> over resources.default
    (nodes and processes_per_node: 1 unless the rule sets them)."""
    entry = getattr(res.rules, rule)
    value = getattr(entry, key, None) if entry is not None else None
    if value is not None:
        return value, f"resources.rules.{rule}.{key}"
    return getattr(res.default, key, 1), f"resources.default.{key}"


def check_resources(params: dict, source="params.yaml") -> ResourcesCfg:
    """The rules of `resources:` that need only params (the schema bounds each number): each rule within
    resources.limits, GPUs enough for the processes. Raises PddError naming the key."""
    res = build(ResourcesCfg, params["resources"], "resources", source)
    fail = _failer(source)
    for rule in (f.name for f in dataclasses.fields(RulesCfg)):
        for key in RULE_LIMITED:
            (value, where), limit = rule_asks(res, rule, key), getattr(res.limits, key)
            if value > limit:
                fail(where, f"{value} is more than resources.limits.{key}={limit}")
        gpus, ppn = rule_asks(res, rule, "gpus")[0], rule_asks(res, rule, "processes_per_node")[0]
        if gpus and ppn > gpus:
            fail(f"resources.rules.{rule}.processes_per_node", f"{ppn} processes per node but {gpus} GPUs per node "
                                                               "(one process per GPU)")
    return res


def patch(cfg, update: dict):
    """cfg with nested values replaced: patch(clip, {"train": {"steps": 20}}) (for tests and benches)."""
    hints = _hints(type(cfg))
    changes = {}
    for k, v in update.items():
        cur = getattr(cfg, k)
        if dataclasses.is_dataclass(cur) and isinstance(v, dict):
            changes[k] = patch(cur, v)
        else:
            changes[k] = build(hints[k], v, k)
    return replace(cfg, **changes)


def load(path="params.yaml", update: dict | None = None) -> dict:
    """Typed configs of a params file, optionally deep-updated first (tests, benches)."""
    raw = params_mod.load(path)
    if update:
        raw = deep_update(copy.deepcopy(raw), update)
        params_mod.validate(raw, path)
    return check(raw, source=path)


def deep_update(base: dict, update: dict) -> dict:
    """base with update merged in, nested mappings key by key (base is changed and returned)."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


# ---- presets: a partial params file (params-smoke.yaml) applied with `dvc exp run -S` ------------
def preset(path, params_path="params.yaml") -> dict:
    """A preset's data: a partial params file in params.yaml's shape whose every key exists in PARAMS_PATH,
    checked to give valid params when applied over it (schema and cross-field rules), errors naming PATH."""
    data = params_mod.read(path)
    if not isinstance(data, dict) or not data:
        raise PddError(f"{path}: expected a mapping of the params sections to change")
    base = params_mod.load(params_path)
    _known_keys(data, base, path)
    merged = deep_update(copy.deepcopy(base), copy.deepcopy(data))
    params_mod.validate(merged, path)
    check(merged, source=path)
    return data


def _known_keys(update: dict, base: dict, path, prefix=()) -> None:
    for k, v in update.items():
        key = ".".join(map(str, (*prefix, k)))
        if not isinstance(base, dict) or k not in base:
            raise PddError(f"{path}: {key}: not a key of params.yaml (a preset only changes existing keys)")
        if isinstance(v, dict) and isinstance(base[k], dict):
            _known_keys(v, base[k], path, (*prefix, k))


def set_params(update: dict, prefix=()) -> list[str]:
    """`section.key=VALUE` for every leaf of a preset, VALUE in the override syntax `dvc exp run -S` parses
    (Hydra's): true/false, numbers, "double-quoted" strings, [lists]. DVC writes them into params.yaml."""
    out = []
    for k, v in update.items():
        key = (*prefix, str(k))
        if isinstance(v, dict):
            out += set_params(v, key)
        else:
            out.append(f"{'.'.join(key)}={_override(v, '.'.join(key))}")
    return out


def _override(v, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        if any(c in v for c in '"\\$') or not v.isprintable():
            raise PddError(f"{key}: {v!r} has a quote, backslash, $ or control character: set it in params.yaml by hand")
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ",".join(_override(x, key) for x in v) + "]"
    raise PddError(f"{key}: a {type(v).__name__} cannot be given with `dvc exp run -S`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdd.core.config",
                                     description="Regenerate (--write) or verify (--check) the params schema and "
                                                 "docs/params.md from the declarations, and params.yaml's values.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write workflow/schemas/params.schema.yaml and docs/params.md")
    mode.add_argument("--check", action="store_true", help="exit 1 naming what drifted")
    parser.add_argument("--root", default=str(params_mod.REPO_ROOT), help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_generated(args.root)
        print(f"wrote {', '.join(changed)}" if changed else "up to date")
    problems = check_generated(args.root)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
