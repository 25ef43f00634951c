"""Stage `export`: snapshot -> train/val shards of fixed-size images and captions (pdd/data/export.py;
format in pdd/core/shards.py), with the split and the kept rows stage curate decided. Refuses unless the audit
passed for this exact snapshot.

On a cluster the export can be scattered (params.yaml resources.rules.export.slices): N jobs run
`--slice I/N`, each writing whole shards into data/export-slices/I, and `--gather N` assembles
data/export from them, byte-identical to one job."""
from pdd.build.runner import Outcome, run, slice_arg, slice_dir
from pdd.data import curate, export, personal


def add_args(parser):
    parser.add_argument("--slice", type=slice_arg, metavar="I/N", help="export only slice I of N (its shards) into "
                        "data/export-slices/I")
    parser.add_argument("--gather", type=int, metavar="N", help="assemble data/export from data/export-slices/0..N-1")


def check(ctx):
    export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])


def compute(ctx):
    # checked again right before reading (the file could have changed since check()); the manifest
    # records which audited snapshot this export compiled, for every stage after it
    report = export.check_audit(ctx.deps["audit"], ctx.deps["snapshot"])
    if ctx.args.slice:
        part, parts = ctx.args.slice
        done = export.export_slice(ctx.deps["snapshot"], ctx.outs["export"], ctx.cfg, ctx.seed, part, parts,
                                   ctx.deps["curate"])
        return Outcome(summary=f"export: slice {part}/{parts}: {len(done['shards'])} shards, {done['rows']} rows")
    if ctx.args.gather:
        slices = [slice_dir(ctx.final_outs["export"], i) for i in range(ctx.args.gather)]
        index = export.gather(slices, ctx.outs["export"], ctx.deps["snapshot"], ctx.cfg, ctx.seed, ctx.deps["curate"])
    else:
        index = export.export(ctx.deps["snapshot"], ctx.outs["export"], ctx.cfg, ctx.seed, ctx.deps["curate"])
    found = curate.read_summary(ctx.deps["curate"]) if ctx.deps.get("curate") else {}
    dup = {k: found[k] for k in ("byte_identical_groups", "byte_identical_rows", "near_duplicate_clusters",
                                 "near_duplicate_rows", "keys_in_both_splits", "dropped") if k in found}
    removed = personal.removals(export.rows_in_order(ctx.deps["snapshot"], ["file_id", "labels"]),
                                list(ctx.cfg.caption.label_licences), ctx.cfg.caption.template)
    return Outcome(metrics={"train": index["counts"]["train"], "val": index["counts"]["val"],
                            "resolutions": index["resolutions"], "duplicates": dup, "personal_data_removed": removed},
                   extra={"audited_snapshot": {"content_hash": report["content_hash"], "parquet_sha256": report["parquet_sha256"]}},
                   summary=f"export: {index['counts']} rows at {index['resolutions']} px -> {ctx.final_outs['export']}")


if __name__ == "__main__":
    raise SystemExit(run("export"))
