"""Typed configs: one frozen dataclass per params.yaml section, built once from the validated params.

params.yaml is the single source of every value (the schema requires every key, so these classes carry
no defaults of their own); this module only gives the values types and runs the cross-field checks, all
here, before any stage touches its inputs. Tests and benches write `replace(cfg, steps=20)`.

Bookkeeping, not a build input: nothing here can change an artifact's bytes (see pdd/build/codedeps.py).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, replace  # noqa: F401  (re-exported for callers: config.replace)

from pdd.core.errors import PddError


# ---- shared training settings ---------------------------------------------------------
@dataclass(frozen=True)
class OptimizerCfg:
    kind: str                      # adamw | adam | sgd
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float


@dataclass(frozen=True)
class ScheduleCfg:
    kind: str                      # constant | cosine | linear
    warmup_steps: int
    min_lr_ratio: float            # the schedule's floor, as a fraction of lr


@dataclass(frozen=True)
class EmaCfg:
    decay: float                   # 0 turns EMA off; else the EMA of the weights is evaluated and shipped
    warmup: bool                   # diffusers' EMA warm-up (decay ramps up over the first steps)


@dataclass(frozen=True)
class TrainCfg:
    steps: int
    batch_size: int                # per process per micro-step
    grad_accum: int
    max_grad_norm: float           # 0: no clipping
    mixed_precision: str           # no | bf16 | fp16
    eval_every: int
    checkpoint_every: int
    threads: int                   # torch CPU threads
    memory_budget_mb: int          # training data above this is streamed from the shards, not preloaded
    optimizer: OptimizerCfg
    schedule: ScheduleCfg
    ema: EmaCfg


# ---- sections -------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotCfg:
    name: str
    path: str


@dataclass(frozen=True)
class AuditCfg:
    allowed_licences: tuple[str, ...]


@dataclass(frozen=True)
class CaptionCfg:
    template: str
    label_licences: tuple[str, ...]
    fallback: str
    max_parts: int = 0


@dataclass(frozen=True)
class ExportCfg:
    resolutions: tuple[int, ...]
    resample: str
    fit: str                       # crop | pad
    background: tuple[int, int, int]
    val_fraction: float
    caption: CaptionCfg
    shard_rows: int
    threads: int


@dataclass(frozen=True)
class TokenizerCfg:
    vocab_size: int
    min_frequency: int
    max_length: int


@dataclass(frozen=True)
class TowerCfg:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    patch_size: int = 0            # vision tower only


@dataclass(frozen=True)
class ClipCfg:
    image_size: int
    text: TowerCfg
    vision: TowerCfg
    projection_dim: int
    logit_scale_init: float
    train: TrainCfg


@dataclass(frozen=True)
class GanCfg:
    weight: float                  # 0: no discriminator
    start_step: int
    channels: int
    layers: int


@dataclass(frozen=True)
class VaeCfg:
    resolution: int
    latent_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    norm_num_groups: int
    mid_attention: bool
    loss: str                      # l1 | l2
    kl_weight: float
    gan: GanCfg
    preview_images: int
    train: TrainCfg


@dataclass(frozen=True)
class LatentsCfg:
    batch_size: int
    threads: int


@dataclass(frozen=True)
class NoiseCfg:
    timesteps: int
    beta_schedule: str             # linear | scaled_linear | squaredcos_cap_v2
    prediction_type: str           # epsilon | v_prediction
    snr_gamma: float               # min-SNR-gamma loss weighting; 0: off
    zero_terminal_snr: bool


@dataclass(frozen=True)
class UnetCfg:
    mode: str                      # latent-conditional | pixel-unconditional
    resolution: int                # pixel mode: the export resolution it trains on
    in_channels: int
    block_out_channels: tuple[int, ...]
    attention: tuple[bool, ...]    # per block: (cross-)attention on
    layers_per_block: int
    attention_head_dim: int
    norm_num_groups: int
    caption_dropout: float
    noise: NoiseCfg
    train: TrainCfg


@dataclass(frozen=True)
class QualityCfg:
    n_samples: int
    prompts_from_val: bool         # quality samples use val captions (else the sample prompts, cycled)


@dataclass(frozen=True)
class SampleCfg:
    prompts: tuple[str, ...]
    images_per_prompt: int
    steps: int
    guidance_scale: float
    scheduler: str                 # dpm++ | ddim | ddpm
    threads: int
    quality: QualityCfg


@dataclass(frozen=True)
class MemorizationCfg:
    n_samples: int                 # generated samples checked against the training set
    threshold: float               # nearest-train cosine in our CLIP image space at or above which a sample is flagged
    pixel_size: int                # images are shrunk to this many px for the pixel-space neighbours
    show: int                      # flagged or closest samples drawn beside their nearest training image


@dataclass(frozen=True)
class ComputeCfg:
    deterministic: bool            # deterministic algorithms, cuDNN deterministic, TF32 off (pdd.core.determinism)
    attention: str                 # sdpa | xformers


SECTIONS: dict[str, type] = {
    "snapshot": SnapshotCfg, "audit": AuditCfg, "export": ExportCfg, "tokenizer": TokenizerCfg, "clip": ClipCfg,
    "vae": VaeCfg, "latents": LatentsCfg, "unet": UnetCfg, "sample": SampleCfg, "memorization": MemorizationCfg,
    "compute": ComputeCfg,
}


# ---- building -------------------------------------------------------------------------
def build(cls, data, where: str):
    """Turn a validated mapping into cls (nested dataclasses, tuples for lists)."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = build(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING:
                raise PddError(f"params.yaml: {where}.{f.name}: missing required key")
        return cls(**kwargs)
    origin = typing.get_origin(cls)
    if origin is tuple:
        args = typing.get_args(cls)
        item = args[0]
        return tuple(build(item, v, where) for v in data)
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


