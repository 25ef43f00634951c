"""Stage `sample`: images from the trained model through the stock diffusers pipeline (pdd/train/pipeline.py),
and sample-quality metrics needing no downloaded weights (pdd/train/quality.py).

Writes models/samples/ (one PNG per prompt and image, no metadata chunks, and prompts.json), the grid
metrics/sample_grid.png (a DVC plot: one column per prompt), and metrics/sample.json: SWD and the Fréchet
distance in our own CLIP's image-embedding space for sample.quality.n_samples samples against the val split,
beside the floor (train vs val) and the ceiling (Gaussian noise with the data's colours vs val)."""
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
    metrics = {"images": len(shown)}   # (the rate is timing, not content: printed, never in a tracked file)
    if cfg.quality.n_samples:
        metrics["quality"] = pipeline.quality_report(pipe, cfg, seed=ctx.seed, resolution=shown[0][3].size[0],
                                                     export_dir=ctx.deps["export"], latents_dir=ctx.deps["latents"],
                                                     clip_dir=ctx.deps["clip"])
    q = metrics.get("quality", {})
    return Outcome(metrics=metrics, plots={"grid": grid}, nondeterminism=NONDETERMINISM,
                   summary=f"sample: {len(shown)} images ({rate:.2f}/s) -> {ctx.final_outs['samples']}; SWD {q.get('swd', float('nan')):.1f} "
                           f"(floor {q.get('swd_floor_train', float('nan')):.1f}, ceiling {q.get('swd_ceiling_noise', float('nan')):.1f}), "
                           f"FD-CLIP {q.get('fd_clip', float('nan')):.3f} (floor {q.get('fd_clip_floor_train', float('nan')):.3f}, "
                           f"ceiling {q.get('fd_clip_ceiling_noise', float('nan')):.3f})")


if __name__ == "__main__":
    raise SystemExit(run("sample"))
