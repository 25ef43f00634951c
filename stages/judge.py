"""Stage `judge`: the quality stage's independent grader (pdd/train/judge.py): a second CLIP trained from scratch
on the train split under its own seed and architecture, and a category probe on its image features.

Writes models/judge (CLIPModel + CLIPProcessor folder, probe.safetensors, probe.json), metrics/judge.json
(val recall, probe accuracy beside the majority class) and its training log (metrics/live/judge)."""
from pdd.build.runner import Outcome, run
from pdd.train import clip, judge


def add_args(parser):
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this stage")


def check(ctx):
    judge.check_inputs(ctx.deps["export"], ctx.cfg)
    clip.check_memory(ctx.cfg, clip.load_tokenizer(ctx.deps["tokenizer"])[0])


def compute(ctx):
    t = judge.train_judge(ctx.deps["export"], ctx.deps["tokenizer"], ctx.outs["judge"], ctx.cfg, ctx.seed,
                          ckpt_dir=ctx.checkpoints, resume=ctx.args.resume, live_dir=ctx.live)
    m = t.metrics
    return Outcome(
        metrics=m, plots=t.plots, nondeterminism=judge.NONDETERMINISM,
        summary=f"judge: {m['steps']} steps, val i2t R@1 {m.get('i2t_r1', float('nan')):.3f} (chance "
                f"{m.get('chance_r1', float('nan')):.3f}); category probe on val {m.get('probe_val_accuracy', float('nan')):.3f} "
                f"(majority class {m.get('probe_val_majority', float('nan')):.3f}, {m['probe_classes']} classes)")


if __name__ == "__main__":
    raise SystemExit(run("judge"))
