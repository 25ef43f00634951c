"""Provenance statements: beside every stage output's manifest, an in-toto Statement v1 with a SLSA v1
provenance predicate (https://slsa.dev/provenance/v1), <out>.intoto.json, the format supply-chain tools read.

It is a pure function of the manifest (`statement(manifest)`), so there is no second record to drift: the
manifest stays the one source, the statement is its standard form. Like the manifest it holds no time,
host or path outside the repository; a build run with SOURCE_DATE_EPOCH set gets that time as
runDetails.metadata.startedOn/finishedOn (and nothing else changes).

    subject                     every file of the output, with its sha256 (manifest output.files)
    buildDefinition
      buildType                 BUILD_TYPE (a stage of this project's DAG, run by pdd/build/runner.py)
      externalParameters        the stage, its params sections and the seed
      internalParameters        what the run recorded about determinism (the manifest's determinism and
                                nondeterminism fields)
      resolvedDependencies      the inputs (the snapshot and other files by sha256; upstream stage outputs by
                                TREE_DIGEST), the code revision (gitCommit) and every source file that ran
                                (sha256), the libraries (purl, by LIBRARY_DIGEST) and Python (version)
    runDetails
      builder                   this project's stage runner, at the project's version
      byproducts                the manifest itself, by sha256 (what the statement was made from)

Two digest algorithms are this project's own (in-toto allows named algorithms; consumers skip unknown ones):
TREE_DIGEST is pdd/core/hashing.py hash_dir, sha256 over 'relpath\\0sha256\\n' lines of a folder's files in
bytewise path order, i.e. the upstream stage's manifest output.sha256, which its own statement's subjects
reproduce; LIBRARY_DIGEST is manifest.library_digests (sha256 of a distribution's installed-file RECORD).

Bookkeeping, not a build input (pdd/build/codedeps.py): how a build is recorded, never what it computes.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from pdd.build import dag
from pdd.build.manifest import MANIFEST_SUFFIX, manifest_bytes, manifest_path, tree_hash
from pdd.core.errors import PddError
from pdd.core.hashing import sha256_bytes, write_atomic
from pdd.core.version import PROJECT_URL

STATEMENT_SUFFIX = ".intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = f"{PROJECT_URL}/build-types/stage/v1"
TREE_DIGEST = "pddTreeSha256"
LIBRARY_DIGEST = "pddRecordSha256"
MEDIA_TYPES = {".parquet": "application/vnd.apache.parquet", ".json": "application/json",
               ".tsv": "text/tab-separated-values"}


def statement_path(out_dir: str | Path) -> Path:
    """<out>.intoto.json, beside <out> and its manifest."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + STATEMENT_SUFFIX)


def stage_outputs() -> set[str]:
    """Every stage output folder of the DAG (an input that is one is a folder, digested by TREE_DIGEST)."""
    return {v for s in dag.PIPELINE for v in s.outs.values()}


