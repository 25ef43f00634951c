"""`pdd verify [STAGE...]`: rebuild from the pinned snapshot in a temporary workspace and compare, stage by
stage, with what this repository says it built. Reproducible builds, for model weights.

The workspace is a copy of the tracked working tree (`git ls-files`, as the files are now) plus the pinned
snapshot when git does not hold it (DVC-tracked snapshots), with no dvc.lock, no build outputs, no metrics and
no cache: `dvc repro [STAGE...]` there builds everything from scratch. Then, for each stage that ran and each
output it declares (directories, metrics and plots; not the manifests, which record git revisions and library
versions, i.e. bookkeeping), the rebuilt output's hash is compared with, where the repository has them:

  dvc.lock    the md5 DVC recorded for the output (what `dvc push` would ship)
  manifest    output.sha256 of <out>.manifest.json (pdd/core/hashing.py hash_dir)
  files here  the hash of the output as it is on disk in the repository now

so a byte changed in a built artifact (files here), a record that does not match the code and snapshot
(dvc.lock / manifest, e.g. after `dvc commit` of a changed artifact), and a build that does not reproduce all
show as a row with same = no, naming the stage. Exit 0 when every row matches, 1 otherwise.

Bit-for-bit equality of the float stages needs the same machine type, torch build and thread counts (see each
manifest's `nondeterminism`): audit, export and tokenizer must reproduce anywhere; clip, vae, latents, unet,
sample, memorization and the pipeline folder only on the same kind of hardware and software. The report says
which: when only the files here differ and the rebuild matches dvc.lock and the manifest, the file was modified
after the build; a float stage is put down to the platform only when the rebuild's manifest records another
one than the reference's (library versions, device, determinism settings).

`pdd verify --signatures --key PUBLIC.pem` rebuilds nothing: it checks what `pdd sign` signed (pdd/build/signing.py).

Bookkeeping, not a build input (pdd/build/codedeps.py: pdd.build.* modules that decide nothing a stage computes).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from pdd.build import dag
from pdd.core import params as params_mod
from pdd.core.hashing import hash_path
from pdd.core.errors import PddError

ANYWHERE = ("audit", "export", "tokenizer")
HARDWARE_BOUND = ("clip", "vae", "latents", "unet", "sample", "memorization", "pipeline")
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "pdd verify", "GIT_AUTHOR_EMAIL": "verify@pdd.invalid",
                "GIT_COMMITTER_NAME": "pdd verify", "GIT_COMMITTER_EMAIL": "verify@pdd.invalid",
                "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


@dataclass
class Row:
    stage: str
    output: str
    record: str          # dvc.lock | manifest | files here
    expected: str | None
    got: str | None
    platform: str | None = None   # how the rebuild's platform differs from the recorded build's: "" the same
    #                               (library versions, device, determinism), None unknown (no manifest)

    @property
    def same(self) -> bool:
        return self.expected is not None and self.expected == self.got


def upstream(names: list[str]) -> list[str]:
    """The named stages and every stage they depend on, in DAG order (what `dvc repro NAME...` runs)."""
    producers = {}
    for s in dag.PIPELINE:
        for v in s.outs.values():
            producers[v] = s.name
        for v in [*s.metrics.values(), *s.plots.values()]:
            producers[v] = s.name
    want, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in want:
            continue
        want.add(name)
        todo.extend(producers[d] for d in dag.stage(name).deps.values() if d in producers)
    return [s.name for s in dag.PIPELINE if s.name in want]


def outputs(stage, params) -> list[tuple[str, bool]]:
    """(path, is a directory output) of what a stage builds, manifests left out."""
    return ([(dag.resolve(v, params), True) for v in stage.outs.values()]
            + [(dag.resolve(v, params), False) for v in [*stage.metrics.values(), *stage.plots.values()]])


def lock_hashes(lock_file: Path) -> dict:
    """{stage: {out path: md5}} from a dvc.lock ({} when there is none)."""
    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    return {name: {o["path"]: o.get("md5") for o in entry.get("outs", [])}
            for name, entry in (lock.get("stages") or {}).items()}


def manifest_hash(out: Path) -> str | None:
    path = out.with_name(out.name + ".manifest.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))["output"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def manifest_platform(out: Path) -> dict | None:
    """What a manifest records of the platform that built OUT: library versions and the compute settings
    (device, determinism). No machine type or host name: manifests hold none (pdd/build/manifest.py)."""
    path = out.with_name(out.name + ".manifest.json")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        return {**{k: str(v) for k, v in (m.get("versions") or {}).items()},
                **{f"compute {k}": str(v) for k, v in (m.get("determinism") or {}).items()}}
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def platform_difference(recorded: dict | None, here: dict | None) -> str | None:
    """'' when the rebuild ran on the platform the record names, else what differs; None when unknown."""
    if recorded is None or here is None:
        return None
    diff = [f"{k} {here.get(k, '-')} here, {recorded.get(k, '-')} recorded" for k in sorted(recorded.keys() | here.keys())
            if recorded.get(k) != here.get(k)]
    return "; ".join(diff)


def tracked_files(root: Path) -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise PddError(f"{root}: not a git checkout (pdd verify rebuilds the tracked files)") from None
    return [p for p in out.stdout.decode().split("\0") if p and (root / p).is_file()]


def engine_env(workspace: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0",
                "PYTHONPATH": str(workspace)})
    env.update(GIT_IDENTITY)
    return env


def prepare(root: Path, workspace: Path, params: dict) -> None:
    """The tracked working tree, the pinned snapshot and nothing built."""
    for rel in tracked_files(root):
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    snap = dag.resolve(dag.SNAPSHOT, params)
    if not (workspace / snap).is_file():
        if not (root / snap).is_file():
            raise PddError(f"snapshot {snap} not found in {root}; fetch it first (`dvc pull {snap}`)")
        (workspace / snap).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / snap, workspace / snap)
    (workspace / "dvc.lock").unlink(missing_ok=True)
    for s in dag.PIPELINE:
        for rel in [*(dag.resolve(v, params) for v in [*s.outs.values(), *s.manifests.values(),
                                                         *s.metrics.values(), *s.plots.values()])]:
            p = workspace / rel
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    env = engine_env(workspace)
    for cmd in (["git", "init", "-q", "-b", "verify"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "pdd verify"]):
        subprocess.run(cmd, cwd=workspace, env=env, check=True, capture_output=True)


def rebuild(workspace: Path, stages: list[str] | None, timeout: int | None = None) -> None:
    cmd = ["dvc", "repro", *(stages or [])]
    try:
        proc = subprocess.run(cmd, cwd=workspace, env=engine_env(workspace), capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise PddError("dvc not found: install the locked environment (`python3 tasks.py setup`)") from None
    except subprocess.TimeoutExpired:
        raise PddError(f"the rebuild in {workspace} took longer than {timeout} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if ln.startswith(("pdd: error", "ERROR"))), lines[-1] if lines else "")
        raise PddError(f"the rebuild failed ({' '.join(cmd)} in {workspace}): {why}")


def compare(root: Path, workspace: Path, stages: list[str], params: dict) -> list[Row]:
    expected_lock, got_lock = lock_hashes(root / "dvc.lock"), lock_hashes(workspace / "dvc.lock")
    rows = []
    for name in stages:
        s = dag.stage(name)
        dirs = [rel for rel, is_dir in outputs(s, params) if is_dir]
        platform = platform_difference(*(next((p for p in map(manifest_platform, (r / rel for rel in dirs)) if p), None)
                                         for r in (root, workspace)))
        for rel, is_dir in outputs(s, params):
            got = hash_path(workspace / rel) if (workspace / rel).exists() else None
            if rel in expected_lock.get(name, {}):
                rows.append(Row(name, rel, "dvc.lock", expected_lock[name][rel], got_lock.get(name, {}).get(rel), platform))
            if is_dir and manifest_hash(root / rel) is not None:
                rows.append(Row(name, rel, "manifest", manifest_hash(root / rel), got, platform))
            if (root / rel).exists():
                rows.append(Row(name, rel, "files here", hash_path(root / rel), got, platform))
            if not any(r.stage == name and r.output == rel for r in rows):
                rows.append(Row(name, rel, "no record", None, got, platform))
    return rows


def table(rows: list[Row]) -> str:
    def short(h):
        return "-" if h is None else h[:16]
    head = ("stage", "output", "record", "expected", "got", "same")
    body = [(r.stage, r.output, r.record, short(r.expected), short(r.got), "yes" if r.same else "NO") for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body])


def verify(root: str | Path = ".", stages: list[str] | None = None, workdir: str | Path | None = None,
           keep: bool = False, timeout: int | None = None) -> tuple[list[Row], Path]:
    """Rebuild in a fresh workspace and compare; returns (rows, workspace). Raises PddError on bad input."""
    root = Path(root).resolve()
    if not (root / "dvc.yaml").is_file():
        raise PddError(f"{root}: no dvc.yaml here; run pdd verify in the repository root")
    for name in stages or []:
        try:
            dag.stage(name)
        except KeyError:
            raise PddError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in dag.PIPELINE)}") from None
    params = params_mod.load(root / "params.yaml")
    scope = upstream(stages) if stages else [s.name for s in dag.PIPELINE]
    workspace = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pdd-verify-"))
    if workdir:
        if workspace.exists() and any(workspace.iterdir()):
            raise PddError(f"{workspace}: not empty; give an empty or new folder to --workdir")
        workspace.mkdir(parents=True, exist_ok=True)
    try:
        prepare(root, workspace, params)
        rebuild(workspace, stages, timeout)
        rows = compare(root, workspace, scope, params)
    finally:
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    return rows, workspace


def report(rows: list[Row]) -> str:
    bad = sorted({r.stage for r in rows if not r.same}, key=[s.name for s in dag.PIPELINE].index)
    lines = [table(rows)]
    if not bad:
        lines.append(f"verified: all {len(rows)} checks of {len({r.stage for r in rows})} stage(s) match the rebuild")
        return "\n".join(lines)
    lines.append(f"DIFFERENT: {', '.join(bad)}")
    unrecorded = sorted({r.stage for r in rows if r.record == "no record"}, key=[s.name for s in dag.PIPELINE].index)
    if unrecorded:
        lines.append(f"{', '.join(unrecorded)}: nothing to compare with (no dvc.lock entry, manifest or files here): "
                     "build first (`dvc repro`), then verify")
    bad = [b for b in bad if b not in unrecorded]
    # only the files here differ, and the rebuild matches the hashes recorded at build time: the file was
    # changed after the build, wherever the stage runs (no machine to blame)
    modified = [b for b in bad if all(r.record == "files here" for r in rows if r.stage == b and not r.same)
                and any(r.same for r in rows if r.stage == b and r.record in ("dvc.lock", "manifest"))]
    for b in modified:
        outs = sorted({r.output for r in rows if r.stage == b and not r.same})
        lines.append(f"{b}: {', '.join(outs)} here differs from what its recorded inputs produce, and the rebuild "
                     f"matches the hashes recorded when it was built (dvc.lock, manifest): the file here was modified "
                     f"after the build; restore it (`dvc checkout {b}`) or rebuild it (`dvc repro -f -s {b}`)")
    bad = [b for b in bad if b not in modified]
    platform = {b: next((r.platform for r in rows if r.stage == b), None) for b in bad}
    bound = [b for b in bad if b in HARDWARE_BOUND and platform[b] != ""]
    same_platform = [b for b in bad if b in HARDWARE_BOUND and platform[b] == ""]
    if any(b in ANYWHERE for b in bad):
        lines.append(f"{', '.join(b for b in bad if b in ANYWHERE)}: must reproduce on any machine: the artifact or its "
                     "record was changed after the build, or the build is not a function of its inputs")
    if same_platform:
        lines.append(f"{', '.join(same_platform)}: the rebuild differs from what was recorded, on the platform the record "
                     "names (same library versions, device and determinism settings): the artifact or its record was "
                     "changed after the build, the machine type differs (manifests do not record it), or the build is "
                     "not a function of its recorded inputs")
    for b in bound:
        where = f" (the platform differs: {platform[b]})" if platform[b] else " (the record does not say on which platform)"
        lines.append(f"{b}: float training/sampling; bit-identical only on the same machine type, torch "
                     f"build and thread counts as the reference (see the manifests' nondeterminism notes){where}")
    return "\n".join(lines)
