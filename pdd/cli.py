"""`pdd`: the only place that parses argv and prints for people.

Build stages (`pdd audit`, `pdd export`, ...) are the same code DVC and Snakemake
run as `python -m stages.<stage>`; the other commands manage the store.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from pdd.core.version import __version__
from pdd.core.errors import PddError


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

        from pdd import exclusions

        if args.from_snapshot:  # the takedown path: no store needed, the committed snapshot minus the exclusions
            source = snapshot.resolve(args.from_snapshot, args.out_dir)
            if Path(args.db).exists():  # a store that knows the name binds it too
                with _store_ro(args) as store:
                    info = pin.pin_from(source, args.name, args.out_dir, exclusions.read(args.exclusions), store)
            else:
                info = pin.pin_from(source, args.name, args.out_dir, exclusions.read(args.exclusions))
            dropped = info["derived_from"]["excluded_ids"]
            print(f"pinned {info['name']} from {source}: {info['n_rows']} files ({len(dropped)} left out now"
                  + (f": {', '.join(dropped[:5])}" + (" ..." if len(dropped) > 5 else "") if dropped else "")
                  + f"), content hash {info['content_hash']} -> {args.out_dir}/{info['parquet']}")
            return 0
        with _store(args) as store:
            info = pin.pin(store, args.name, args.out_dir, exclusions.read(args.exclusions))
        print(f"pinned {info['name']}: {info['n_rows']} files, content hash {info['content_hash']} -> "
              f"{args.out_dir}/{info['parquet']}" + (f" ({info['excluded']} excluded)" if info.get("excluded") else ""))
    elif args.action == "list":
        from pdd import history

        skipped: list = []
        infos = history.list_snapshots(args.out_dir, args.db, skipped)
        for path, why in skipped:
            print(f"pdd: warning: {path} skipped: {why}", file=sys.stderr)
        if args.json:
            print(json.dumps(infos, indent=2))
        for i in infos if not args.json else []:
            print(f"{i['name']:30s} {i['content_hash'][:16]}  {str(i['created'] or '-')[:19]:19s} {i['rows']:8d} rows  "
                  f"excluded {i['excluded']}  " + ",".join(f"{k}={v}" for k, v in i["licences"].items()))
    elif args.action == "show":
        from pdd import history

        i = history.info(snapshot.resolve(args.name, args.out_dir), args.db)
        print(json.dumps(i, indent=2) if args.json else "\n".join(history.format_info(i)))
    elif args.action == "textconv":
        from pdd import history

        try:
            history.textconv(args.name)
        except BrokenPipeError:  # the reader (git, head) stopped reading: not an error
            sys.stderr.close()
    elif args.action == "blame":
        from pdd import history
        from pdd import exclusions

        if args.git is not None:  # the git history of the build snapshot; the store (if any) only explains removals
            if Path(args.db).exists():
                with _store_ro(args) as store:
                    b = history.blame_git(args.name, args.git, args.repo, args.exclusions, store)
            else:
                b = history.blame_git(args.name, args.git, args.repo, args.exclusions)
            print(json.dumps(b, indent=2) if args.json else "\n".join(history.format_blame_git(b)))
            return 0
        with _store_ro(args) as store:
            b = history.blame(store, args.name, exclusions.read(args.exclusions))
        print(json.dumps(b, indent=2) if args.json else "\n".join(history.format_blame(b)))
    elif args.action == "verify":
        path = snapshot.resolve(args.name, args.out_dir)
        if Path(args.db).exists():  # the store's record of the pin is checked too, when there is a store
            with _store_ro(args) as store:
                digest, problems = snapshot.verify(path, store)
        else:
            digest, problems = snapshot.verify(path)
        if problems:
            raise PddError(f"{path}: {len(problems)} problem(s): {'; '.join(problems[:5])}")
        print(f"{path}: ok, content hash {digest}")
    return 0


def cmd_diff(args) -> int:
    """Exit 0 when equal, 1 when different (like `git diff --exit-code`), 2 on error."""
    from pdd import diff

    d = diff.diff(args.a, args.b, args.out_dir, args.repo, allowed=_allowed_licences(args.params))
    if args.json:
        print(diff.to_json(d))
    else:
        print("\n".join(diff.format_text(d, stat=args.stat)))
    return 0 if d["equal"] else 1


def _allowed_licences(params_path: str) -> tuple[str, ...]:
    """The audit's allowed licences from params.yaml when there is one (what counts as a rights regression)."""
    from pdd.diff import DEFAULT_ALLOWED

    try:
        import yaml

        with open(params_path) as fh:
            allowed = ((yaml.safe_load(fh) or {}).get("audit") or {}).get("allowed_licences")
    except (OSError, ValueError, AttributeError):
        allowed = None
    return tuple(allowed) if isinstance(allowed, list) and allowed else DEFAULT_ALLOWED