def source_date() -> str | None:
    """SOURCE_DATE_EPOCH as RFC 3339 UTC, or None when it is not set."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    try:
        return datetime.fromtimestamp(int(raw), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        raise PddError(f"SOURCE_DATE_EPOCH={raw!r}: not a whole number of seconds since 1970; unset it or give "
                       "e.g. $(git log -1 --format=%ct)") from None


def _input(path: str, digest: str, folders: set[str]) -> dict:
    if path in folders:
        return {"name": path, "digest": {TREE_DIGEST: digest}}
    entry = {"name": path, "digest": {"sha256": digest}}
    media = MEDIA_TYPES.get(Path(path).suffix)
    return {**entry, "mediaType": media} if media else entry


def subjects(manifest: dict) -> list[dict]:
    out = manifest["output"]
    files = out.get("files")
    if not files:   # an empty folder (or a manifest from before output.files): the folder itself
        return [{"name": out["path"], "digest": {TREE_DIGEST: out["sha256"]}}]
    return [{"name": f"{out['path']}/{rel}", "digest": {"sha256": files[rel]}}
            for rel in sorted(files, key=lambda p: p.encode("utf-8"))]


def statement(manifest: dict) -> dict:
    """The in-toto Statement (SLSA v1 provenance) of one stage output, from its manifest alone."""
    folders = stage_outputs()
    deps = [_input(p, h, folders) for p, h in sorted(manifest.get("inputs", {}).items())]
    code = manifest.get("code", {})
    if code.get("revision") and code["revision"] != "unknown":
        deps.append({"uri": f"git+{PROJECT_URL}", "digest": {"gitCommit": code["revision"]}})
    for rel, sha in sorted(code.get("files", {}).items()):
        deps.append({"name": rel, "digest": {"sha256": sha}} if sha else {"name": rel})
    versions, digests = manifest.get("versions", {}), manifest.get("library_digests", {})
    for name, version in sorted(versions.items()):
        if version is None:
            continue
        if name == "python":
            deps.append({"name": "python", "uri": f"pkg:generic/python@{version}"})
            continue
        entry = {"name": name, "uri": f"pkg:pypi/{name}@{version}"}
        if digests.get(name):
            entry["digest"] = {LIBRARY_DIGEST: digests[name]}
        deps.append(entry)
    internal = {k: manifest[k] for k in ("determinism", "nondeterminism") if k in manifest}
    build = {"buildType": BUILD_TYPE,
             "externalParameters": {"stage": manifest["stage"], "params": manifest.get("params", {}),
                                    "seed": manifest.get("seed")},
             "resolvedDependencies": deps}
    if internal:
        build["internalParameters"] = internal
    builder = manifest.get("builder") or {}
    run = {"builder": {"id": builder.get("id", f"{PROJECT_URL}/pdd/build/runner.py"),
                       **({"version": {"pd-diffusion": builder["version"]}} if builder.get("version") else {})},
           "byproducts": [{"name": manifest["output"]["path"] + MANIFEST_SUFFIX,
                           "digest": {"sha256": sha256_bytes(manifest_bytes(manifest))},
                           "mediaType": "application/json"}]}
    when = source_date()
    if when:
        run["metadata"] = {"startedOn": when, "finishedOn": when}
    return {"_type": STATEMENT_TYPE, "subject": subjects(manifest), "predicateType": PREDICATE_TYPE,
            "predicate": {"buildDefinition": build, "runDetails": run}}


def statement_bytes(stmt: dict) -> bytes:
    """The file's bytes: indented, key-sorted JSON with a final newline (the manifests' form)."""
    return (json.dumps(stmt, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_statement(out_dir: str | Path, manifest: dict) -> Path:
    """Write <out>.intoto.json from the manifest just written beside <out>."""
    path = statement_path(out_dir)
    write_atomic(path, statement_bytes(statement(manifest)))
    return path


def read_manifest_at(out_dir: str | Path, root: str | Path = ".") -> dict:
    path = Path(root) / manifest_path(out_dir)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PddError(f"{manifest_path(out_dir)} not found: build the stage first (`dvc repro`)") from None
    except (OSError, ValueError) as exc:
        raise PddError(f"{manifest_path(out_dir)}: not a readable manifest ({exc})") from None


def stale_statements(root: str | Path) -> list[str]:
    """Each manifest under data/ and models/ whose statement beside it is missing or is not the one its
    manifest gives (a problem line per file)."""
    root = Path(root)
    problems = []
    for m in sorted([*root.glob("data/*" + MANIFEST_SUFFIX), *root.glob("models/*" + MANIFEST_SUFFIX)]):
        out = m.with_name(m.name[: -len(MANIFEST_SUFFIX)])
        st = statement_path(out)
        manifest = json.loads(m.read_text(encoding="utf-8"))
        rel, name = st.relative_to(root).as_posix(), manifest.get("stage", out.name)
        if not st.is_file():
            problems.append(f"{rel} is missing: rerun the stage (dvc repro -f -s {name}) and commit it")
        elif st.read_bytes() != statement_bytes(statement(manifest)):
            problems.append(f"{rel} is not the statement of {m.relative_to(root).as_posix()}: rerun the stage "
                            f"(dvc repro -f -s {name}) and commit both")
    return problems


def output_of(stmt: dict) -> str:
    """The output folder a statement describes (its manifest byproduct's name without the suffix)."""
    name = stmt["predicate"]["runDetails"]["byproducts"][0]["name"]
    if not name.endswith(MANIFEST_SUFFIX):
        raise KeyError(name)
    return name[: -len(MANIFEST_SUFFIX)]


def chain_tree(stmt: dict) -> str | None:
    """The TREE_DIGEST of the output a statement describes, from its subjects (None for a malformed one)."""
    try:
        subs, base = stmt["subject"], output_of(stmt)
        if len(subs) == 1 and subs[0]["name"] == base:
            return subs[0]["digest"][TREE_DIGEST]
        if not all(s["name"].startswith(base + "/") for s in subs):
            return None
        return tree_hash({s["name"][len(base) + 1:]: s["digest"]["sha256"] for s in subs})
    except (KeyError, TypeError, IndexError):
        return None
