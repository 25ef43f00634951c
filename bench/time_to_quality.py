"""Bench: time to sample quality of our pixel-space diffusion recipe beside the recipe of diffusers'
examples/unconditional_image_generation/train_unconditional.py, same U-Net, same data, same wall-clock budget.

Both train the same UNet2DModel (the params.yaml unet size: block_out_channels, attention, layers_per_block, in
pixel-unconditional mode) at a small pixel size (--resolution, an exported one) on the train split of an export:
data/export when it is built, else a synthetic export (pdd.train.synthetic), or --export DIR.

(a) ours: what stage `unet` does in pixel-unconditional mode, from pdd/train/unet.py's own pieces (build_unet,
    noise_scheduler, diffusion_loss, the export data source) run by pdd.train.loop.train: the params' noise
    settings (unet.noise: timesteps, beta schedule, prediction type, min-SNR gamma), optimizer, lr schedule,
    batch size, gradient clipping and EMA (unet.train). train_unet itself evaluates only a val loss and has no
    hook for another evaluation, so the bench builds the same loop.Task with its own evaluate callback.
(b) the diffusers example's defaults: DDPMScheduler(num_train_timesteps=1000) (linear betas), epsilon
    prediction, plain MSE, AdamW lr 1e-4, betas (0.95, 0.999), weight decay 1e-6, eps 1e-8, cosine schedule with
    500 warm-up steps, batch 16, random horizontal flips, gradient clipping at 1.0, EMAModel (max decay 0.9999,
    warm-up inv_gamma 1, power 3/4), written as the example writes its loop. Both recipes cap their lr warm-up at
    half their steps (short budgets).

Each trains for --budget seconds of training time (evaluation excluded): the lr schedules need a step count, so a
few steps of each are timed first and the total is budget x that rate (ours then runs that many steps through
loop.train; the example's loop also stops at the budget). At --checkpoints evenly spaced points each model's EMA
weights sample --samples images (DDPMPipeline with the params' sample.scheduler at sample.steps, configured from
each recipe's own training schedule; --example-ddpm samples the example with its own 1000-step DDPM instead) and
the samples are scored by pdd.train.quality.swd (multi-scale sliced Wasserstein distance on Laplacian pyramids,
x1e3, lower is better; no CLIP needed) against the val split. Prints the metric at every checkpoint for both,
the floor (train vs val) and the ceiling (noise vs val), and the training time our recipe needs to reach the
example's final SWD, as a ratio of the example's training time (goal <= 0.5). The recipes run one after the
other: on a machine shared with other jobs, `--clock cpu` counts the process's CPU seconds (all threads)
instead of wall-clock seconds.

    python bench/time_to_quality.py [--budget 300] [--resolution 32] [--checkpoints 6] [--samples 64]
                                    [--export DIR] [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pdd.core import config  # noqa: E402
from pdd.core import determinism  # noqa: E402
from pdd.core.determinism import seed_everything  # noqa: E402
from pdd.core import shards  # noqa: E402
from pdd.train import data, imaging, loop, quality, synthetic, unet, vae  # noqa: E402

SEED = 1
CLOCK = time.perf_counter   # --clock cpu: time.process_time (CPU seconds of all threads; steadier on a shared machine)
CALIBRATE = 6          # steps timed (after one untimed) to turn the budget into a step count

# the example's argparse defaults (huggingface/diffusers, examples/unconditional_image_generation)
EXAMPLE = {"lr": 1e-4, "betas": (0.95, 0.999), "weight_decay": 1e-6, "eps": 1e-8, "warmup": 500, "batch": 16,
           "timesteps": 1000, "ema_max_decay": 0.9999, "ema_inv_gamma": 1.0, "ema_power": 0.75, "max_grad_norm": 1.0,
           "inference_steps": 1000}


def our_cfg(params: Path, resolution: int):
    cfgs = config.load(params)
    determinism.apply(cfgs["compute"])   # params.yaml compute: the stages' kernels, for both sides
    u = config.patch(cfgs["unet"], {"mode": unet.PIXEL, "in_channels": 3, "resolution": resolution,
                                    "train": {"eval_every": 0, "checkpoint_every": 0}})
    return u, cfgs["sample"]


def example_cfg(ours):
    """The example's noise settings in our config type (for building its sampling scheduler)."""
    return config.patch(ours, {"noise": {"timesteps": EXAMPLE["timesteps"], "beta_schedule": "linear",
                                         "prediction_type": "epsilon", "snr_gamma": 0.0, "zero_terminal_snr": False}})


