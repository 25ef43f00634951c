"""Stage `vae`: a diffusers AutoencoderKL trained from scratch on the export (pdd/train/vae.py).

Writes models/vae (loads with `AutoencoderKL.from_pretrained`), metrics/vae.json (val PSNR/SSIM beside the
mean-colour and resize baselines, KL), metrics/vae_grid.png (val images above their reconstructions) and,
while it trains, the dvclive log metrics/live/vae (train loss and learning rate per step, val metrics and the
grid per evaluation). `--resume` continues an interrupted run.
"""
from pdd.build.runner import Outcome, run
from pdd.train import vae


def add_args(parser):
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")


def check(ctx):
    vae.check_inputs(ctx.deps["export"], ctx.cfg)


def compute(ctx):
    t = vae.train_vae(ctx.deps["export"], ctx.outs["vae"], ctx.cfg, ctx.seed, ckpt_dir=ctx.checkpoints,
                      resume=ctx.args.resume, live_dir=ctx.live)
    m, resumed = t.metrics, t.resumed_from
    return Outcome(metrics=m, plots=t.plots, nondeterminism=vae.NONDETERMINISM,
                   summary=f"vae: {m['steps']} steps{f' (resumed at {resumed})' if resumed else ''}, {t.items_per_s:.1f} images/s, "
                           f"val PSNR {m.get('val_psnr', float('nan')):.2f} dB (mean colour "
                           f"{m.get('baseline_mean_colour_psnr', float('nan')):.2f}, resize "
                           f"{m.get('baseline_resize_psnr', float('nan')):.2f})")


if __name__ == "__main__":
    raise SystemExit(run("vae"))
