"""Stage `pipeline`: the compiled output. Assembles the trained parts into a stock diffusers folder
(`DiffusionPipeline.from_pretrained("models/pipeline")` loads it with no project code) and writes its model
card (README.md, Hub front matter) and provenance.json (pdd/card.py). Cheap: reformatting the card retrains
nothing."""
from pdd import card
from pdd.build.runner import Outcome, run
from pdd.train import pipeline


def compute(ctx):
    pipe = pipeline.build_pipe(ctx.deps, ctx.cfg.scheduler)
    out = ctx.outs["pipeline"]
    pipe.save_pretrained(out, safe_serialization=True)
    info = card.write(out, ctx.params, ctx.deps, type(pipe).__name__)
    return Outcome(metrics={}, extra={"card": info},
                   summary=f"pipeline: {type(pipe).__name__} -> {ctx.final_outs['pipeline']} "
                           f"(loads with DiffusionPipeline.from_pretrained)")


if __name__ == "__main__":
    raise SystemExit(run("pipeline"))