def section(params: dict, name: str):
    return build(SECTIONS[name], params[name], name)


# ---- cross-field checks: all of them, in one place ---------------------------------------
def _fail(key: str, why: str):
    raise PddError(f"params.yaml: {key}: {why}")


def check_train(t: TrainCfg, where: str) -> None:
    if t.schedule.warmup_steps > t.steps:
        _fail(f"{where}.schedule.warmup_steps", f"{t.schedule.warmup_steps} is more than {where}.steps={t.steps}")
    if t.eval_every > t.steps:
        _fail(f"{where}.eval_every", f"{t.eval_every} is more than {where}.steps={t.steps} (0 turns evaluation off)")


def check(params: dict, only: tuple | None = None) -> dict:
    """Build every known section and run the checks that span fields or sections; returns {name: cfg}.
    With `only` (a stage's params sections), run just the checks of those sections: a stage is not
    refused for a problem in a section it does not read."""
    cfgs = {name: section(params, name) for name in SECTIONS if name in params}

    def want(name):
        return cfgs.get(name) if (only is None or name in only) else None

    ex, clip = cfgs.get("export"), want("clip")
    if clip is not None:
        check_train(clip.train, "clip.train")
        if ex is not None and clip.image_size not in ex.resolutions:
            _fail("clip.image_size", f"{clip.image_size} is not an exported resolution (export.resolutions is "
                                     f"{list(ex.resolutions)})")
        if clip.image_size % clip.vision.patch_size:
            _fail("clip.vision.patch_size", f"{clip.vision.patch_size} does not divide clip.image_size={clip.image_size}")
        for tower in ("text", "vision"):
            t = getattr(clip, tower)
            if t.hidden_size % t.num_heads:
                _fail(f"clip.{tower}.hidden_size", f"{t.hidden_size} is not a multiple of clip.{tower}.num_heads={t.num_heads}")
    vae, unet, sample = want("vae"), want("unet"), want("sample")
    if vae is not None:
        check_train(vae.train, "vae.train")
        from pdd.train.vae import check_config as check_vae

        check_vae(vae)
        if ex is not None and vae.resolution not in ex.resolutions:
            _fail("vae.resolution", f"{vae.resolution} is not an exported resolution (export.resolutions is "
                                    f"{list(ex.resolutions)})")
    both_vae, both_unet = cfgs.get("vae"), cfgs.get("unet")
    if (vae is not None or unet is not None) and both_vae is not None and both_unet is not None \
            and both_unet.mode == "latent-conditional" and both_unet.in_channels != both_vae.latent_channels:
        _fail("unet.in_channels", f"{both_unet.in_channels} does not match vae.latent_channels={both_vae.latent_channels}: "
                                  "the U-Net denoises the VAE's latents")
    if unet is not None:
        check_train(unet.train, "unet.train")
        from pdd.train.unet import check_config as check_unet

        check_unet(unet, cfgs.get("vae"))
        if unet.mode == "pixel-unconditional" and ex is not None and unet.resolution not in ex.resolutions:
            _fail("unet.resolution", f"{unet.resolution} is not an exported resolution (export.resolutions is "
                                     f"{list(ex.resolutions)})")
    compute = want("compute")
    if compute is not None and compute.attention == "xformers" and compute.deterministic:
        _fail("compute.attention", "xformers is not deterministic; set compute.deterministic: false to use it, "
                                   "or keep attention: sdpa")
    if only is None and "resources" in params:   # no stage reads resources: checked for the whole file only
        from pdd.build import cluster

        cluster.check_params(params)
    if sample is not None:
        if sample.guidance_scale < 1:
            _fail("sample.guidance_scale", f"{sample.guidance_scale} is below 1 (1 means no guidance)")
        if not sample.prompts:
            _fail("sample.prompts", "give at least one prompt")
    return cfgs


def patch(cfg, update: dict):
    """cfg with nested values replaced: patch(clip, {"train": {"steps": 20}}) (for tests and benches)."""
    hints = typing.get_type_hints(type(cfg))
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
    import copy

    from pdd.core import params as params_mod

    raw = params_mod.load(path)
    if update:
        raw = _deep_update(copy.deepcopy(raw), update)
        params_mod.validate(raw, path)
    return check(raw)


def _deep_update(base: dict, update: dict) -> dict:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base
