"""Per-artifact manifests: what was built, from what, with which params, seed,
code and libraries. Written next to the output as <output dir>.manifest.json,
not inside it: the manifest names the git revision and exact library versions,
which must not change the artifact's own bytes or anything built from it.
Manifests hold no timestamps or host names, so two clean builds of the same
commit write identical manifests."""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

from pdd.build.codedeps import module_closure, ran_files
from pdd.core.determinism import nondeterminism_notes
from pdd.core.hashing import hash_path, write_json
from pdd.core.version import package_versions

MANIFEST_SUFFIX = ".manifest.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "torch", "numpy", "pillow", "pyarrow", "duckdb", "tokenizers", "transformers",
    "diffusers", "accelerate", "safetensors", "dvc", "snakemake",
)


def library_versions() -> dict:
    return {"python": platform.python_version(), **package_versions(LIBRARIES)}


def code_revision(code_files: list[str]) -> str:
    """The last git commit that changed any of the stage's source files, or 'unknown'.

    Not HEAD: committing dvc.lock or docs moves HEAD without changing what the stage runs, and
    the manifest (inside the output) must not change with it. Uncommitted edits show up in
    `code.files`, the sha256 of every source file that actually ran."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H", "--", *code_files],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_hashes(code_files: list[str]) -> dict:
    """sha256 of each source file the stage runs (the same list DVC/Snakemake track as deps)."""
    out = {}
    for rel in code_files:
        path = REPO_ROOT / rel
        out[rel] = hash_path(path, exclude=()) if path.exists() else None
    return out


def manifest_path(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + MANIFEST_SUFFIX)


def output_hash(out_dir: str | Path) -> str:
    return hash_path(out_dir)


def write_manifest(
    out_dir: str | Path,
    *,
    stage: str,
    inputs: list[str | Path],
    params: dict,
    seed: int,
    module: str,
    extra: dict | None = None,
    nondeterminism: list[str] | None = None,
) -> dict:
    """Write <out_dir>.manifest.json and return it. Call after everything else is written."""
    out_dir = Path(out_dir)
    deps, ran = module_closure(module), ran_files(module)
    manifest = {
        "stage": stage,
        "output": {"path": out_dir.as_posix(), "sha256": output_hash(out_dir)},
        "inputs": {Path(p).as_posix(): hash_path(p) for p in inputs},
        "params": params,
        "seed": seed,
        "code": {"revision": code_revision(deps), "deps": deps, "files": code_hashes(ran)},
        "versions": library_versions(),
        "nondeterminism": (nondeterminism or []) + nondeterminism_notes(),
        **(extra or {}),
    }
    write_json(manifest_path(out_dir), manifest)
    return manifest


def read_manifest(out_dir: str | Path) -> dict:
    with open(manifest_path(out_dir), encoding="utf-8") as fh:
        return json.load(fh)