def _in_snapshots(file_id: str, snap_dir: str | Path) -> bool:
    """Whether FILE_ID is a row of a snapshot file in SNAP_DIR (what a clone without a store can check)."""
    from pdd import history

    for path in sorted(Path(snap_dir).glob("*.parquet")):
        try:
            if history.row_in(path, file_id)[0] is not None:
                return True
        except PddError:
            continue  # a stray .parquet that is not a snapshot
    return False


def cmd_exclude(args) -> int:
    """The id must be a file the store knows or, in a clone without the store, a row of a snapshot in --out-dir."""
    from pdd import exclusions

    if Path(args.db).exists():
        with _store_ro(args) as store:
            known = bool(store.query("SELECT 1 FROM files WHERE file_id = ?", [args.file_id]))
    else:
        known = False
    if not known and not _in_snapshots(args.file_id, args.out_dir):
        where = f"the store {args.db}" if Path(args.db).exists() else f"the store (there is none at {args.db})"
        raise PddError(f"{args.file_id}: not a file in {where} or in a snapshot in {args.out_dir} "
                       "(ids look like 'source:external_id'; see `pdd snapshot show NAME`)")
    entry = exclusions.add(args.exclusions, args.file_id, args.reason, args.date)
    print(f"excluded {entry['file_id']} ({entry['date']}: {entry['reason']}) in {args.exclusions}; "
          "pin a new snapshot and point params.yaml at it to rebuild without it")
    return 0


def _store_ro(args):
    from pathlib import Path

    from pdd.source.store import Store

    if not Path(args.db).exists():
        raise PddError(f"{args.db}: no store here (pass --db PATH to the store the file was imported into)")
    return Store(args.db, read_only=True)


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


def cmd_launch(args) -> int:
    """The command that runs a stage on NODES x PROCESSES (what its Snakemake rule runs): print or run it."""
    import subprocess

    from pdd.build import cluster
    from pdd.core import params as params_mod

    params = cluster.with_layout(params_mod.load(args.params), args.stage, args.nodes, args.processes_per_node)
    params_mod.validate(params, args.params)
    cluster.check_params(params, args.params)
    cmd = cluster.command(params, args.stage, "" if args.params == "params.yaml" else f"--params {shlex.quote(args.params)}")
    if args.dry_run:
        print(cmd)
        return 0
    return subprocess.call(["bash", "-c", cmd])


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def cmd_verify(args) -> int:
    from pdd.build import verify

    rows, workspace = verify.verify(".", args.stages or None, workdir=args.workdir, keep=args.keep)
    print(verify.report(rows))
    if args.keep:
        print(f"workspace kept: {workspace}")
    return 0 if all(r.same for r in rows) else 1


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
    p.add_argument("action", choices=["pin", "list", "show", "verify", "textconv", "blame"],
                   help="textconv FILE: one canonical line per row (git diff driver); blame FILE_ID: its history")
    p.add_argument("name", nargs="?")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--out-dir", default="data/snapshots")
    p.add_argument("--exclusions", default="data/exclusions.tsv", help="takedown list applied when pinning")
    p.add_argument("--from", dest="from_snapshot", metavar="SNAPSHOT",
                   help="pin: derive NAME from this snapshot (name or .parquet) minus the exclusions, without the store")
    p.add_argument("--json", action="store_true", help="list/show/blame: JSON for machines")
    p.add_argument("--git", nargs="?", const="HEAD", metavar="REV_RANGE",
                   help="blame: follow the build snapshot params.yaml names through git history instead of the store "
                        "(default HEAD; e.g. v1..v3); removals are explained from data/exclusions.tsv at each revision")
    p.add_argument("--repo", help="blame --git: the git repository (default: the one around the current folder)")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("diff", help="row-level, rights-aware diff of two snapshots (names, .parquet paths or git revisions)",
                       description="A and B: a snapshot name, a snapshot .parquet path, or a git revision at which "
                                   "params.yaml names the build snapshot (git:REV forces a revision). "
                                   "Exit 0 equal, 1 different, 2 error.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--out-dir", default="data/snapshots")
    p.add_argument("--repo", help="git repository for revisions (default: the one around the current folder)")
    p.add_argument("--params", default="params.yaml", help="audit.allowed_licences here defines a rights regression")
    p.add_argument("--json", action="store_true")
    p.add_argument("--stat", action="store_true", help="the summary only")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("exclude", help="take a file down: add it to data/exclusions.tsv (pinning leaves it out)")
    p.add_argument("file_id")
    p.add_argument("--reason", required=True)
    p.add_argument("--date", help="YYYY-MM-DD (default: today, or SOURCE_DATE_EPOCH)")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--exclusions", default="data/exclusions.tsv")
    p.add_argument("--out-dir", default="data/snapshots", help="without a store, the id must be in a snapshot here")
    p.set_defaults(func=cmd_exclude)

    p = sub.add_parser("dag", help="show the build DAG, or regenerate/check dvc.yaml and the Snakefile")
    p.add_argument("action", choices=["show", "write", "check"], nargs="?", default="show")
    p.set_defaults(func=cmd_dag)

    p = sub.add_parser("verify", help="rebuild (all or the named stages) in a temporary workspace and compare hashes",
                       description="Copies the tracked working tree and the pinned snapshot into a fresh workspace, "
                                   "runs `dvc repro [STAGE...]` there and compares each output's hash with dvc.lock, "
                                   "the manifests and the files in this repository. Exit 0 same, 1 different, 2 error.")
    p.add_argument("stages", nargs="*", metavar="STAGE", help="stages to rebuild (with what they depend on); default: all")
    p.add_argument("--workdir", help="build here instead of a new temporary folder (must be empty)")
    p.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("launch", help="print (--dry-run) or run the command that runs a stage on several processes or nodes",
                       description="The command a stage's Snakemake rule runs: `python -m stages.STAGE` for one process, "
                                   "torchrun for several on one node, srun + torchrun (node rank from SLURM_NODEID, "
                                   "rendezvous on the first host of SLURM_JOB_NODELIST) for several nodes. Nodes and "
                                   "processes per node default to params.yaml resources.rules.STAGE.")
    p.add_argument("stage", choices=[s.name for s in dag.PIPELINE if s.distributed], metavar="STAGE",
                   help="a training stage: " + ", ".join(s.name for s in dag.PIPELINE if s.distributed))
    p.add_argument("--nodes", type=_count, help="machines (default: resources.rules.STAGE.nodes)")
    p.add_argument("--processes-per-node", type=_count, help="processes per machine, e.g. one per GPU "
                                                                   "(default: resources.rules.STAGE.processes_per_node)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the command, run nothing")
    p.set_defaults(func=cmd_launch)

    for s in dag.PIPELINE:
        p = sub.add_parser(s.name, help=f"build stage: {s.name} (same as `{s.cmd}`)",
                           description=f"Build stage `{s.name}` outside DVC/Snakemake: runs `{s.cmd}` in-process.")
        p.add_argument("--params", default="params.yaml")
        p.add_argument("stage_args", nargs=argparse.REMAINDER, help="passed on to the stage (e.g. --resume)")
        p.set_defaults(func=cmd_stage)

    from pdd.source.commons import cli as scrape_cli

    scrape_cli.register(sub)
    return parser


def generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdd sample", description=(
        "Generate images with a built pipeline folder (stock diffusers, no project code inside). "
        "Without --prompt/--model, `pdd sample` runs the build stage `sample` instead."))
    p.add_argument("--model", default="models/pipeline", help="a diffusers pipeline folder (default: models/pipeline)")
    p.add_argument("--prompt", help="the text prompt (latent-conditional models); unconditional models ignore it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=_positive_int, default=25, help="denoising steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale, >= 1 (1: none)")
    p.add_argument("-n", "--num-images", type=_positive_int, default=1)
    p.add_argument("-o", "--out", default="sample.png", help="output PNG (with -n > 1: NAME-0.png, NAME-1.png, ...)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    return p


def cmd_generate(argv: list[str]) -> int:
    """`pdd sample --model DIR --prompt TEXT -o out.png`: images for people, with a progress bar."""
    args = generate_parser().parse_args(argv)
    import torch

    from pdd.train import imaging, pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.guidance < 1:
        raise PddError(f"--guidance {args.guidance} is below 1; use 1 (no guidance) or more")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise PddError(f"-o {out}: give a .png file name")
    if out.is_dir() or not out.parent.is_dir():
        raise PddError(f"-o {out}: not a writable file path (is the folder there?)")
    pipe = pipeline.load_folder(args.model)
    conditional = hasattr(pipe, "tokenizer")
    if conditional and not args.prompt:
        raise PddError(f"{args.model} is a text-conditional model: give --prompt TEXT")
    warning = pipeline.prompt_warning(pipe, args.prompt) if conditional else None
    if warning:
        print(f"pdd: warning: {warning}", file=sys.stderr)
    pipe.set_progress_bar_config(disable=False, desc="sample", leave=False)
    paths = [out] if args.num_images == 1 else [out.with_name(f"{out.stem}-{i}.png") for i in range(args.num_images)]
    for i, path in enumerate(paths):
        g = torch.Generator().manual_seed(args.seed + i)
        if conditional:
            image = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=g).images[0]
        else:
            image = pipe(batch_size=1, generator=g, num_inference_steps=args.steps).images[0]
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(imaging.png_bytes(image))
        tmp.replace(path)
        print(path)
    return 0


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["sample"] and any(a.split("=")[0] in ("--model", "--prompt", "-o", "--out") for a in argv[1:]):
        return cmd_generate(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "snapshot" and args.action != "list" and not args.name:
        raise PddError(f"pdd snapshot {args.action} needs a NAME (see `pdd snapshot list`)")
    return args.func(args) or 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(sys.argv[1:] if argv is None else list(argv))
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pdd: interrupted; everything committed so far is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
