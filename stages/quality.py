"""Stage `quality`: the yardstick (pdd/train/yardstick.py). Samples prompted with held-out val captions, graded
by the independent judge (stage judge), each figure beside the same measurement on real images and chance:
R-precision, CLIP score, category accuracy, precision / recall, KID, colour, SWD.

Writes models/quality/ (the samples' prompts), metrics/quality.json and metrics/quality_grid.png (val images,
each beside samples of its caption)."""
import json
import torch

from pdd.build.runner import Outcome, run
from pdd.core.report_tables import quality_table
from pdd.train import judge, yardstick

NONDETERMINISM = ["quality: figures are bit-identical only with the same machine type, torch build and thread count "
                  "(quality.threads)"]


def check(ctx):
    judge.Judge(ctx.deps["judge"])


def compute(ctx):
    torch.set_num_threads(ctx.cfg.threads)
    metrics, grid, took = yardstick.evaluate(ctx.deps, ctx.cfg, ctx.cfgs["sample"], ctx.seed)
    (ctx.outs["quality"] / "grid.json").write_text(json.dumps(metrics["grid"], indent=2) + "\n")
    table = quality_table(metrics)
    (ctx.outs["quality"] / "table.md").write_text(table + "\n")
    n = metrics["n_samples"]
    return Outcome(metrics=metrics, plots={"grid": grid}, nondeterminism=NONDETERMINISM,
                   summary=f"quality: {n} samples in {took['sampling']:.0f} s ({n / max(took['sampling'], 1e-9):.1f}/s), "
                           f"measures {took['measures']:.0f} s, grid {took['grid']:.0f} s\n{table}")


if __name__ == "__main__":
    raise SystemExit(run("quality"))
