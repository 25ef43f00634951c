"""Stage `unet`: the denoiser trained from scratch (pdd/train/unet.py): on the cached latents, conditioned on
the cached text states (latent-conditional), or on pixels (pixel-unconditional). Writes models/unet (unet/ and
the training noise schedule in scheduler/), metrics/unet.json and, while it trains, the dvclive log
metrics/live/unet (train loss and learning rate per step, val loss per evaluation). `--resume` continues an interrupted run to bit-identical weights."""
from pdd.build.runner import Outcome, run
from pdd.train import unet


def add_args(parser):
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")


def check(ctx):
    unet.check_inputs(ctx.cfg, ctx.cfgs["vae"], latents_dir=ctx.deps["latents"], export_dir=ctx.deps["export"])


def compute(ctx):
    t = unet.train_unet(ctx.cfg, ctx.seed, out_dir=ctx.outs["unet"], ckpt_dir=ctx.checkpoints,
                        latents_dir=ctx.deps["latents"], export_dir=ctx.deps["export"], vae_cfg=ctx.cfgs["vae"],
                        resume=ctx.args.resume, live_dir=ctx.live)
    m, resumed = t.metrics, t.resumed_from
    return Outcome(metrics=m, plots=t.plots, nondeterminism=unet.NONDETERMINISM,
                   summary=f"unet ({m['mode']}): {m['steps']} steps{f' (resumed at {resumed})' if resumed else ''}, "
                           f"{t.items_per_s:.1f} per s, train loss {m['train_loss']:.4f}, val loss {m.get('val_loss', float('nan')):.4f}")


if __name__ == "__main__":
    raise SystemExit(run("unet"))
