"""Stage `export`: snapshot -> train/val shards of fixed-size images and captions (pdd/data/export.py;
format in pdd/data/shards.py). Refuses unless the audit passed for this exact snapshot."""
from pdd.build.runner import Outcome, run
from pdd.data import export


def check(ctx):
    export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])


def compute(ctx):
    # checked again right before reading (the file could have changed since check()); the manifest
    # records which audited snapshot this export compiled, for every stage after it
    report = export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])
    index = export.export(ctx.deps["snapshot"], ctx.outs["export"], ctx.cfg, ctx.seed)
    return Outcome(metrics={"train": index["counts"]["train"], "val": index["counts"]["val"],
                            "resolutions": index["resolutions"]},
                   extra={"audited_snapshot": {"content_hash": report["content_hash"], "parquet_sha256": report["parquet_sha256"]}},
                   summary=f"export: {index['counts']} rows at {index['resolutions']} px -> {ctx.final_outs['export']}")


if __name__ == "__main__":
    raise SystemExit(run("export"))
