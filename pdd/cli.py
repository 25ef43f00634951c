"""`pdd`: the command tree, declared in one place (`build_parser`), one handler per leaf command.

    pdd import-folder | import-openclipart          fill the store
    pdd snapshot pin | card | list | show | verify | textconv | blame
    pdd diff A B | pdd exclude FILE_ID              dataset history and takedowns
    pdd dag [show | write | check] | pdd verify | pdd sign | pdd launch STAGE
    pdd audit | export | ... | sample | pipeline    the build stages (the DAG's own commands)
    pdd generate                                    images from a built pipeline folder, for people
    pdd credentials show | make-key                 read an image's C2PA content credentials, make a test key
    pdd trace IMAGE                                 the training images nearest to an image, with their credits
    pdd scrape | mirror | label                     Wikimedia Commons (declared in pdd/source/commons/cli.py)

Every command's argv is parsed here, except two hand-offs: a build stage's flags (`pdd unet --resume`,
`pdd export --slice 0/4`, `--params`, `--help`) go on untouched to the stage runner's parser
(pdd/build/runner.py `parse_args`, which reads the stage's own `add_args`), so `pdd STAGE` and
`python -m stages.STAGE` take the same flags; the Commons subtree is declared by `register` in
pdd/source/commons/cli.py and hooked in below. A usage error in this tree is one line
(`pdd: error: ...`, exit 2), like every PddError a handler raises.

Start-up: handlers import their library module when they run (those imports say `# lazy`). Measured here
(2-core machine, best of 5, `build_parser()` in a fresh Python): 0.30 s as it is, 0.51 s with the store,
snapshot, history, diff and engine modules at the top (pyarrow, DuckDB, jsonschema), 3.9 s with torch and
diffusers too (what `generate` needs): `pdd --help` and every store command would pay them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from pdd import exclusions
from pdd.build import dag
from pdd.core.errors import PddError
from pdd.core.files import disk_full
from pdd.core.ids import check_id, printable
from pdd.core.version import __version__
from pdd.source.commons import cli as commons_cli


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the option and where its help is (exit 2)."""

    def error(self, message):
        self.exit(2, f"pdd: error: {message} (see `{self.prog} --help`)\n")


def whole(what: str, minimum: int = 1):
    """An argparse type: a whole number of WHAT, at least MINIMUM."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of {what}, {minimum} or more")
        return value
    return parse


# ---- the store ------------------------------------------------------------------------------------
def _store(args):
    from pdd.source.store import Store  # lazy: start-up (module docstring)

    return Store(args.db)


def _store_ro(args):
    from pdd.source.store import Store  # lazy: start-up

    if not Path(args.db).exists():
        raise PddError(f"{args.db}: no store here (pass --db PATH to the store the file was imported into)")
    return Store(args.db, read_only=True)


def _print_import(args, report, counts, what: str) -> None:
    print(f"imported from {args.folder}: {what}{report.accepted} accepted, {report.rejected} rejected "
          f"({report.unchanged} unchanged since the last import)")
    for reason, n in sorted(report.reasons.items()):
        print(f"  {n:6d}  {reason}")
    print(f"store {args.db}: {counts['accepted']} accepted, {counts['rejected']} rejected files")


def cmd_import_folder(args) -> int:
    from pdd.source.importers import import_folder  # lazy: start-up

    with _store(args) as store:
        report = import_folder(store, args.folder, args.metadata, source_id=args.source, file_column=args.file_column,
                               id_column=args.id_column, licence_column=args.licence_column,
                               label_licence=args.label_licence, max_side=args.max_side)
        counts = store.counts()
    _print_import(args, report, counts, "")
    return 0


def cmd_import_openclipart(args) -> int:
    from pdd.source.openclipart import import_openclipart  # lazy: start-up

    with _store(args) as store:
        report = import_openclipart(store, args.folder, max_side=args.max_side, workers=args.workers)
        counts = store.counts()
    _print_import(args, report, counts, f"{report.names} PNG names, {report.accepted + report.rejected} distinct files: ")
    return 0


# ---- snapshots --------------------------------------------------------------------------------------
def cmd_snapshot_pin(args) -> int:
    from pdd import snapshot  # lazy: start-up
    from pdd.source import pin  # lazy: start-up

    if args.from_snapshot:  # the takedown path: no store needed, the committed snapshot minus the exclusions
        source = snapshot.resolve(args.from_snapshot, args.out_dir)
        if Path(args.db).exists():  # a store that knows the name binds it too
            with _store_ro(args) as store:
                info = pin.pin_from(source, args.name, args.out_dir, exclusions.read(args.exclusions), store)
        else:
            info = pin.pin_from(source, args.name, args.out_dir, exclusions.read(args.exclusions))
        dropped = info["derived_from"]["excluded_ids"]
        print(f"pinned {info['name']} from {source}: {info['n_rows']} files ({len(dropped)} left out now"
              + (f": {', '.join(printable(f) for f in dropped[:5])}" + (" ..." if len(dropped) > 5 else "") if dropped else "")
              + f"), content hash {info['content_hash']} -> {args.out_dir}/{info['parquet']}")
        _refresh_card(args.out_dir)
        return 0
    with _store(args) as store:
        info = pin.pin(store, args.name, args.out_dir, exclusions.read(args.exclusions))
    print(f"pinned {info['name']}: {info['n_rows']} files, content hash {info['content_hash']} -> "
          f"{args.out_dir}/{info['parquet']}" + (f" ({info['excluded']} excluded)" if info.get("excluded") else ""))
    _refresh_card(args.out_dir)
    return 0


def _refresh_card(out_dir) -> None:
    """After a pin: the folder's dataset card lists the new snapshot too (a README.md pdd did not write is kept)."""
    from pdd import snapshot_card  # lazy: start-up

    try:
        snapshot_card.write(out_dir)
    except PddError as exc:
        print(f"pdd: note: dataset card not written: {exc}", file=sys.stderr)


