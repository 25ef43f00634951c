"""The denoiser of stage `unet`: architecture (diffusers' U-Nets), noise schedule, and the objective.

Two modes (`unet.mode`):
* `latent-conditional`: `UNet2DConditionModel` on the cached VAE latents (data/latents), cross-attending to
  the frozen CLIP text encoder's last hidden states, exactly the tensors StableDiffusionPipeline.encode_prompt
  computes (cached per caption by the latents stage). Caption dropout (for classifier-free guidance) swaps a
  row's caption index for the empty prompt's, drawn from the loop's named generator 'dropout'.
* `pixel-unconditional`: `UNet2DModel` on the export's pixels in [-1, 1]: a DDPMPipeline, cheap smoke builds.

The objective gets its noise and timesteps drawn from the loop's named generators ('noise', 'timesteps') and
returns the loss: prediction type epsilon or v (`unet.noise.prediction_type`), optional min-SNR-gamma
loss weighting (Hang et al. 2023; `unet.noise.snr_gamma`, 0 = off). Attention runs through PyTorch SDPA
(diffusers' default), or xformers with params.yaml `compute.attention: xformers` (GPU, not deterministic).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel,
                       UNet2DModel)
from diffusers.training_utils import compute_snr

from pdd.core.config import as_dict
from pdd.core.determinism import seed_everything, use_attention
from pdd.core.hashing import hash_json, hash_path
from pdd.core import shards
from pdd.core.errors import PddError
from pdd.train import data, imaging, latents, loop

NONDETERMINISM = [
    "unet: bit-identical weights need the same machine type, torch build, thread count (unet.train.threads) and "
    "number of processes; on GPU also the same GPU model, driver and CUDA/cuDNN, and compute.deterministic "
    "(xformers attention needs it off)",
]
LATENT, PIXEL = "latent-conditional", "pixel-unconditional"


def noise_scheduler(cfg):
    n = cfg.noise
    return DDPMScheduler(num_train_timesteps=n.timesteps, beta_schedule=n.beta_schedule,
                         prediction_type=n.prediction_type, rescale_betas_zero_snr=n.zero_terminal_snr,
                         # trailing: few-step sampling starts at the last training timestep (pure noise),
                         # as "Common Diffusion Noise Schedules and Sample Steps are Flawed" recommends
                         timestep_spacing="trailing", clip_sample=False)


def sampling_scheduler(cfg, kind: str):
    """The scheduler the pipeline ships with, configured from the training schedule."""
    train = noise_scheduler(cfg)
    if kind == "dpm++":
        return DPMSolverMultistepScheduler.from_config(train.config, algorithm_type="dpmsolver++", solver_order=2,
                                                       final_sigmas_type="zero" if cfg.noise.zero_terminal_snr else "sigma_min")
    if kind == "ddim":
        return DDIMScheduler.from_config(train.config)
    return DDPMScheduler.from_config(train.config)


def _blocks(cfg, conditional: bool):
    down, up = [], []
    for i, attn in enumerate(cfg.attention):
        if attn:
            down.append("CrossAttnDownBlock2D" if conditional else "AttnDownBlock2D")
            up.append("CrossAttnUpBlock2D" if conditional else "AttnUpBlock2D")
        else:
            down.append("DownBlock2D")
            up.append("UpBlock2D")
    return tuple(down), tuple(reversed(up))


def build_unet(cfg, sample_size: int, in_channels: int, cross_attention_dim: int | None):
    if cfg.mode == LATENT:
        down, up = _blocks(cfg, True)
        return use_attention(UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                                    down_block_types=down, up_block_types=up,
                                    block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                                    cross_attention_dim=cross_attention_dim, attention_head_dim=cfg.attention_head_dim,
                                    norm_num_groups=cfg.norm_num_groups))
    down, up = _blocks(cfg, False)
    return use_attention(UNet2DModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                       down_block_types=down, up_block_types=up, block_out_channels=tuple(cfg.block_out_channels),
                       layers_per_block=cfg.layers_per_block, attention_head_dim=cfg.attention_head_dim,
                       norm_num_groups=cfg.norm_num_groups))


def loss_weights(scheduler, t: torch.Tensor, cfg) -> torch.Tensor | None:
    if not cfg.noise.snr_gamma:
        return None
    snr = compute_snr(scheduler, t)
    clipped = torch.minimum(snr, torch.full_like(snr, cfg.noise.snr_gamma))
    if cfg.noise.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp_min(1e-8)


def draws(rng, x0, scheduler):
    """Noise and timesteps for the rows of x0 from the loop's named generators (loop.Rngs)."""
    return (rng.randn("noise", x0.shape).to(x0.device),
            rng.randint("timesteps", scheduler.config.num_train_timesteps, (x0.shape[0],)).to(x0.device))


