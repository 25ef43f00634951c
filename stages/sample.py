"""Stage `sample`: images from the trained model through the stock diffusers pipeline (pdd/train/pipeline.py),
and sample-quality metrics needing no downloaded weights (pdd/train/quality.py).

Writes models/samples/ (one PNG per prompt and image, no metadata chunks, and prompts.json), the grid
metrics/sample_grid.png (a DVC plot: one column per prompt), and metrics/sample.json: SWD and the Fréchet
distance in our own CLIP's image-embedding space for sample.quality.n_samples samples against the val split,
beside the floor (train vs val) and the ceiling (Gaussian noise with the data's colours vs val)."""
import json
import time

import numpy as np
import torch

from pdd.build.runner import Outcome, run
from pdd.train import imaging, pipeline, quality
from pdd.train.vae import load_images

NONDETERMINISM = ["sample: images are bit-identical only with the same machine type, torch build and thread count "
                  "(sample.threads)"]


def mode_of(unet_dir) -> str:
    cls = json.loads((unet_dir / "unet" / "config.json").read_text())["_class_name"]
    return "latent-conditional" if cls == "UNet2DConditionModel" else "pixel-unconditional"


def build_pipe(ctx):
    return pipeline.assemble(mode_of(ctx.deps["unet"]), unet_dir=ctx.deps["unet"], scheduler=ctx.cfg.scheduler,
                             latents_dir=ctx.deps["latents"], clip_dir=ctx.deps["clip"], tokenizer_dir=ctx.deps["tokenizer"])


def compute(ctx):
    cfg = ctx.cfg
    torch.set_num_threads(cfg.threads)
    pipe = build_pipe(ctx)
    conditional = hasattr(pipe, "tokenizer")
    t0 = time.perf_counter()
    shown = pipeline.generate(pipe, list(cfg.prompts), seed=ctx.seed, steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                              per_prompt=cfg.images_per_prompt)
    rate = len(shown) / (time.perf_counter() - t0)
    out = ctx.outs["samples"]
    listing = []
    for i, k, prompt, image in shown:
        name = f"{i:02d}-{k}.png"
        (out / name).write_bytes(imaging.png_bytes(image))
        listing.append({"file": name, "prompt": prompt, "prompt_index": i, "image_index": k})
    (out / "prompts.json").write_text(json.dumps({"steps": cfg.steps, "guidance_scale": cfg.guidance_scale,
                                                  "scheduler": cfg.scheduler, "images": listing}, indent=2) + "\n")
    u8 = {(i, k): torch.from_numpy(np.asarray(img.convert("RGB"))) for i, k, _, img in shown}
    rows = [torch.stack([u8[(i, k)] for i in range(len(cfg.prompts))]) for k in range(cfg.images_per_prompt)]
    grid = imaging.png_bytes(imaging.grid(rows, scale=2))

    metrics = {"images": len(shown)}   # (the rate is timing, not content: printed, never in a tracked file)
    if cfg.quality.n_samples:
        res = shown[0][3].size[0]
        val = load_images(ctx.deps["export"], "val", res)
        train = load_images(ctx.deps["export"], "train", res)
        n = cfg.quality.n_samples
        if conditional and cfg.quality.prompts_from_val:
            import pyarrow.parquet as pq

            caps = pq.read_table(ctx.deps["latents"] / "val-00000.parquet", columns=["caption"]).column("caption").to_pylist()
            prompts = [caps[j % len(caps)] for j in range(n)]
        else:
            prompts = [cfg.prompts[j % len(cfg.prompts)] for j in range(n)]
        samples = pipeline.generate_batched(pipe, prompts, seed=ctx.seed, tag="quality", steps=cfg.steps,
                                            guidance_scale=cfg.guidance_scale)
        from transformers import CLIPModel, CLIPProcessor

        clip_model = CLIPModel.from_pretrained(ctx.deps["clip"], local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(ctx.deps["clip"], local_files_only=True)
        metrics["quality"] = quality.report(samples, val, train, ctx.seed, clip_model, processor)
    q = metrics.get("quality", {})
    return Outcome(metrics=metrics, plots={"grid": grid}, nondeterminism=NONDETERMINISM,
                   summary=f"sample: {len(shown)} images ({rate:.2f}/s) -> {ctx.final_outs['samples']}; SWD {q.get('swd', float('nan')):.1f} "
                           f"(floor {q.get('swd_floor_train', float('nan')):.1f}, ceiling {q.get('swd_ceiling_noise', float('nan')):.1f}), "
                           f"FD-CLIP {q.get('fd_clip', float('nan')):.3f} (floor {q.get('fd_clip_floor_train', float('nan')):.3f}, "
                           f"ceiling {q.get('fd_clip_ceiling_noise', float('nan')):.3f})")


if __name__ == "__main__":
    raise SystemExit(run("sample"))