# ---- scoring --------------------------------------------------------------------------
class Scorer:
    def __init__(self, val_u8, train_u8, n: int, steps: int, seed: int = SEED):
        self.val, self.n, self.steps, self.seed = val_u8, n, steps, seed
        self.floor = quality.swd(train_u8[:max(n, 2)], val_u8, seed)
        self.ceiling = quality.swd(quality.noise_like(val_u8, max(n, 2), seed), val_u8, seed)

    @torch.no_grad()
    def __call__(self, model, scheduler, steps: int | None = None) -> float:
        from diffusers import DDPMPipeline

        pipe = DDPMPipeline(unet=model, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        out = []
        for s in range(0, self.n, 16):
            gens = [torch.Generator().manual_seed(self.seed * 100003 + j) for j in range(s, min(self.n, s + 16))]
            img = pipe(batch_size=len(gens), generator=gens, num_inference_steps=steps or self.steps,
                       output_type="np").images
            out.append(torch.from_numpy((img * 255).round().clip(0, 255).astype(np.uint8)))
        return quality.swd(torch.cat(out), self.val, self.seed)


# ---- (a) ours: stage unet's pixel-unconditional objective through loop.train ------------
def our_task(export_dir: Path, cfg, on_eval=None):
    col = shards.image_column(cfg.resolution)

    def prepare(table):
        return {"latent": imaging.to_model(torch.from_numpy(np.array(shards.images_array(table, cfg.resolution),
                                                                     copy=True)))}

    seed_everything(SEED)
    scheduler = unet.noise_scheduler(cfg)
    source = data.open_split(export_dir, "train", [col], prepare, budget_mb=cfg.train.memory_budget_mb,
                             batch_size=cfg.train.batch_size)
    model = unet.build_unet(cfg, cfg.resolution, 3, None)

    def loss(m, batch, rt):
        x0 = batch["latent"].to(rt.device)
        return unet.diffusion_loss(m, x0, None, scheduler, cfg, *unet.draws(rt.rng, x0, scheduler))

    return loop.Task("unet", model, source, loss, evaluate=on_eval), scheduler


def calibrate_ours(export_dir: Path, cfg, ckpt: Path) -> float:
    task, _ = our_task(export_dir, cfg)
    inner, stamps = task.loss, []

    def stamped(m, batch, rt):
        stamps.append(CLOCK())
        return inner(m, batch, rt)

    task.loss = stamped
    c = config.patch(cfg.train, {"steps": CALIBRATE + 1, "schedule": {"warmup_steps": 1}})
    loop.train(task, c, SEED, ckpt, progress=False)
    return (stamps[-1] - stamps[1]) / (len(stamps) - 2)     # loss call to loss call, the first step untimed


def run_ours(export_dir: Path, cfg, steps: int, checkpoints: int, scorer: Scorer, sample_sched, ckpt: Path):
    curve, clock = [], {"first": None, "eval": 0.0}
    every = max(1, steps // checkpoints)

    def evaluate(m, rt):
        t0 = CLOCK()
        trained = t0 - clock["first"] - clock["eval"]
        swd = scorer(m, sample_sched)
        curve.append((rt.step, trained, swd))
        print(f"  ours     step {rt.step:6d}  train {trained:7.1f} s  SWD {swd:7.2f}", flush=True)
        clock["eval"] += CLOCK() - t0
        return {"swd": swd}

    task, _ = our_task(export_dir, cfg, evaluate)
    inner = task.loss

    def timed_loss(m, batch, rt):
        if clock["first"] is None:
            clock["first"] = CLOCK()
        return inner(m, batch, rt)

    task.loss = timed_loss
    warmup = min(cfg.train.schedule.warmup_steps, steps // 2)
    c = config.patch(cfg.train, {"steps": steps, "eval_every": every, "schedule": {"warmup_steps": warmup}})
    loop.train(task, c, SEED, ckpt, progress=False)
    return curve


# ---- (b) the diffusers example's recipe, as its loop is written ------------------------
class Example:
    def __init__(self, cfg, train_u8, total_steps: int):
        from diffusers import DDPMScheduler, UNet2DModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        seed_everything(SEED)
        self.model = unet.build_unet(cfg, cfg.resolution, 3, None).train()
        assert isinstance(self.model, UNet2DModel)
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=EXAMPLE["timesteps"])
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=EXAMPLE["lr"], betas=EXAMPLE["betas"],
                                     weight_decay=EXAMPLE["weight_decay"], eps=EXAMPLE["eps"])
        self.lr = get_scheduler("cosine", optimizer=self.opt, num_warmup_steps=min(EXAMPLE["warmup"], total_steps // 2),
                                num_training_steps=total_steps)
        self.ema = EMAModel(self.model.parameters(), decay=EXAMPLE["ema_max_decay"], use_ema_warmup=True,
                            inv_gamma=EXAMPLE["ema_inv_gamma"], power=EXAMPLE["ema_power"])
        self.images = train_u8
        self.g = torch.Generator().manual_seed(SEED)
        self.order, self.pos = torch.randperm(len(train_u8), generator=self.g), 0
        self.steps = 0

    def batch(self) -> torch.Tensor:
        b = EXAMPLE["batch"]
        if self.pos + b > len(self.order):
            self.order, self.pos = torch.randperm(len(self.images), generator=self.g), 0
        x = imaging.to_model(self.images[self.order[self.pos:self.pos + b]])
        self.pos += b
        flip = torch.rand(len(x), generator=self.g) < 0.5            # RandomHorizontalFlip
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def step(self) -> None:
        clean = self.batch()
        noise = torch.randn(clean.shape, generator=self.g)
        t = torch.randint(0, EXAMPLE["timesteps"], (len(clean),), generator=self.g).long()
        noisy = self.noise_scheduler.add_noise(clean, noise, t)
        loss = F.mse_loss(self.model(noisy, t).sample.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), EXAMPLE["max_grad_norm"])
        self.opt.step()
        self.lr.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.step(self.model.parameters())
        self.steps += 1

    def ema_model(self):
        """The EMA weights swapped in (call restore() after)."""
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        self.model.eval()
        return self.model

    def restore(self):
        self.ema.restore(self.model.parameters())
        self.model.train()


def calibrate_example(cfg, train_u8) -> float:
    ex = Example(cfg, train_u8, 1000)
    ex.step()
    t0 = CLOCK()
    for _ in range(CALIBRATE):
        ex.step()
    return (CLOCK() - t0) / CALIBRATE


def run_example(cfg, train_u8, steps: int, budget: float, checkpoints: int, scorer: Scorer, sample_sched,
                sample_steps: int | None):
    ex = Example(cfg, train_u8, steps)
    curve, trained, marks = [], 0.0, [budget * (k + 1) / checkpoints for k in range(checkpoints)]
    while marks:
        t0 = CLOCK()
        ex.step()
        trained += CLOCK() - t0
        if trained >= marks[0] or ex.steps >= steps:
            marks = [m for m in marks if m > trained] if ex.steps < steps else []
            swd = scorer(ex.ema_model(), sample_sched, sample_steps)
            ex.restore()
            curve.append((ex.steps, trained, swd))
            print(f"  example  step {ex.steps:6d}  train {trained:7.1f} s  SWD {swd:7.2f}", flush=True)
    return curve


def time_to_reach(curve, target: float) -> float | None:
    for _, t, swd in curve:
        if swd <= target:
            return t
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per recipe (evaluation excluded)")
    p.add_argument("--resolution", type=int, default=32, help="pixel size (an exported resolution)")
    p.add_argument("--checkpoints", type=int, default=6, help="evaluations per recipe, evenly spaced")
    p.add_argument("--samples", type=int, default=64, help="images sampled per evaluation")
    p.add_argument("--sample-steps", type=int, default=0, help="sampling steps (default: sample.steps)")
    p.add_argument("--example-ddpm", action="store_true",
                   help="sample the example with its own DDPM sampler at 1000 steps (slow on CPU)")
    p.add_argument("--export", type=Path, default=None,
                   help="an export folder (default: data/export if built, else a synthetic export)")
    p.add_argument("--synthetic-rows", type=int, default=1024)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what the budget counts: wall-clock seconds, or CPU seconds of the process (all threads)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    a = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    if not a.params.is_file():
        print(f"time_to_quality bench: {a.params} not found", file=sys.stderr)
        return 2
    if a.export is not None and not (a.export / "index.json").is_file():
        print(f"time_to_quality bench: {a.export / 'index.json'} not found (not an export folder)", file=sys.stderr)
        return 2
    cfg, scfg = our_cfg(a.params, a.resolution)
    ex_cfg = example_cfg(cfg)
    torch.set_num_threads(cfg.train.threads)
    sample_steps = a.sample_steps or scfg.steps

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export = a.export or (ROOT / "data" / "export")
        if not (export / "index.json").is_file():
            export = tmp / "export"
            synthetic.make_synthetic(export, n_train=a.synthetic_rows, resolutions=[a.resolution])
        index = shards.read_index(export)
        if a.resolution not in index["resolutions"]:
            print(f"time_to_quality bench: {export} has no {a.resolution} px images (it has {index['resolutions']})",
                  file=sys.stderr)
            return 2
        train_u8 = vae.load_images(export, "train", a.resolution)
        val_u8 = vae.load_images(export, "val", a.resolution)
        if len(val_u8) < 2 or len(train_u8) < max(cfg.train.batch_size, EXAMPLE["batch"]):
            print(f"time_to_quality bench: {export} has too few rows ({len(train_u8)} train, {len(val_u8)} val)",
                  file=sys.stderr)
            return 2
        scorer = Scorer(val_u8, train_u8, a.samples, sample_steps)

        ours_s = calibrate_ours(export, cfg, tmp / "ck-cal")
        ex_s = calibrate_example(cfg, train_u8)
        ours_steps = max(2, int(a.budget / ours_s))
        ex_steps = max(2, int(a.budget / ex_s))
        n_params = sum(q.numel() for q in unet.build_unet(cfg, a.resolution, 3, None).parameters())
        print(f"export: {export} ({len(train_u8)} train, {len(val_u8)} val) at {a.resolution} px; "
              f"UNet2DModel {n_params / 1e6:.2f} M params, blocks {list(cfg.block_out_channels)}, "
              f"attention {list(cfg.attention)}; {torch.get_num_threads()} threads, device cpu")
        n = cfg.noise
        print(f"ours:    {n.prediction_type}, {n.beta_schedule} x{n.timesteps}, min-SNR {n.snr_gamma:g}, "
              f"lr {cfg.train.optimizer.lr:g} {cfg.train.schedule.kind}, EMA {cfg.train.ema.decay:g}, "
              f"batch {cfg.train.batch_size}: {ours_s * 1e3:.0f} ms/step -> {ours_steps} steps")
        print(f"example: epsilon, linear x{EXAMPLE['timesteps']}, lr {EXAMPLE['lr']:g} cosine (warm-up "
              f"{EXAMPLE['warmup']}), EMA max {EXAMPLE['ema_max_decay']}, batch {EXAMPLE['batch']}: "
              f"{ex_s * 1e3:.0f} ms/step -> {ex_steps} steps")
        print(f"sampling: {a.samples} images, {scfg.scheduler} {sample_steps} steps"
              + (f" (example: DDPM {EXAMPLE['inference_steps']} steps)" if a.example_ddpm else " (both)")
              + f"; SWD floor (train vs val) {scorer.floor:.2f}, ceiling (noise vs val) {scorer.ceiling:.2f}",
              flush=True)

        ours = run_ours(export, cfg, ours_steps, a.checkpoints, scorer, unet.sampling_scheduler(cfg, scfg.scheduler),
                        tmp / "ck")
        if a.example_ddpm:
            from diffusers import DDPMScheduler

            ex_sched = DDPMScheduler(num_train_timesteps=EXAMPLE["timesteps"])
            ex_steps_sample = EXAMPLE["inference_steps"]
        else:
            ex_sched, ex_steps_sample = unet.sampling_scheduler(ex_cfg, scfg.scheduler), None
        example = run_example(cfg, train_u8, ex_steps, a.budget, a.checkpoints, scorer, ex_sched, ex_steps_sample)

    target, ex_time = example[-1][2], example[-1][1]
    print(f"final SWD: ours {ours[-1][2]:.2f} after {ours[-1][1]:.1f} s, example {target:.2f} after {ex_time:.1f} s "
          f"(floor {scorer.floor:.2f}, ceiling {scorer.ceiling:.2f})")
    reach = time_to_reach(ours, target)
    if reach is None:
        print(f"time-to-quality ratio: ours did not reach the example's final SWD {target:.2f} in its budget "
              f"(ratio > {ours[-1][1] / ex_time:.2f}; goal <= 0.5)  BELOW GOAL")
    else:
        ratio = reach / ex_time
        print(f"time-to-quality ratio ours/example: {ratio:.3f} ({reach:.1f} s vs {ex_time:.1f} s; resolution "
              f"1/{a.checkpoints} of the budget) (goal <= 0.5){'' if ratio <= 0.5 else '  BELOW GOAL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