def diffusion_loss(model, x0, cond, scheduler, cfg, noise, t) -> torch.Tensor:
    """The objective: x0 noised with `noise` at timesteps `t`, predict epsilon or v, (min-SNR-)weighted MSE."""
    xt = scheduler.add_noise(x0, noise, t)
    target = noise if cfg.noise.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    pred = model(xt, t, encoder_hidden_states=cond).sample if cond is not None else model(xt, t).sample
    mse = F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)
    w = loss_weights(scheduler, t.cpu(), cfg)
    return (mse * w.to(mse.device)).mean() if w is not None else mse.mean()


def check_inputs(cfg, vae_cfg, *, latents_dir=None, export_dir=None) -> dict:
    """What is on disk, before anything is trained (the rules of the params themselves are
    pdd/core/config.py's check, run before the stage starts)."""
    if cfg.mode == LATENT:
        index = latents.read_index(latents_dir)
        if index["latent_shape"][0] != cfg.in_channels:
            raise PddError(f"{latents_dir}: the cached latents have {index['latent_shape'][0]} channels but "
                           f"unet.in_channels={cfg.in_channels}; rebuild latents or fix unet.in_channels")
    else:
        index = shards.read_index(export_dir)
        if cfg.resolution not in index["resolutions"]:
            raise PddError(f"{export_dir}: the export has no {cfg.resolution} px images for unet.resolution (it "
                           f"has {index['resolutions']}); rebuild it (`dvc repro export`)")
    loop.check_config(cfg.train, index["counts"]["train"], "unet.train")
    if cfg.mode == LATENT:
        size, channels, cross = index["latent_shape"][1], index["latent_shape"][0], index["text"]["shape"][-1]
    else:
        size, channels, cross = cfg.resolution, 3, None
    loop.check_memory(lambda: build_unet(cfg, size, channels, cross), cfg.train, "unet",
                      "unet.block_out_channels, unet.layers_per_block or unet.attention_head_dim")
    return index


PREVIEW_ROWS, PREVIEW_STEPS, PREVIEW_GUIDANCE = 8, 20, 3.0   # the val sample grid of each evaluation


def preview_grid(m, rt, cfg, val, states, seed: int, vae, scaling: float):
    """The first PREVIEW_ROWS val rows (top: their images; in latent mode the VAE's decoding of their cached
    latents) above samples drawn for their captions (bottom: DPM-Solver++, PREVIEW_STEPS steps, guidance
    PREVIEW_GUIDANCE against the empty prompt, noise from a generator seeded alike at every evaluation), at 2x."""
    n = min(PREVIEW_ROWS, val.n)
    batch = val.fetch(torch.arange(n))
    x0 = batch["latent"]
    sched = sampling_scheduler(cfg, "dpm++")
    sched.set_timesteps(PREVIEW_STEPS)
    x = (torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)) * sched.init_noise_sigma).to(rt.device)
    cond = None
    if states is not None:   # the empty prompt's states (row 0) first, for classifier-free guidance
        idx = batch["text_idx"]
        cond = torch.cat([states[torch.zeros_like(idx)], states[idx]]).to(rt.device)
    for t in sched.timesteps:
        if cond is None:
            pred = m(sched.scale_model_input(x, t), t).sample
        else:
            uncond, text = m(sched.scale_model_input(torch.cat([x, x]), t), t, encoder_hidden_states=cond).sample.chunk(2)
            pred = uncond + PREVIEW_GUIDANCE * (text - uncond)
        x = sched.step(pred, t, x).prev_sample
    if vae is None:
        return imaging.grid([imaging.to_u8(x0), imaging.to_u8(x)], scale=2)
    vae = vae.to(rt.device)
    return imaging.grid([imaging.to_u8(vae.decode(z.to(rt.device) / scaling).sample) for z in (x0, x)], scale=2)


