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

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pdd.core import config  # noqa: E402
from pdd.core import determinism  # noqa: E402
from pdd.core.determinism import seed_everything  # noqa: E402
from pdd.train import clip, latents, pipeline, synthetic, unet, vae  # noqa: E402
from pdd.train import tokenizer as tk  # noqa: E402

WARMUP = 5


def configs(params: Path, steps: int):
    cfgs = config.load(params)
    determinism.apply(cfgs["compute"])   # params.yaml compute: the stages' kernels, for both sides
    u = config.patch(cfgs["unet"], {"train": {"steps": steps, "eval_every": 0, "checkpoint_every": 0,
                                              "schedule": {"warmup_steps": min(WARMUP, steps)}}})
    return u, cfgs


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
    m = unet.train_unet(cfg, 1, out_dir=root / "unet-out", ckpt_dir=root / "ck", latents_dir=root / "latents",
                        export_dir=root / "export", vae_cfg=vae_cfg, progress=False)
    r = m.result
    timed = r.step_seconds[WARMUP:]
    return len(timed) * r.items_per_step / sum(timed)


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
        from diffusers import DDPMScheduler

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
    o = cfg.train.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    ema = None
    if cfg.train.ema.decay > 0:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(model.parameters(), decay=cfg.train.ema.decay, use_ema_warmup=cfg.train.ema.warmup)
    obj = Bare(cfg)
    times = []
    for _ in range(cfg.train.steps):
        t0 = time.perf_counter()
        loss = obj.loss(model, x0, text_idx, states)
        loss.backward()
        if cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(model.parameters())
        times.append(time.perf_counter() - t0)
    timed = times[WARMUP:]
    return len(timed) * len(x0) / sum(timed)


def flops_per_image(model, x0, text_idx, states, cfg) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        Bare(cfg).loss(model, x0, text_idx, states).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x0)


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per round (the first 5 are not timed)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rows", type=int, default=256, help="train rows of the synthetic export")
    p.add_argument("--sample-images", type=int, default=0,
                   help="images per sampling round (default: sample.prompts x images_per_prompt)")
    p.add_argument("--sample-steps", type=int, default=0, help="denoising steps (default: sample.steps)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    a = p.parse_args(argv)
    if not a.params.is_file():
        print(f"train_unet bench: {a.params} not found", file=sys.stderr)
        return 2
    if a.steps <= WARMUP:
        print(f"train_unet bench: --steps must be more than the {WARMUP} warm-up steps", file=sys.stderr)
        return 2
    cfg, cfgs = configs(a.params, a.steps)
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

    s, b = max(stage), max(bare)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: UNet2DConditionModel {n_params / 1e6:.2f} M params, latent {list(x0.shape[1:])}, "
          f"blocks {list(cfg.block_out_channels)}, text states {list(states.shape[1:])}, {cfg.noise.prediction_type}, "
          f"min-SNR {cfg.noise.snr_gamma:g}, EMA {cfg.train.ema.decay:g}, batch {cfg.train.batch_size}, "
          f"{torch.get_num_threads()} threads, device cpu")
    print(f"train FLOPs per image (fwd+bwd): {fpi / 1e6:.1f} MFLOP")
    print(f"stage loop: {s:8.1f} images/s  ({s * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in stage]}")
    print(f"bare loop:  {b:8.1f} images/s  ({b * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in bare]}")
    ratio = s / b
    print(f"train ratio stage/bare: {ratio:.3f} (goal >= 0.95){'' if ratio >= 0.95 else '  BELOW GOAL'}")
    print(f"median-based ratio: {statistics.median(stage) / statistics.median(bare):.3f}")
    gs, ss, sb, sbt = scfg.guidance_scale, max(s_stage), max(s_bare), max(s_batched)
    print(f"sampling ({n_img} images, {sample_steps} steps, {scfg.scheduler}, guidance {gs:g}):")
    print(f"  pipeline.generate:        {ss:8.3f} images/s   rounds {[round(v, 3) for v in s_stage]}")
    print(f"  bare pipe(prompt) each:   {sb:8.3f} images/s   rounds {[round(v, 3) for v in s_bare]}")
    print(f"  one batched pipe(prompts): {sbt:7.3f} images/s   rounds {[round(v, 3) for v in s_batched]}")
    print(f"sampling ratio generate/bare: {ss / sb:.3f}; generate/batched: {ss / sbt:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
