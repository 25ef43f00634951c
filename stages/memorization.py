"""Stage `memorization`: does the trained model copy its training images? (pdd/train/memorization.py)

Generates memorization.n_samples images with the trained parts (the same pipeline the sample stage uses,
its scheduler, steps and guidance; prompts: training captions, evenly spread, the prompts most likely to
pull a copy out; one seeded generator per image), then finds each one's nearest training image in our own
CLIP's image-embedding space and in pixel space downscaled to memorization.pixel_size, beside the same
similarities for the val split (real images the model never saw: the reference).

Writes models/memorization/ (the samples as PNGs and neighbours.tsv: each sample's nearest training image and
similarities), metrics/memorization.json (distributions, the threshold, how many samples are flagged) and
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
    c = rep["clip"]
    return Outcome(metrics=rep, plots={"pairs": found.pairs}, nondeterminism=NONDETERMINISM,
                   summary=f"memorization: {rep['flagged']} of {rep['n_samples']} samples at or above CLIP similarity "
                           f"{cfg.threshold} to a training image (val: {c['val_at_or_above_threshold']} of {rep['n_val']}); "
                           f"nearest-train CLIP similarity median {c['samples'].get('p50', float('nan')):.3f} for samples, "
                           f"{c['val'].get('p50', float('nan')):.3f} for val")


if __name__ == "__main__":
    raise SystemExit(run("memorization"))
