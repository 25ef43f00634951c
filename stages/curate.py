"""Stage `curate`: which split each image goes to (by content) and which rows the export keeps (near-duplicate
curation), from the audited snapshot (pdd/data/curate.py). Writes data/curate/curation.parquet and
metrics/curate.json (byte-identical groups, near-duplicate clusters, rows dropped by reason)."""
from pdd.build.runner import Outcome, run
from pdd.data import curate, export


def check(ctx):
    export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])


def compute(ctx):
    export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])
    cfg, ex = ctx.cfg, ctx.cfgs["export"]
    table = export.curation(ctx.deps["snapshot"], cfg, ex, ctx.seed)
    curate.write(table, ctx.outs["curate"])
    m = curate.counts(table, cfg.hash_size, cfg.near_distance)
    curate.write_summary(m, ctx.outs["curate"])
    return Outcome(metrics=m, summary=f"curate: {m['rows']} rows; split by content: {m['kept']} kept, dropped "
                                      f"{m['dropped']} ({m['byte_identical_rows']} rows in {m['byte_identical_groups']} "
                                      f"byte-identical groups, {m['near_duplicate_rows']} in {m['near_duplicate_clusters']} "
                                      f"near-duplicate clusters) -> {ctx.final_outs['curate']}")


if __name__ == "__main__":
    raise SystemExit(run("curate"))
