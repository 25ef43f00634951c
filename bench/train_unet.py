"""Bench: training images/s of the `unet` stage's loop (latent-conditional), and sampling images/s of
pdd.train.pipeline.generate, each beside a bare loop, in one run.

Inputs are made for the bench: a synthetic export at vae.resolution, a tokenizer and an untrained CLIP and VAE
of the params.yaml sizes, and data/latents built from them by pdd.train.latents.build (the stage's own format:
latent shards, per-caption text states, the VAE with the data's scaling factor). Untrained weights cost the
same FLOPs as trained ones.

Training. The stage side is pdd.train.unet.train_unet (the shared accelerate loop, seeded data order from the
latent shards, caption dropout by index swap, named generators, EMA as in params, metric history) with eval and
checkpoints off, at the params.yaml unet size and noise settings. The bare side is the same
UNet2DConditionModel config and seed, one preloaded batch of scaled latents and their text states, caption
dropout, DDPMScheduler.add_noise at random timesteps, the v-prediction (or epsilon) target and min-SNR-gamma
weighting as params say, AdamW with the stage's hyper-parameters, gradient clipping, and diffusers' EMAModel
when unet.train.ema.decay > 0 (the stage does that work too). Steps after a warm-up are timed; the two are
interleaved and each side's best round is kept. Prints training FLOPs per image (forward + backward, torch's
FlopCounterMode) and the FLOP/s both achieve.

Sampling. The trained U-Net is assembled with pdd.train.pipeline.assemble (StableDiffusionPipeline, the
params' sampling scheduler). The stage side is pipeline.generate (one seeded generator and one pipeline call
per image); the bare side is `pipe(prompt, num_inference_steps=..., guidance_scale=...)` per image on the same
pipeline object. For reference it also times one batched call with every prompt at once.

    python bench/train_unet.py [--steps 20] [--rounds 3] [--sample-images 16] [--sample-steps 25]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common  # the set-up: offline, the repository on sys.path (first)
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from pdd.core.determinism import seed_everything
from pdd.train import clip, latents, pipeline, synthetic, unet, vae
from pdd.train import tokenizer as tk


def make_inputs(root: Path, cfgs, n_train: int) -> None:
    """export -> tokenizer -> untrained CLIP and VAE (params sizes) -> latents.build, all under root."""
    vcfg = cfgs["vae"]
    synthetic.make_synthetic(root / "export", n_train=n_train, n_val=8, resolutions=[vcfg.resolution])
    tk.train_tokenizer(root / "export", root / "tok", cfgs["tokenizer"])
    tokenizer, _ = clip.load_tokenizer(root / "tok")
    seed_everything(1)
    clip.build_model(cfgs["clip"], tokenizer).save_pretrained(root / "clip", safe_serialization=True)
    vae.build_vae(vcfg).save_pretrained(root / "vae", safe_serialization=True)
    (root / "latents").mkdir()
    latents.build(root / "export", root / "vae", root / "clip", root / "tok", root / "latents", cfgs["latents"],
                  vcfg.resolution)


# ---- training -------------------------------------------------------------------------
def stage_rate(root: Path, cfg, vae_cfg) -> float:
    return _common.stage_rate(unet.train_unet(cfg, 1, out_dir=root / "unet-out", ckpt_dir=root / "ck",
                                              latents_dir=root / "latents", export_dir=root / "export",
                                              vae_cfg=vae_cfg, progress=False))


def bare_setup(root: Path, cfg):
    index = latents.read_index(root / "latents")
    _, states = latents.read_text_states(root / "latents")
    src = latents.split_source(root / "latents", "train", scaling=index["scaling_factor"], budget_mb=10**6,
                               batch_size=cfg.train.batch_size)
    batch = src.fetch(torch.arange(cfg.train.batch_size))
    shape = index["latent_shape"]
    seed_everything(1)
    model = unet.build_unet(cfg, shape[1], shape[0], states.shape[-1]).train()
    return model, batch["latent"], batch["text_idx"], states


class Bare:
    """The bare objective, written out (no project code): noise, v/epsilon target, min-SNR weights."""

    def __init__(self, cfg):
        n = cfg.noise
        self.cfg = cfg
        self.sched = DDPMScheduler(num_train_timesteps=n.timesteps, beta_schedule=n.beta_schedule,
                                   prediction_type=n.prediction_type, rescale_betas_zero_snr=n.zero_terminal_snr,
                                   clip_sample=False)
        a = self.sched.alphas_cumprod
        self.snr = a / (1 - a)
        self.g = torch.Generator().manual_seed(1)

    def loss(self, model, x0, text_idx, states):
        cfg, b = self.cfg, len(x0)
        drop = torch.rand(b, generator=self.g) < cfg.caption_dropout
        cond = states[torch.where(drop, torch.zeros_like(text_idx), text_idx)]
        noise = torch.randn(x0.shape, generator=self.g)
        t = torch.randint(0, cfg.noise.timesteps, (b,), generator=self.g)
        xt = self.sched.add_noise(x0, noise, t)
        target = noise if cfg.noise.prediction_type == "epsilon" else self.sched.get_velocity(x0, noise, t)
        pred = model(xt, t, encoder_hidden_states=cond).sample
        mse = F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
        if cfg.noise.snr_gamma:
            snr = self.snr[t]
            w = torch.clamp(snr, max=cfg.noise.snr_gamma)
            w = w / (snr + 1) if cfg.noise.prediction_type == "v_prediction" else w / snr.clamp_min(1e-8)
            mse = mse * w
        return mse.mean()


def bare_rate(model, x0, text_idx, states, cfg) -> float:
    ema = None
    if cfg.train.ema.decay > 0:
        ema = EMAModel(model.parameters(), decay=cfg.train.ema.decay, use_ema_warmup=cfg.train.ema.warmup)
    obj = Bare(cfg)
    return _common.bare_rate(model, cfg, lambda: obj.loss(model, x0, text_idx, states), len(x0),
                             after_step=(lambda: ema.step(model.parameters())) if ema is not None else None)


def flops_per_image(model, x0, text_idx, states, cfg) -> float:
    obj = Bare(cfg)
    return _common.flops_per_item(model, lambda: obj.loss(model, x0, text_idx, states), len(x0))


# ---- sampling -------------------------------------------------------------------------
def sample_rates(root: Path, scfg, prompts: list[str], steps: int, rounds: int):
    pipe = pipeline.assemble(unet.LATENT, unet_dir=root / "unet-out", scheduler=scfg.scheduler,
                             latents_dir=root / "latents", clip_dir=root / "clip", tokenizer_dir=root / "tok")
    pipe.set_progress_bar_config(disable=True)
    gs = scfg.guidance_scale
    pipe(prompts[0], num_inference_steps=2, guidance_scale=gs)  # warm-up
    stage, bare, batched = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        pipeline.generate(pipe, prompts, seed=1, steps=steps, guidance_scale=gs)
        stage.append(len(prompts) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            pipe(p, num_inference_steps=steps, guidance_scale=gs, generator=torch.Generator().manual_seed(i))
        bare.append(len(prompts) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, guidance_scale=gs,
             generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))])
        batched.append(len(prompts) / (time.perf_counter() - t0))
    return stage, bare, batched


def main(argv=None) -> int:
    a = _common.parse(
        __doc__, "train_unet", argv,
        (("--rows",), dict(type=int, default=256, help="train rows of the synthetic export")),
        (("--sample-images",), dict(type=int, default=0,
                                    help="images per sampling round (default: sample.prompts x images_per_prompt)")),
        (("--sample-steps",), dict(type=int, default=0, help="denoising steps (default: sample.steps)")))
    if a is None:
        return 2
    cfg, cfgs = _common.stage_configs(a.params, "unet", a.steps)
    if cfg.mode != unet.LATENT:
        print(f"train_unet bench: unet.mode is {cfg.mode!r}; this bench measures {unet.LATENT}", file=sys.stderr)
        return 2
    scfg = cfgs["sample"]
    n_img = a.sample_images or len(scfg.prompts) * scfg.images_per_prompt
    prompts = [scfg.prompts[i % len(scfg.prompts)] for i in range(n_img)]
    sample_steps = a.sample_steps or scfg.steps
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_inputs(root, cfgs, max(a.rows, cfg.train.batch_size))
        torch.set_num_threads(cfg.train.threads)
        model, x0, text_idx, states = bare_setup(root, cfg)
        fpi = flops_per_image(model, x0, text_idx, states, cfg)
        stage, bare = [], []
        for _ in range(a.rounds):
            stage.append(stage_rate(root, cfg, cfgs["vae"]))
            bare.append(bare_rate(model, x0, text_idx, states, cfg))
        torch.set_num_threads(scfg.threads)
        s_stage, s_bare, s_batched = sample_rates(root, scfg, prompts, sample_steps, a.rounds)

    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: UNet2DConditionModel {n_params / 1e6:.2f} M params, latent {list(x0.shape[1:])}, "
          f"blocks {list(cfg.block_out_channels)}, text states {list(states.shape[1:])}, {cfg.noise.prediction_type}, "
          f"min-SNR {cfg.noise.snr_gamma:g}, EMA {cfg.train.ema.decay:g}, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads, device cpu")
    _common.print_train(stage, bare, fpi)
    gs, ss, sb, sbt = scfg.guidance_scale, max(s_stage), max(s_bare), max(s_batched)
    _common.print_rates(f"sampling ({n_img} images, {sample_steps} steps, {scfg.scheduler}, guidance {gs:g}):",
                        [("pipeline.generate", s_stage, 3), ("bare pipe(prompt) each", s_bare, 3),
                         ("one batched pipe(prompts)", s_batched, 3)])
    print(f"sampling ratio generate/bare: {ss / sb:.3f}; generate/batched: {ss / sbt:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