def cmd_snapshot_card(args) -> int:
    from pdd import snapshot_card  # lazy: start-up

    card = snapshot_card.write(args.out_dir)
    if card is None:
        raise PddError(f"{args.out_dir}: no snapshots to describe (pin one first: `pdd snapshot pin NAME`)")
    print(card)
    return 0


def cmd_snapshot_list(args) -> int:
    from pdd import history  # lazy: start-up

    skipped: list = []
    infos = history.list_snapshots(args.out_dir, args.db, skipped)
    for path, why in skipped:
        print(f"pdd: warning: {path} skipped: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for i in infos:
        print(f"{i['name']:30s} {i['content_hash'][:16]}  {str(i['created'] or '-')[:19]:19s} {i['rows']:8d} rows  "
              f"excluded {i['excluded']}  " + ",".join(f"{printable(k)}={v}" for k, v in i["licences"].items()))
    return 0


def cmd_snapshot_show(args) -> int:
    from pdd import history, snapshot  # lazy: start-up

    i = history.info(snapshot.resolve(args.name, args.out_dir), args.db)
    print(json.dumps(i, indent=2) if args.json else "\n".join(history.format_info(i)))
    return 0


def cmd_snapshot_verify(args) -> int:
    from pdd import snapshot  # lazy: start-up

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


def cmd_snapshot_textconv(args) -> int:
    from pdd import history  # lazy: start-up

    try:
        history.textconv(args.file)
    except BrokenPipeError:  # the reader (git, head) stopped reading: not an error
        sys.stderr.close()
    return 0


def cmd_snapshot_blame(args) -> int:
    from pdd import history  # lazy: start-up

    if args.git is not None:  # the git history of the build snapshot; the store (if any) only explains removals
        if Path(args.db).exists():
            with _store_ro(args) as store:
                b = history.blame_git(args.file_id, args.git, args.repo, args.exclusions, store)
        else:
            b = history.blame_git(args.file_id, args.git, args.repo, args.exclusions)
        print(json.dumps(b, indent=2) if args.json else "\n".join(history.format_blame_git(b)))
        return 0
    with _store_ro(args) as store:
        b = history.blame(store, args.file_id, exclusions.read(args.exclusions))
    print(json.dumps(b, indent=2) if args.json else "\n".join(history.format_blame(b)))
    return 0


def cmd_diff(args) -> int:
    """Exit 0 when equal, 1 when different (like `git diff --exit-code`), 2 on error."""
    from pdd import diff  # lazy: start-up

    d = diff.diff(args.a, args.b, args.out_dir, args.repo, allowed=_allowed_licences(args.params, diff.DEFAULT_ALLOWED))
    if args.json:
        print(diff.to_json(d))
    else:
        print("\n".join(diff.format_text(d, stat=args.stat)))
    return 0 if d["equal"] else 1


def _allowed_licences(params_path: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """The audit's allowed licences from params.yaml when there is one (what counts as a rights regression)."""
    from pdd.core import params as params_mod  # lazy: start-up

    try:
        allowed = ((params_mod.read(params_path) or {}).get("audit") or {}).get("allowed_licences")
    except (PddError, OSError, AttributeError):
        allowed = None
    return tuple(allowed) if isinstance(allowed, list) and allowed else default


def _in_snapshots(file_id: str, snap_dir: str | Path) -> bool:
    """Whether FILE_ID is a row of a snapshot file in SNAP_DIR (what a clone without a store can check)."""
    from pdd import history  # lazy: start-up

    for path in sorted(Path(snap_dir).glob("*.parquet")):
        try:
            if history.row_in(path, file_id)[0] is not None:
                return True
        except PddError:
            continue  # a stray .parquet that is not a snapshot
    return False


def cmd_exclude(args) -> int:
    """The id must be a file the store knows or, in a clone without the store, a row of a snapshot in --out-dir."""
    check_id(args.file_id, "pdd exclude: file id", "it cannot be written to the list safely")
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


# ---- the build --------------------------------------------------------------------------------------
def cmd_dag_show(args) -> int:
    for s in dag.PIPELINE:
        print(f"{s.name:10s} {s.cmd:28s} deps={list(s.deps.values())} outs={list(s.outs.values())}")
    return 0


def cmd_dag_write(args) -> int:
    changed = dag.write()
    print("rewrote " + ", ".join(changed) if changed else "dvc.yaml, Snakefile and workflow/rules are up to date")
    return 0


def cmd_dag_check(args) -> int:
    stale = list(dag.stale())
    if stale:
        raise PddError(f"generated files out of date: {', '.join(stale)}; run `pdd dag write`")
    print("dvc.yaml, Snakefile and workflow/rules match pdd/build/dag.py")
    return 0


def cmd_params_set_args(args) -> int:
    """A preset (e.g. params-smoke.yaml) as `dvc exp run` arguments: one `-S 'key=value'` line per value."""
    from pdd.core import config  # lazy: start-up (config loads params' jsonschema)

    for item in config.set_params(config.preset(args.preset, args.params)):
        print(f"-S {shlex.quote(item)}")
    return 0


def cmd_verify(args) -> int:
    from pdd.build import verify  # lazy: start-up

    if args.key and not args.signatures:
        raise PddError("--key is the public key for --signatures: give both (pdd verify --signatures --key PUBLIC.pem)")
    if args.signatures:
        from pdd.build import signing  # lazy: model-signing loads sigstore and protobuf

        if not args.key:
            raise PddError("--signatures needs the signer's public key: --key PUBLIC.pem")
        if args.stages or args.workdir or args.keep:
            raise PddError("--signatures rebuilds nothing: it takes no STAGE, --workdir or --keep")
        checks = signing.verify_signatures(".", args.key)
        print(signing.report(checks))
        return 0 if all(c.ok for c in checks) else 1
    rows, workspace = verify.verify(".", args.stages or None, workdir=args.workdir, keep=args.keep)
    print(verify.report(rows))
    if args.keep:
        print(f"workspace kept: {workspace}")
    return 0 if all(r.same for r in rows) else 1


def cmd_sign(args) -> int:
    from pdd.build import signing  # lazy: model-signing loads sigstore and protobuf

    password = os.environ.get("PDD_KEY_PASSWORD")
    done = signing.sign(".", args.key, password.encode("utf-8") if password else None)
    print(f"signed {signing.PIPELINE} -> {done['signature']} (model-signing) and {done['statements']} provenance "
          f"statements -> {done['envelopes']} (DSSE); key {done['fingerprint']}")
    return 0


def cmd_launch(args) -> int:
    """The command that runs a stage on NODES x PROCESSES (what its Snakemake rule runs): print or run it."""
    from pdd.build import cluster  # lazy: start-up (cluster loads params' jsonschema)
    from pdd.core import params as params_mod  # lazy: start-up

    params = cluster.with_layout(params_mod.load(args.params), args.stage, args.nodes, args.processes_per_node)
    params_mod.validate(params, args.params)
    cluster.check_params(params, args.params)
    cmd = cluster.command(params, args.stage, "" if args.params == "params.yaml" else f"--params {shlex.quote(args.params)}")
    if args.dry_run:
        print(cmd)
        return 0
    return subprocess.call(["bash", "-c", cmd])


def cmd_stage(args) -> int:
    """A build stage in-process; its flags (args.stage_args, --help included) are the stage runner's to parse."""
    from pdd.build.runner import execute  # lazy: start-up (the runner loads params, configs, determinism)

    outcome = execute(args.command, args.stage_args)
    if outcome.summary:
        print(outcome.summary, file=sys.stderr)
    return 0


# ---- generate ---------------------------------------------------------------------------------------
GENERATE_HELP = """\
Draw images from a built pipeline folder (`dvc repro pipeline` writes models/pipeline; it is a stock
diffusers folder, no project code inside). One image per prompt and --n; each image has its own random
generator seeded from (--seed, prompt number, image number), as in the build's `sample` stage, so adding a
prompt changes no other image.

Prompts read best in the training captions' own style: title, category path, keywords.

examples:
  pdd generate --prompt "Apple, food/fruit, apple, fruit" -o apple.png
  pdd generate --prompt "Apple, food/fruit, apple, fruit" --prompt "Tree, plants/trees, tree, plant" \\
      --n 4 --seed 7 -o out/

-o FILE.png writes one image; -o FOLDER writes PP-K.png per prompt PP and image K (what models/samples
holds). Each written path is printed on its own line; warnings (a prompt longer than the text encoder
reads) go to stderr. Exit 0 done, 2 bad input.

Content credentials: with a signing key (--credentials-key KEY.pem --credentials-cert CHAIN.pem, or
$PDD_CREDENTIALS_KEY and $PDD_CREDENTIALS_CERT) each PNG carries a signed C2PA manifest: created by a
trained algorithm (digitalSourceType trainedAlgorithmicMedia), by this model (folder name and digest: the
model-signing digest when the folder has a model.sig, else its sha256 content hash), trained on the
snapshot named in its provenance.json, with the prompt, seed, steps and guidance. Without a key the images
are written without credentials and one warning says so (--no-credentials: no warning). A throw-away key:
`pdd credentials make-key DIR`; read an image's credentials: `pdd credentials show IMAGE` (or any C2PA
reader). Credentials mark an image; they are not a watermark: stripping the manifest (re-saving the
image) removes them without a trace."""


def _outputs(output: str | None, wanted: list[tuple[int, int]]) -> list[Path]:
    """Where each (prompt index, image index) goes: one FILE.png, or FOLDER/PP-K.png; checked before loading."""
    if output is None:
        output = "sample.png" if len(wanted) == 1 else "samples"
    out = Path(output)
    if out.suffix.lower() == ".png":
        if len(wanted) > 1:
            raise PddError(f"-o {out}: one file for {len(wanted)} images; give a folder (e.g. -o samples/)")
        if out.is_dir() or not out.parent.is_dir():
            raise PddError(f"-o {out}: not a writable file path (is the folder there?)")
        return [out]
    if (out.exists() or out.suffix) and not out.is_dir():
        raise PddError(f"-o {out}: not a .png file name or a folder; give FILE.png for one image or a folder")
    return [out / f"{i:02d}-{k}.png" for i, k in wanted]


def cmd_generate(args) -> int:
    """`pdd generate --prompt TEXT -o out.png`: images for people, with a progress bar."""
    if args.guidance < 1:
        raise PddError(f"--guidance {args.guidance} is below 1; use 1 (no guidance) or more")
    if not Path(args.model).is_dir():
        raise PddError(f"--model {args.model}: no such folder; build one with `dvc repro pipeline` "
                       "(it writes models/pipeline) or name a pipeline folder")
    prompts = args.prompt or []
    paths = _outputs(args.output, [(i, k) for i in range(len(prompts or [None])) for k in range(args.n)])
    from pdd import credentials  # lazy: start-up (cryptography, c2pa load when signing)

    key = None if args.no_credentials else credentials.signing_key(args.credentials_key, args.credentials_cert)
    if key:
        credentials.check_key(key)
    import torch  # lazy: torch + diffusers are ~3.5 s of start-up (module docstring)
    from diffusers.utils import logging as diffusers_logging  # lazy: the same
    from transformers.utils import logging as transformers_logging  # lazy: the same

    # before the libraries' modules load: transformers 5 warns at import time (e.g. that torchvision is
    # absent and CLIPImageProcessor falls back to PIL); our own one-line messages say what matters
    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
    from pdd.train import imaging, pipeline  # lazy: the same

    if args.threads:
        torch.set_num_threads(args.threads)
    for lib in (diffusers_logging, transformers_logging):  # no bars for loading the folder (instant, noise)
        lib.disable_progress_bar()
    try:
        pipe = pipeline.load_folder(args.model)
    finally:
        for lib in (diffusers_logging, transformers_logging):
            lib.enable_progress_bar()
    conditional = hasattr(pipe, "tokenizer")
    if conditional and not prompts:
        raise PddError(f"{args.model} is a text-conditional model: give --prompt TEXT")
    identity = credentials.model_identity(args.model) if key else None
    if key is None and not args.no_credentials:
        print(f"pdd: warning: the images get no content credentials (no signing key): {credentials.NO_KEY_HINT}",
              file=sys.stderr)
    for prompt in prompts if conditional else []:
        warning = pipeline.prompt_warning(pipe, prompt)
        if warning:
            print(f"pdd: warning: {warning}", file=sys.stderr)
    # the bar: diffusers' tqdm over each image's denoising steps
    images = pipeline.generate(pipe, prompts or None, seed=args.seed, steps=args.steps, guidance_scale=args.guidance,
                               per_prompt=args.n, progress=not args.quiet)
    paths[0].parent.mkdir(parents=True, exist_ok=True)   # -o FOLDER (a FILE.png's folder is there already)
    for path, (_i, _k, prompt, image) in zip(paths, images):
        png = imaging.png_bytes(image)
        if key:
            png = credentials.sign_png(png, key, credentials.manifest_definition(
                identity, prompt=prompt, seed=args.seed, steps=args.steps, guidance=args.guidance, title=path.name))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(png)
        tmp.replace(path)
        print(path)
    return 0


TRACE_HELP = """\
Which training images is IMAGE close to, and who made them? The image is rendered as the export renders
training images (params: export.resolutions, resample, fit, background), then compared with every image of
the export's train split in a learned feature space (--features: a transformers CLIPModel folder, default
models/judge, the quality stage's independent judge; models/clip works too) and in pixels (correlation at
memorization.pixel_size px). For each space: the K nearest training images with title, creator, source and
licence from the snapshot, and each similarity's percentile among the val images' nearest-train similarities
(real images the model never saw), flagged when above the memorization check's copy threshold (val's
memorization.percentile) in a space where it is not saturated.

examples:
  pdd trace out.png
  pdd trace out.png --k 4 --features models/clip --html trace.html

Limits: the nearest training images are the most similar ones, not the image's sources: a generated image
owes something to the whole training set, and closeness in a small CLIP trained on this data and in tiny
pixels is neither proof of copying nor of influence. It misses crops, mirrored or re-coloured copies and
objects pasted into a scene, and sees the training images as the export holds them (small squares). It
embeds the whole train and val splits on each run (seconds for the demo, minutes for a large snapshot).
Exit 0 done, 2 bad input (not an image, no model, no export)."""


def cmd_trace(args) -> int:
    from diffusers.utils import logging as diffusers_logging  # lazy: start-up (torch, transformers, diffusers)
    from transformers.utils import logging as transformers_logging  # lazy: the same

    # before the libraries' modules load (as in generate): their import-time warnings and loading bars are noise
    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    from pdd import trace  # lazy: the same
    from pdd.core import config  # lazy: the same

    if not Path(args.params).is_file():
        raise PddError(f"--params {args.params}: no such file; run in the project folder or pass --params")
    cfgs = config.load(args.params)
    if args.threads:
        import torch  # lazy: the same

        torch.set_num_threads(args.threads)
    inp = trace.Inputs(image=Path(args.image), features=Path(args.features), export=Path(args.export),
                       snapshot=Path(args.snapshot or cfgs["snapshot"].path), export_cfg=cfgs["export"],
                       mem_cfg=cfgs["memorization"])
    report = trace.trace(inp, args.k)
    if args.html:
        out = Path(args.html)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(trace.page(report), encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise PddError(f"--html {out}: cannot write it ({exc.strerror or exc})") from None
    try:
        print(json.dumps(trace.public(report), indent=2) if args.json else "\n".join(trace.text(report)))
    except BrokenPipeError:  # the reader (head, less) stopped reading: not an error
        sys.stderr.close()
    if args.html:
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


def cmd_credentials_show(args) -> int:
    from pdd import credentials  # lazy: start-up

    r = credentials.read(args.image)
    if args.json:
        print(json.dumps({"validation_state": r.state, "failures": r.failures, "manifest": r.manifest}, indent=2))
    else:
        print("\n".join(credentials.describe(r, args.image)))
    return 0 if r.state in ("Valid", "Trusted") and not r.failures else 1


def cmd_credentials_make_key(args) -> int:
    from pdd import credentials  # lazy: start-up

    paths = credentials.make_key(args.dir)
    print(f"wrote {paths['key']} (private: keep it) and {paths['chain']}; sign with "
          f"`pdd generate --credentials-key {paths['key']} --credentials-cert {paths['chain']} ...` "
          f"(self-made: readers show it as valid but untrusted)")
    return 0


# ---- the tree ---------------------------------------------------------------------------------------
def _add_snapshot_commands(sub) -> None:
    snap = sub.add_parser("snapshot", help="pin, list, show, verify, diff-text or blame dataset snapshots",
                          description="Dataset snapshots: immutable, content-hashed Parquet files (data/snapshots).")
    leaves = snap.add_subparsers(dest="action", required=True, metavar="ACTION")

    def leaf(name, func, help, *, db=True, out_dir=True, json_out=False, excl=False):
        p = leaves.add_parser(name, help=help, description=help)
        if db:
            p.add_argument("--db", default="data/pdd.duckdb")
        if out_dir:
            p.add_argument("--out-dir", default="data/snapshots")
        if excl:
            p.add_argument("--exclusions", default="data/exclusions.tsv", help="the takedown list")
        if json_out:
            p.add_argument("--json", action="store_true", help="JSON for machines")
        p.set_defaults(func=func)
        return p

    p = leaf("pin", cmd_snapshot_pin, "pin the store's accepted files as snapshot NAME (the exclusions left out)", excl=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--from", dest="from_snapshot", metavar="SNAPSHOT",
                   help="derive NAME from this snapshot (name or .parquet) minus the exclusions, without the store")
    leaf("card", cmd_snapshot_card, "write --out-dir/README.md, the dataset card that lets `datasets.load_dataset` "
         "read the snapshots in it (pin refreshes it)", db=False)
    leaf("list", cmd_snapshot_list, "the snapshots in --out-dir: name, content hash, created, rows, licences", json_out=True)
    p = leaf("show", cmd_snapshot_show, "one snapshot: counts by licence and source, exclusions, imports", json_out=True)
    p.add_argument("name", metavar="NAME")
    p = leaf("verify", cmd_snapshot_verify, "recompute a snapshot's content hash and check its pin records")
    p.add_argument("name", metavar="NAME")
    p = leaf("textconv", cmd_snapshot_textconv, "one canonical line per row of FILE (the git diff driver)",
             db=False, out_dir=False)
    p.add_argument("file", metavar="FILE")
    p = leaf("blame", cmd_snapshot_blame, "which snapshots FILE_ID entered, changed and left, and why",
             out_dir=False, json_out=True, excl=True)
    p.add_argument("file_id", metavar="FILE_ID")
    p.add_argument("--git", nargs="?", const="HEAD", metavar="REV_RANGE",
                   help="follow the build snapshot params.yaml names through git history instead of the store "
                        "(default HEAD; e.g. v1..v3); removals are explained from data/exclusions.tsv at each revision")
    p.add_argument("--repo", help="with --git: the git repository (default: the one around the current folder)")


def _add_build_commands(sub) -> None:
    p = sub.add_parser("dag", help="show the build DAG, or regenerate/check dvc.yaml and the Snakefile")
    p.set_defaults(func=cmd_dag_show)
    leaves = p.add_subparsers(dest="action", metavar="ACTION")
    leaves.add_parser("show", help="one line per stage: command, inputs, outputs (the default)").set_defaults(func=cmd_dag_show)
    leaves.add_parser("write", help="regenerate dvc.yaml, the Snakefile and workflow/rules").set_defaults(func=cmd_dag_write)
    leaves.add_parser("check", help="fail if the generated files are out of date").set_defaults(func=cmd_dag_check)

    p = sub.add_parser("params", help="params presets: print one as `dvc exp run -S` arguments")
    leaves = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = leaves.add_parser("set-args", help="a preset as `-S key=value` lines: `pdd params set-args params-smoke.yaml | "
                                           "xargs dvc exp run`",
                          description="Checks that the preset (a partial params file in params.yaml's shape) gives "
                                      "valid params over --params, then prints one `-S 'key=value'` line per value, "
                                      "in the syntax `dvc exp run -S` takes.")
    q.add_argument("preset", metavar="PRESET", help="a partial params file, e.g. params-smoke.yaml")
    q.add_argument("--params", default="params.yaml", help="the params file it applies over (default: params.yaml)")
    q.set_defaults(func=cmd_params_set_args)

    p = sub.add_parser("verify", help="rebuild (all or the named stages) in a temporary workspace and compare hashes",
                       description="Copies the tracked working tree and the pinned snapshot into a fresh workspace, "
                                   "runs `dvc repro [STAGE...]` there and compares each output's hash with dvc.lock, "
                                   "the manifests and the files in this repository. With --signatures --key PUBLIC.pem "
                                   "it rebuilds nothing and checks what `pdd sign` signed instead. Exit 0 same, "
                                   "1 different, 2 error.")
    p.add_argument("stages", nargs="*", metavar="STAGE", help="stages to rebuild (with what they depend on); default: all")
    p.add_argument("--workdir", help="build here instead of a new temporary folder (must be empty)")
    p.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    p.add_argument("--signatures", action="store_true",
                   help="rebuild nothing: check the signatures `pdd sign` wrote (models/pipeline.sig, "
                        "models/pipeline.intoto.jsonl) and every digest they cover, with --key")
    p.add_argument("--key", metavar="PUBLIC.pem", help="with --signatures: the signer's public key (PEM)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("sign", help="sign models/pipeline (model-signing, key method, offline) and its provenance "
                                    "statements (DSSE)",
                       description="Signs models/pipeline with OpenSSF model-signing's key method (no network), writing "
                                   "models/pipeline.sig, and wraps the provenance statement of every stage it was "
                                   "built from in a DSSE envelope signed with the same key, writing "
                                   "models/pipeline.intoto.jsonl. Refuses a folder or statement that is not what the "
                                   "build recorded. The key: an elliptic curve private key (P-256, P-384, P-521) in "
                                   "PEM; an encrypted one takes its password from PDD_KEY_PASSWORD. Check with "
                                   "`pdd verify --signatures --key PUBLIC.pem`. Run in the repository root.")
    p.add_argument("--key", required=True, metavar="PRIVATE.pem", help="the signing key (PEM)")
    p.set_defaults(func=cmd_sign)

    distributed = [s.name for s in dag.PIPELINE if s.distributed]
    p = sub.add_parser("launch", help="print (--dry-run) or run the command that runs a stage on several processes or nodes",
                       description="The command a stage's Snakemake rule runs: `python -m stages.STAGE` for one process, "
                                   "torchrun for several on one node, srun + torchrun (node rank from SLURM_NODEID, "
                                   "rendezvous on the first host of SLURM_JOB_NODELIST) for several nodes. Nodes and "
                                   "processes per node default to params.yaml resources.rules.STAGE.")
    p.add_argument("stage", choices=distributed, metavar="STAGE", help="a training stage: " + ", ".join(distributed))
    p.add_argument("--nodes", type=whole("machines"), help="machines (default: resources.rules.STAGE.nodes)")
    p.add_argument("--processes-per-node", type=whole("processes"),
                   help="processes per machine, e.g. one per GPU (default: resources.rules.STAGE.processes_per_node)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the command, run nothing")
    p.set_defaults(func=cmd_launch)

    for s in dag.PIPELINE:
        # no options of its own: every flag after the name (--params, --resume, --help, ...) is the stage's
        sub.add_parser(s.name, add_help=False, help=f"build stage: {s.name} (same as `{s.cmd}`; `pdd {s.name} --help`)",
                       ).set_defaults(func=cmd_stage, stage_args=[])


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="draw images from a built pipeline folder (text to image)",
                       description=GENERATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/pipeline", metavar="DIR",
                   help="a diffusers pipeline folder (default: models/pipeline)")
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="a text prompt (repeatable; unconditional models ignore it)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--steps", type=whole("denoising steps"), default=25, help="denoising steps (default 25)")
    p.add_argument("--guidance", type=float, default=3.0,
                   help="classifier-free guidance scale, >= 1 (1: none; default 3, what the build samples with)")
    p.add_argument("-n", "--n", dest="n", type=whole("images per prompt"), default=1, metavar="N",
                   help="images per prompt (default 1)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="FILE.png for one image, or a folder (default: sample.png for one image, samples/ for more)")
    p.add_argument("--threads", type=whole("threads"), help="torch CPU threads (default: torch's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--credentials-key", metavar="KEY.pem",
                   help="sign each image's C2PA content credentials with this ES256 private key (default: $PDD_CREDENTIALS_KEY)")
    p.add_argument("--credentials-cert", metavar="CHAIN.pem",
                   help="the key's certificate chain, leaf first (default: $PDD_CREDENTIALS_CERT)")
    p.add_argument("--no-credentials", action="store_true",
                   help="write the images without content credentials, and without the warning that says so")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("trace", help="the training images nearest to an image, with their creators and licences",
                       description=TRACE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--k", type=whole("neighbours"), default=8, help="nearest training images per space (default 8)")
    p.add_argument("--features", default="models/judge", metavar="MODEL_DIR",
                   help="a transformers CLIPModel folder for the feature space (default models/judge; models/clip works)")
    p.add_argument("--html", metavar="PAGE", help="also write an HTML page with the thumbnails side by side")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--export", default="data/export", metavar="DIR", help="the export folder (default data/export)")
    p.add_argument("--snapshot", metavar="PARQUET", help="the snapshot it was built from (default: params.yaml snapshot.path)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--threads", type=whole("threads"), help="torch CPU threads (default: torch's)")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser("credentials", help="read an image's content credentials, or make a throw-away signing key",
                       description="C2PA content credentials (pdd/credentials.py).")
    leaves = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = leaves.add_parser("show", help="validate an image's C2PA manifest and print what it says "
                                       "(exit 0 valid, 1 invalid: e.g. the pixels were edited, 2 none or unreadable)")
    q.add_argument("image", metavar="IMAGE")
    q.add_argument("--json", action="store_true", help="the active manifest and the validation results as JSON")
    q.set_defaults(func=cmd_credentials_show)
    q = leaves.add_parser("make-key", help="write a self-made CA and an ES256 signing key + chain into DIR "
                                           "(key.pem, chain.pem, ca.pem); trusted by no one, for trying it out")
    q.add_argument("dir", metavar="DIR")
    q.set_defaults(func=cmd_credentials_make_key)


def build_parser() -> Parser:
    parser = Parser(prog="pdd", description="PD-Diffusion: a reproducible build of a public-domain image model.")
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
    p.add_argument("--max-side", type=whole("pixels"), help="downscale stored images to this longest side (JPEG q90)")
    p.set_defaults(func=cmd_import_folder)

    p = sub.add_parser("import-openclipart", help="import the Open Clip Art Library (Debian openclipart-png/-svg, unpacked) into the store")
    p.add_argument("folder", help="where `dpkg-deb -x` unpacked both packages (or its usr/share/openclipart)")
    p.add_argument("--db", default="data/pdd.duckdb")
    p.add_argument("--max-side", type=whole("pixels"), default=64, help="longest side of the stored images (default 64; lossless WebP)")
    p.add_argument("--workers", type=whole("threads"), help="decoding threads (default: the CPU count, at most 8)")
    p.set_defaults(func=cmd_import_openclipart)

    _add_snapshot_commands(sub)

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

    _add_build_commands(sub)
    _add_generate(sub)
    commons_cli.register(sub)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The namespace of ARGV: `func` is the leaf's handler. A stage keeps the flags after its name."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and getattr(args, "func", None) is cmd_stage:
        args.stage_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else list(argv))
        return args.func(args) or 0
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pdd: interrupted; everything committed so far is kept", file=sys.stderr)
        return 130
    except Exception as exc:
        if not disk_full(exc):
            raise
        # a write the library under a command makes (the store's DuckDB file, a Parquet writer): one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        print(f"pdd: error: the disk is full ({first}); what was committed before is kept: free space and run "
              "the command again", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
