"""Stage `latents`: the export encoded once by the trained VAE (posterior mean), the latent scaling factor
from the data, and the frozen CLIP text encoder's hidden states per caption (pdd/train/latents.py documents
the format). Writes data/latents (with vae/: the VAE carrying the scaling factor) and metrics/latents.json."""
import json

from pdd.build.runner import Outcome, run
from pdd.core import shards
from pdd.train import latents


def resolution(ctx) -> int:
    return json.loads((ctx.deps["vae"] / "config.json").read_text())["sample_size"]


def check(ctx):
    res = resolution(ctx)
    if res not in shards.read_index(ctx.deps["export"])["resolutions"]:
        from pdd.core.errors import PddError

        raise PddError(f"latents: the VAE was trained at {res} px but the export has no such resolution; "
                       "rebuild the export or the VAE")


def compute(ctx):
    index = latents.build(ctx.deps["export"], ctx.deps["vae"], ctx.deps["clip"], ctx.deps["tokenizer"],
                          ctx.outs["latents"], ctx.cfg, resolution(ctx))
    metrics = {k: index[k] for k in ("latent_shape", "scaling_factor", "channel_mean", "channel_std", "counts")}
    metrics["captions"] = index["text"]["rows"] - 1
    return Outcome(metrics=metrics, summary=f"latents: {index['counts']} rows -> {index['latent_shape']} latents, "
                                            f"scaling factor {index['scaling_factor']:.4f}, {metrics['captions']} captions")


if __name__ == "__main__":
    raise SystemExit(run("latents"))
