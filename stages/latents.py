"""Stage `latents`: the export encoded once by the trained VAE (posterior mean), the latent scaling factor
from the data, and the frozen CLIP text encoder's hidden states per caption (pdd/train/latents.py documents
the format). Writes data/latents (with vae/: the VAE carrying the scaling factor) and metrics/latents.json."""
import json

from pdd.build.runner import Outcome, run
from pdd.train import latents


def resolution(ctx) -> int:
    return json.loads((ctx.deps["vae"] / "config.json").read_text())["sample_size"]


def check(ctx):
    latents.check_inputs(ctx.deps["export"], resolution(ctx))


def compute(ctx):
    index = latents.build(ctx.deps["export"], ctx.deps["vae"], ctx.deps["clip"], ctx.deps["tokenizer"],
                          ctx.outs["latents"], ctx.cfg, resolution(ctx))
    metrics = {k: index[k] for k in ("latent_shape", "scaling_factor", "channel_mean", "channel_std", "counts")}
    metrics["captions"] = index["text"]["rows"] - 1
    return Outcome(metrics=metrics, summary=f"latents: {index['counts']} rows -> {index['latent_shape']} latents, "
                                            f"scaling factor {index['scaling_factor']:.4f}, {metrics['captions']} captions")


if __name__ == "__main__":
    raise SystemExit(run("latents"))
