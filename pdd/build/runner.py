"""The one stage runner: every DAG stage's bookkeeping, driven by the registry (pdd/build/dag.py).

A stage module (stages/<name>.py) declares only its compute:

    def check(ctx) -> None          optional: everything that can be wrong with the inputs, raised as PddError
    def compute(ctx) -> Outcome     write the artifacts into ctx.outs[...]; return metrics, plots, notes
    def add_args(parser) -> None    optional: extra command-line flags (e.g. --resume)

and ends with `if __name__ == "__main__": raise SystemExit(run("<name>"))`. The runner reads paths and
params from the registry (no stage repeats a path), validates params and builds the typed configs, takes
a per-stage lock, checks every input *before* touching the previous output, has the stage write into
fresh temporary folders beside the outputs and swaps them into place only when it succeeded (so a bad
run never wipes a good artifact), then writes metrics, plots and the manifest.

Under torchrun (several processes or nodes: pdd/build/cluster.py) every process computes, but only the
process of global rank 0 takes the lock and places the outputs, metrics and manifest; the others write
into a private temporary folder that is removed afterwards (their weights are rank 0's: DDP keeps them
in step).

Bookkeeping, not a build input: this module is left out of every stage's code dependencies
(pdd/build/codedeps.py); the manifest still records the hash of every file that ran.
"""
from __future__ import annotations

import argparse
import fcntl
import importlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pdd.build import dag
from pdd.build.manifest import manifest_path, write_manifest
from pdd.build.provenance import source_date, statement_path, write_statement
from pdd.core import config as config_mod
from pdd.core import params as params_mod
from pdd.core.determinism import apply as apply_compute, stage_record
from pdd.core.errors import PddError
from pdd.core.files import disk_full
from pdd.core.hashing import write_atomic, write_json

LOCK_DIR = Path(".pdd/locks")
CHECKPOINT_DIR = Path("models/.checkpoints")


@dataclass
class Outcome:
    """What a stage's compute returns besides the artifacts it wrote."""
    metrics: dict = field(default_factory=dict)                # -> each declared metrics file (one per stage)
    plots: dict = field(default_factory=dict)                  # plot name (as in the registry) -> bytes or str
    summary: str = ""                                          # one line for people (stderr)
    extra: dict = field(default_factory=dict)                  # more manifest fields
    nondeterminism: list = field(default_factory=list)         # what this stage cannot promise bit for bit


@dataclass
class Context:
    stage: object                                              # the registry entry (dag.Stage)
    params: dict                                               # all validated params
    cfgs: dict                                                 # section name -> typed config
    args: argparse.Namespace
    deps: dict                                                 # input name -> Path
    outs: dict                                                 # output name -> Path to write (a fresh temp folder)
    final_outs: dict                                           # output name -> where it lands
    plots: dict                                                # plot name -> final Path (write via Outcome.plots)
    checkpoints: Path                                          # resumable state of this stage
    live: Path | None = None                                   # the training log (dvclive) of this stage, when it has one

    @property
    def seed(self) -> int:
        return self.params["seed"]

    @property
    def cfg(self):
        """The typed config of the stage's own params section (named like the stage, else its first)."""
        return self.cfgs.get(self.stage.name) or self.cfgs[self.stage.params[0]]


def _resolve_path(value: str, params: dict) -> Path:
    return Path(dag.resolve(value, params))


def _lock(name: str):
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fh = open(LOCK_DIR / f"{name}.lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise PddError(f"stage {name} is already running in this folder (lock {LOCK_DIR / name}.lock); "
                       "wait for it to finish") from None
    return fh


# ---- one build engine per folder --------------------------------------------------------------
# DVC and Snakemake both remove a stage's old outputs before they run it, so the two building one folder
# at once delete what the other's stages read (a stage then said "input ... not found"). Each keeps a
# second run of itself out (DVC's repo lock, Snakemake's directory lock), but not the other: a stage run
# under one engine is refused, naming the other's process, while the other engine runs in this folder.
ENGINES = ("dvc", "snakemake")


