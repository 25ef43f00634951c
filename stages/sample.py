"""Stage `sample`: images from the trained model through the stock diffusers pipeline (pdd/train/pipeline.py)
for the prompts in params.yaml (sample.prompts).

Writes models/samples/ (one PNG per prompt and image, no metadata chunks, and prompts.json), the grid
metrics/sample_grid.png (a DVC plot: one column per prompt) and metrics/sample.json. How good the samples are
is measured by stage quality (metrics/quality.json)."""
import time

import torch

from pdd.build.runner import Outcome, run
from pdd.train import pipeline

NONDETERMINISM = ["sample: images are bit-identical only with the same machine type, torch build and thread count "
                  "(sample.threads)"]


def compute(ctx):
    cfg = ctx.cfg
    torch.set_num_threads(cfg.threads)
    pipe = pipeline.build_pipe(ctx.deps, cfg.scheduler)
    t0 = time.perf_counter()
    shown = pipeline.generate(pipe, list(cfg.prompts), seed=ctx.seed, steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                              per_prompt=cfg.images_per_prompt)
    rate = len(shown) / (time.perf_counter() - t0)
    grid = pipeline.write_samples(shown, ctx.outs["samples"], cfg)
    metrics = {"images": len(shown), "prompts": len(cfg.prompts)}   # (the rate is timing: printed, never tracked)
    return Outcome(metrics=metrics, plots={"grid": grid}, nondeterminism=NONDETERMINISM,
                   summary=f"sample: {len(shown)} images ({rate:.2f}/s) -> {ctx.final_outs['samples']}")


if __name__ == "__main__":
    raise SystemExit(run("sample"))
