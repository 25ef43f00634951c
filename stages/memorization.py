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
from PIL import Image

from pdd.build.runner import Outcome, run
from pdd.core import shards
from pdd.train import imaging, memorization, pipeline, quality
from pdd.train.vae import load_images
from stages.sample import mode_of

NONDETERMINISM = ["memorization: samples (and so the similarities) are bit-identical only with the same machine type, "
                  "torch build and thread count (sample.threads)"]


def prompts_for(export_dir, n: int) -> list[str]:
    caps = shards.read_split(export_dir, "train", columns=["caption"]).column("caption").to_pylist()
    return [caps[(j * len(caps)) // n] if n <= len(caps) else caps[j % len(caps)] for j in range(n)]


def compute(ctx):
    cfg, scfg = ctx.cfg, ctx.cfgs["sample"]
    torch.set_num_threads(scfg.threads)
    pipe = pipeline.assemble(mode_of(ctx.deps["unet"]), unet_dir=ctx.deps["unet"], scheduler=scfg.scheduler,
                             latents_dir=ctx.deps["latents"], clip_dir=ctx.deps["clip"], tokenizer_dir=ctx.deps["tokenizer"])
    pipe.set_progress_bar_config(disable=True)
    conditional = hasattr(pipe, "tokenizer")
    n = cfg.n_samples
    prompts = prompts_for(ctx.deps["export"], n) if conditional else [""] * n
    samples_u8 = pipeline.generate_batched(pipe, prompts, seed=ctx.seed, tag="memorization", steps=scfg.steps,
                                           guidance_scale=scfg.guidance_scale)
    res = samples_u8.shape[1]
    resolutions = shards.read_index(ctx.deps["export"])["resolutions"]
    data_res = res if res in resolutions else max(resolutions)
    train_u8 = load_images(ctx.deps["export"], "train", data_res)
    val_u8 = load_images(ctx.deps["export"], "val", data_res)
    train_ids = shards.read_split(ctx.deps["export"], "train", columns=["file_id"]).column("file_id").to_pylist()

    from transformers import CLIPModel, CLIPProcessor

    clip_model = CLIPModel.from_pretrained(ctx.deps["clip"], local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(ctx.deps["clip"], local_files_only=True)

    def embed(x):
        return quality.clip_features(clip_model, processor, x) if len(x) else torch.zeros((0, 1))

    rep = memorization.analyse(samples_u8, train_u8, val_u8, clip_embed=embed, threshold=cfg.threshold,
                               pixel_size=cfg.pixel_size)
    per = rep.pop("_per_sample")

    out = ctx.outs["memorization"]
    (out / "samples").mkdir()
    lines = ["sample\tprompt\tclip_nearest_train\tclip_similarity\tpixel_nearest_train\tpixel_similarity\tflagged"]
    flagged_list = []
    for j, img in enumerate(samples_u8):
        name = f"samples/{j:04d}.png"
        (out / name).write_bytes(imaging.png_bytes(Image.fromarray(img.numpy())))
        ci, pi = int(per["clip_idx"][j]), int(per["pixel_idx"][j])
        c, p, f = float(per["clip"][j]), float(per["pixel"][j]), bool(per["flagged"][j])
        lines.append(f"{name}\t{' '.join(prompts[j].split())}\t{train_ids[ci]}\t{c:.6f}\t{train_ids[pi]}\t{p:.6f}\t{int(f)}")
        if f:
            flagged_list.append({"sample": name, "prompt": prompts[j], "nearest_train": train_ids[ci],
                                 "clip_similarity": round(c, 6), "pixel_similarity": round(p, 6)})
    (out / "neighbours.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep["flagged_samples"] = sorted(flagged_list, key=lambda r: (-r["clip_similarity"], r["sample"]))
    picks = memorization.shown_order(per["clip"], per["flagged"], cfg.show)
    rep["shown"] = [f"samples/{j:04d}.png" for j in picks]
    png = imaging.png_bytes(memorization.pairs_image(samples_u8, train_u8, picks, per["clip_idx"], res))
    c = rep["clip"]
    return Outcome(metrics=rep, plots={"pairs": png}, nondeterminism=NONDETERMINISM,
                   summary=f"memorization: {rep['flagged']} of {n} samples at or above CLIP similarity {cfg.threshold} "
                           f"to a training image (val: {c['val_at_or_above_threshold']} of {rep['n_val']}); nearest-train "
                           f"CLIP similarity median {c['samples'].get('p50', float('nan')):.3f} for samples, "
                           f"{c['val'].get('p50', float('nan')):.3f} for val")


if __name__ == "__main__":
    raise SystemExit(run("memorization"))
