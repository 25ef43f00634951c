"""`pdd`: the only place that parses argv and prints for people.

Build stages (`pdd audit`, `pdd export`, ...) are the same code DVC and Snakemake
run as `python -m stages.<stage>`; the other commands manage the store.
"""
from __future__ import annotations

import argparse
import json
import sys

from pdd.version import __version__
from pdd.errors import PddError


def _store(args):
    from pdd.source.store import Store

    return Store(args.db)


def cmd_import_folder(args) -> int:
    from pdd.source.importers import import_folder

    with _store(args) as store:
        report = import_folder(store, args.folder, args.metadata, source_id=args.source, file_column=args.file_column,
                               id_column=args.id_column, licence_column=args.licence_column,
                               label_licence=args.label_licence, max_side=args.max_side)
        counts = store.counts()
    print(f"imported from {args.folder}: {report.accepted} accepted, {report.rejected} rejected "
          f"({report.unchanged} unchanged since the last import)")
    for reason, n in sorted(report.reasons.items()):
        print(f"  {n:6d}  {reason}")
    print(f"store {args.db}: {counts['accepted']} accepted, {counts['rejected']} rejected files")
    return 0


def cmd_import_openclipart(args) -> int:
    from pdd.source.openclipart import import_openclipart

    with _store(args) as store:
        report = import_openclipart(store, args.folder, max_side=args.max_side, workers=args.workers)
        counts = store.counts()
    print(f"imported from {args.folder}: {report.names} PNG names, {report.accepted + report.rejected} distinct files: "
          f"{report.accepted} accepted, {report.rejected} rejected ({report.unchanged} unchanged since the last import)")
    for reason, n in sorted(report.reasons.items()):
        print(f"  {n:6d}  {reason}")
    print(f"store {args.db}: {counts['accepted']} accepted, {counts['rejected']} rejected files")
    return 0


def cmd_snapshot(args) -> int:
    from pdd import snapshot

    if args.action == "pin":
        from pdd.source import pin

        with _store(args) as store:
            info = pin.pin(store, args.name, args.out_dir)
        print(f"pinned {info['name']}: {info['n_rows']} files, content hash {info['content_hash']} -> "
              f"{args.out_dir}/{info['parquet']}")
    elif args.action == "list":
        from pathlib import Path

        for path in sorted(Path(args.out_dir).glob("*.parquet")):
            s = snapshot.summary(path)
            print(f"{s['name'] or path.stem:30s} {s['rows']:8d} files  {s['content_hash'][:16]}  {path}")
    elif args.action == "show":
        print(json.dumps(snapshot.summary(snapshot.resolve(args.name, args.out_dir)), indent=2))
    elif args.action == "verify":
        path = snapshot.resolve(args.name, args.out_dir)
        digest, problems = snapshot.verify(path)
        if problems:
            raise PddError(f"{path}: {len(problems)} problem(s): {'; '.join(problems[:5])}")
        print(f"{path}: ok, content hash {digest}")
    return 0


def cmd_diff(args) -> int:
    from pdd import snapshot

    d = snapshot.diff(snapshot.resolve(args.a, args.out_dir), snapshot.resolve(args.b, args.out_dir))
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"--- {args.a}\n+++ {args.b}")
    for fid in d["removed"]:
        print(f"- {fid}")
    for fid in d["added"]:
        print(f"+ {fid}")
    for ch in d["changed"]:
        print(f"~ {ch['file_id']} ({', '.join(ch['fields'])})")
    print(f"{len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed, {d['unchanged']} unchanged")
    return 0


def cmd_dag(args) -> int:
    from pdd.build import dag

    if args.action == "write":
        changed = dag.write()
        print("rewrote " + ", ".join(changed) if changed else "dvc.yaml, Snakefile and workflow/rules are up to date")
    elif args.action == "check":
        stale = list(dag.stale())
        if stale:
            raise PddError(f"generated files out of date: {', '.join(stale)}; run `pdd dag write`")
        print("dvc.yaml, Snakefile and workflow/rules match pdd/build/dag.py")
    else:
        for s in dag.PIPELINE:
            print(f"{s.name:10s} {s.cmd:28s} deps={list(s.deps.values())} outs={list(s.outs.values())}")
    return 0


def cmd_stage(args) -> int:
    from pdd.build import dag

    from pdd.build.runner import execute

    dag.stage(args.command)
    outcome = execute(args.command, ["--params", args.params, *args.stage_args])
    if outcome.summary:
        print(outcome.summary, file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from pdd.build import dag

    parser = argparse.ArgumentParser(prog="pdd", description="PD-Diffusion: a reproducible build of a public-domain image model.")
    parser.add_argument("--version", action="version", version=f"pdd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import-folder", help="import a local folder of images + a licence CSV into the store")
    p.add_argument("folder")
    p.add_argument("--metadata", required=True, help="CSV with one row per image (columns: file, license, title, ...)")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--source", help="source id (default: the folder's name)")
    p.add_argument("--file-column", default="file", help="CSV column with the image path, relative to FOLDER")
    p.add_argument("--id-column", help="CSV column with a stable id (default: the file path)")
    p.add_argument("--licence-column", default="license")
    p.add_argument("--label-licence", default="unknown", help="licence of the CSV's text (titles, creators); default unknown")
    p.add_argument("--max-side", type=_positive_int, help="downscale stored images to this longest side (JPEG q90)")
    p.set_defaults(func=cmd_import_folder)

    p = sub.add_parser("import-openclipart", help="import the Open Clip Art Library (Debian openclipart-png/-svg, unpacked) into the store")
    p.add_argument("folder", help="where `dpkg-deb -x` unpacked both packages (or its usr/share/openclipart)")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--max-side", type=_positive_int, default=64, help="longest side of the stored images (default 64; lossless WebP)")
    p.add_argument("--workers", type=_positive_int, help="decoding threads (default: the CPU count, at most 8)")
    p.set_defaults(func=cmd_import_openclipart)

    p = sub.add_parser("snapshot", help="pin, list, show or verify dataset snapshots")
    p.add_argument("action", choices=["pin", "list", "show", "verify"])
    p.add_argument("name", nargs="?")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--out-dir", default="data/snapshots")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("diff", help="what changed between two snapshots (names or .parquet paths)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--out-dir", default="data/snapshots")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("dag", help="show the build DAG, or regenerate/check dvc.yaml and the Snakefile")
    p.add_argument("action", choices=["show", "write", "check"], nargs="?", default="show")
    p.set_defaults(func=cmd_dag)

    for s in dag.PIPELINE:
        p = sub.add_parser(s.name, help=f"build stage: {s.name} (same as `{s.cmd}`)",
                           description=f"Build stage `{s.name}` outside DVC/Snakemake: runs `{s.cmd}` in-process.")
        p.add_argument("--params", default="params.yaml")
        p.add_argument("stage_args", nargs=argparse.REMAINDER, help="passed on to the stage (e.g. --resume)")
        p.set_defaults(func=cmd_stage)

    from pdd.source.commons import cli as scrape_cli

    scrape_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "snapshot" and args.action != "list" and not args.name:
            raise PddError(f"pdd snapshot {args.action} needs a NAME (see `pdd snapshot list`)")
        return args.func(args) or 0
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pdd: interrupted; everything committed so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