def train_unet(cfg, seed: int, *, out_dir, ckpt_dir, latents_dir=None, export_dir=None, vae_cfg=None,
               resume: bool = False, progress: bool = True, live_dir=None, **force) -> loop.Trained:
    """Train the U-Net and save it (save_pretrained) into out_dir/unet, and the training noise scheduler's
    config into out_dir/scheduler; returns the metrics, no plots (the loss is in the live log), the loop's Result and the U-Net."""
    index = check_inputs(cfg, vae_cfg, latents_dir=latents_dir, export_dir=export_dir)
    torch.set_num_threads(cfg.train.threads)
    seed_everything(seed)
    scheduler = noise_scheduler(cfg)
    if cfg.mode == LATENT:
        _, states = latents.read_text_states(latents_dir)
        source = latents.split_source(latents_dir, "train", scaling=index["scaling_factor"],
                                      budget_mb=cfg.train.memory_budget_mb, batch_size=cfg.train.batch_size, **force)
        shape = index["latent_shape"]
        model = build_unet(cfg, shape[1], shape[0], states.shape[-1])
        val = latents.split_source(latents_dir, "val", scaling=index["scaling_factor"], budget_mb=10**6, batch_size=1)
        inputs = {"export_or_latents": hash_path(latents_dir)}
    else:
        states = None
        col = shards.image_column(cfg.resolution)

        def prepare(table):
            return {"latent": imaging.to_model(torch.from_numpy(np.array(shards.images_array(table, cfg.resolution),
                                                                         copy=True)))}

        source = data.open_split(export_dir, "train", [col], prepare, budget_mb=cfg.train.memory_budget_mb,
                                 batch_size=cfg.train.batch_size, **force)
        val = data.open_split(export_dir, "val", [col], prepare, budget_mb=10**6)
        model = build_unet(cfg, cfg.resolution, 3, None)
        inputs = {"export_or_latents": hash_path(export_dir)}

    def loss(m, batch, rt):
        x0 = batch["latent"].to(rt.device)
        cond = None
        if states is not None:
            idx = batch["text_idx"]
            drop = rt.rng.rand("dropout", (len(idx),)).cpu() < cfg.caption_dropout
            cond = states[torch.where(drop, torch.zeros_like(idx), idx)].to(rt.device)
        return diffusion_loss(m, x0, cond, scheduler, cfg, *draws(rt.rng, x0, scheduler))

    def evaluate(m, rt):
        """Val loss at fixed noise and timesteps (a generator seeded the same at every evaluation)."""
        if val.n == 0:
            return {}
        g = torch.Generator().manual_seed(seed)
        n = min(val.n, 256)
        batch = val.fetch(torch.arange(n))
        cond = states[batch["text_idx"]] if states is not None else None
        x0 = batch["latent"].to(rt.device)
        noise = torch.randn(x0.shape, generator=g).to(rt.device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=g).to(rt.device)
        return {"val_loss": float(diffusion_loss(m, x0, cond.to(rt.device) if cond is not None else None,
                                                 scheduler, cfg, noise, t))}

    vae = {}

    def preview(m, rt):
        """The val sample grid of each evaluation (the live log's): see preview_grid."""
        if val.n == 0:
            return None
        with torch.random.fork_rng(devices=[]):   # training's global RNG state is left as it was
            if cfg.mode == LATENT and "vae" not in vae:
                vae["vae"] = AutoencoderKL.from_pretrained(Path(latents_dir) / "vae", local_files_only=True).eval()
            return preview_grid(m, rt, cfg, val, states, seed, vae.get("vae"), index.get("scaling_factor", 1.0))

    task = loop.Task("unet", model, source, loss, evaluate=evaluate, preview=preview,
                     items="latents" if cfg.mode == LATENT else "images")
    fingerprint = hash_json({"cfg": as_dict(cfg), "seed": seed, **inputs})
    result = loop.train(task, cfg.train, seed, ckpt_dir, resume=resume, fingerprint=fingerprint, progress=progress,
                         live_dir=live_dir)
    unet = result.model.to("cpu")
    out_dir = Path(out_dir)
    unet.save_pretrained(out_dir / "unet", safe_serialization=True)
    scheduler.save_pretrained(out_dir / "scheduler")
    return loop.trained(result, unet, {"mode": cfg.mode, "steps": result.steps, "train_loss": result.train_history[-1][1],
                                       "train_rows": source.n, "parameters": sum(p.numel() for p in unet.parameters())})
