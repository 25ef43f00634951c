"""Stage `clip`: a CLIPModel trained from scratch, contrastively, on the export (pdd/train/clip.py).

Reads the export and the tokenizer; writes models/clip (loads with `CLIPModel.from_pretrained` and
`CLIPProcessor.from_pretrained`), metrics/clip.json and, while it trains, the dvclive log metrics/live/clip
(train loss and learning rate per step; val loss and recall@1/@5 both ways, chance levels beside, per evaluation).
`python -m stages.clip --resume` continues an interrupted run to bit-identical weights.
"""
from pdd.build.runner import Outcome, run
from pdd.train import clip


def add_args(parser):
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")


def check(ctx):
    clip.check_inputs(ctx.deps["export"], ctx.cfg)
    clip.check_memory(ctx.cfg, clip.load_tokenizer(ctx.deps["tokenizer"])[0])


def compute(ctx):
    t = clip.train_clip(ctx.deps["export"], ctx.deps["tokenizer"], ctx.outs["clip"], ctx.cfg, ctx.seed,
                        ckpt_dir=ctx.checkpoints, resume=ctx.args.resume, live_dir=ctx.live)
    m, resumed = t.metrics, t.resumed_from
    return Outcome(
        metrics=m, plots=t.plots, nondeterminism=clip.NONDETERMINISM,
        summary=f"clip: {m['steps']} steps{f' (resumed at {resumed})' if resumed else ''}, {t.items_per_s:.1f} images/s, "
                f"val i2t R@1 {m.get('i2t_r1', float('nan')):.3f} (chance {m.get('chance_r1', float('nan')):.3f})")


if __name__ == "__main__":
    raise SystemExit(run("clip"))
