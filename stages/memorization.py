"""Stage `memorization`: does the trained model copy its training images? (pdd/train/memorization.py)

Generates memorization.n_samples images with the trained parts (the same pipeline the sample stage uses,
its scheduler, steps and guidance; prompts: training captions, evenly spread, the prompts most likely to
pull a copy out; one seeded generator per image), then finds each one's nearest training image in our own
CLIP's image-embedding space, in pixel space downscaled to memorization.pixel_size and by perceptual hash,
beside the same similarities for the val split (real images the model never saw), which calibrates the flag
threshold of each space (memorization.percentile of val's; see pdd/train/memorization.py).

Writes models/memorization/ (the samples as PNGs and neighbours.tsv: each sample's nearest training image and
similarities), metrics/memorization.json (distributions, the calibrated thresholds, how many samples are flagged, the
rate beside Somepalli et al.'s anchor) and
the plot metrics/memorization_pairs.png (flagged or closest samples above their nearest training images)."""
import torch

from pdd.build.runner import Outcome, run
from pdd.train import memorization, pipeline

NONDETERMINISM = ["memorization: samples (and so the similarities) are bit-identical only with the same machine type, "
                  "torch build and thread count (sample.threads)"]


def compute(ctx):
    cfg, scfg = ctx.cfg, ctx.cfgs["sample"]
    torch.set_num_threads(scfg.threads)
    pipe = pipeline.build_pipe(ctx.deps, scfg.scheduler)
    found = memorization.find_copies(pipe, cfg, seed=ctx.seed, steps=scfg.steps, guidance_scale=scfg.guidance_scale,
                                     export_dir=ctx.deps["export"], clip_dir=ctx.deps["clip"],
                                     out_dir=ctx.outs["memorization"])
    rep = found.metrics
    return Outcome(metrics=rep, plots={"pairs": found.pairs}, nondeterminism=NONDETERMINISM,
                   summary=memorization.summary(rep))

if __name__ == "__main__":
    raise SystemExit(run("memorization"))