def _engine_of(pid: int | str) -> str | None:
    """'dvc' or 'snakemake' when process PID is one of them (by its command line), else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    names = [Path(a.decode(errors="replace")).name for a in argv[:3]]   # `dvc ...`, `python .../snakemake ...`
    return next((e for e in ENGINES if e in names), None)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def engine_ancestors() -> dict[int, str]:
    """{pid: engine} of the dvc / snakemake processes this process runs under."""
    found, pid = {}, os.getppid()
    for _ in range(64):
        if pid <= 1:
            break
        if _engine_of(pid):
            found[pid] = _engine_of(pid)
        pid = _parent(pid)
    return found


def other_engines_here(ancestors: dict[int, str]) -> list[tuple[int, str]]:
    """(pid, engine) of every dvc / snakemake process working in this folder that is not one of ANCESTORS
    and not of their kind (a second run of one engine is that engine's own business)."""
    here, mine = Path.cwd().resolve(), set(ancestors.values())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ancestors or int(entry.name) == os.getpid():
            continue
        engine = _engine_of(entry.name)
        if engine is None or engine in mine:
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() == here:
                found.append((int(entry.name), engine))
        except OSError:
            continue
    return sorted(found)


def _one_engine(stage: str) -> None:
    """Refuse a stage run under DVC while Snakemake builds this folder, and the other way round."""
    ancestors = engine_ancestors()
    if not ancestors:   # run by hand: the per-stage lock keeps a second run of the same stage out
        return
    others = other_engines_here(ancestors)
    if others:
        pid, engine = others[0]
        me = sorted(set(ancestors.values()))[0]
        raise PddError(f"stage {stage}: a {engine} run (pid {pid}) is building this folder ({Path.cwd()}) while this "
                       f"{me} run is; the two must not build one folder at once (each removes outputs the other's "
                       f"stages read): wait for it to finish, then run again")


def _rank() -> int:
    """This process's global rank under torchrun / accelerate launch (RANK); 0 when it runs alone."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _tmp_for(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def _clean_stale_tmps(final: Path) -> None:
    """Temp folders of runs that were killed (their pid is gone) are removed."""
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(p, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace final with tmp: the old artifact is removed only once the new one is in place."""
    manifest_path(final).unlink(missing_ok=True)   # no manifest (or statement) may outlive the output it describes
    statement_path(final).unlink(missing_ok=True)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_bytes(path: Path, data) -> None:
    write_atomic(path, data.encode("utf-8") if isinstance(data, str) else data)


def parse_args(stage, module, argv):
    parser = argparse.ArgumentParser(prog=f"pdd {stage.name}",
                                     description=f"Build stage `{stage.name}` (reads params sections: {', '.join(stage.params)}).")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if hasattr(module, "add_args"):
        module.add_args(parser)
    return parser.parse_args(argv)


def execute(name: str, argv: list[str] | None = None) -> Outcome:
    """Run stage NAME in the current folder; raises PddError on bad input or failure."""
    stage = dag.stage(name)
    module = importlib.import_module(stage.module)
    args = parse_args(stage, module, argv)
    params = params_mod.load(args.params)
    cfgs = config_mod.check(params, only=stage.params, source=args.params)
    source_date()   # a SOURCE_DATE_EPOCH the provenance statement cannot use fails here, before anything runs
    # params.yaml compute: deterministic kernels (or not) and attention, before anything runs a model
    determinism, notes = stage_record(apply_compute(cfgs["compute"]) if "compute" in stage.params else None)
    _one_engine(name)   # before the inputs are looked for: another engine may have removed them
    deps = {k: _resolve_path(v, params) for k, v in stage.deps.items()}
    for k, path in deps.items():
        if not path.exists():
            producer = next((s.name for s in dag.PIPELINE if v_in(s, path, params)), None)
            how = f"build it first (`dvc repro {producer}`)" if producer else "check params.yaml"
            raise PddError(f"{name}: input {k} ({path}) not found; {how}")
    final_outs = {k: _resolve_path(v, params) for k, v in stage.outs.items()}
    plots = {k: _resolve_path(v, params) for k, v in stage.plots.items()}
    live = _resolve_path(stage.live, params) if stage.live else None
    if _rank() != 0:
        return _execute_follower(module, Context(stage, params, cfgs, args, deps, {}, final_outs, plots,
                                                 CHECKPOINT_DIR / name))
    sliced = getattr(args, "slice", None)   # (I, N): one slice of a stage scattered over cluster jobs
    if sliced is not None:
        final_outs = {k: slice_dir(v, sliced[0]) for k, v in final_outs.items()}
    lock = _lock(name if sliced is None else f"{name}-slice-{sliced[0]}")
    try:
        ctx = Context(stage, params, cfgs, args, deps, {}, final_outs, plots, CHECKPOINT_DIR / name, live)
        if hasattr(module, "check"):
            module.check(ctx)   # every input checked before the previous output is touched
        for k, final in final_outs.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            _clean_stale_tmps(final)
            tmp = _tmp_for(final)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            ctx.outs[k] = tmp
        try:
            outcome = module.compute(ctx) or Outcome()
        except BaseException as exc:
            for tmp in ctx.outs.values():
                shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(exc):   # one line, not a traceback; the temporary folders are gone
                where = ", ".join(str(p) for p in final_outs.values())
                raise PddError(f"{name}: the disk is full ({str(exc)[:200]}); nothing was replaced, the previous "
                               f"output is kept: free space for {where} and run it again") from None
            raise
        for k, final in final_outs.items():
            _swap_in(ctx.outs[k], final)
        if sliced is not None:   # the gathering run writes the output's metrics, plots and manifest
            return outcome
        for metric_path in stage.metrics.values():
            write_json(_resolve_path(metric_path, params), outcome.metrics)
        for k, data in outcome.plots.items():
            _write_bytes(plots[k], data)
        for k, final in final_outs.items():
            manifest = write_manifest(final, stage=name, inputs=list(deps.values()),
                                      params={s: params[s] for s in stage.params}, seed=params["seed"],
                                      module=stage.module, extra={"determinism": determinism, **outcome.extra},
                                      nondeterminism=outcome.nondeterminism + notes)
            write_statement(final, manifest)   # <out>.intoto.json: the manifest as SLSA provenance
        shutil.rmtree(ctx.checkpoints, ignore_errors=True)   # the run is complete: its checkpoints are of no further use
    finally:
        lock.close()
    return outcome


def slice_dir(final: Path, part: int) -> Path:
    """Where slice I of a scattered stage's output goes: data/export -> data/export-slices/I."""
    return final.with_name(f"{final.name}-slices") / str(part)


def slice_arg(text: str) -> tuple[int, int]:
    """argparse type of --slice I/N."""
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 0/4)") from None
    if parts < 1 or not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be from 0 to N-1")
    return part, parts


def _execute_follower(module, ctx: Context) -> Outcome:
    """A process of rank > 0: the same checks and compute, into private temporary folders that are removed;
    rank 0 places the outputs (the lock, the swap and the manifest are its alone)."""
    if hasattr(module, "check"):
        module.check(ctx)
    for k in ctx.final_outs:
        ctx.outs[k] = Path(tempfile.mkdtemp(prefix=f"pdd-{ctx.stage.name}-{k}-rank{_rank()}-"))
    try:
        return module.compute(ctx) or Outcome()
    finally:
        for tmp in ctx.outs.values():
            shutil.rmtree(tmp, ignore_errors=True)


def v_in(stage, path: Path, params: dict) -> bool:
    return any(_resolve_path(v, params) == path for v in stage.outs.values())


def run(name: str, argv: list[str] | None = None) -> int:
    """`python -m stages.NAME`: run the stage; a PddError is one line on stderr and exit code 2."""
    try:
        outcome = execute(name, argv)
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdd: {name} interrupted; the previous output is kept", file=sys.stderr)
        return 130
    if outcome.summary and _rank() == 0:
        print(outcome.summary, file=sys.stderr)
    return 0
