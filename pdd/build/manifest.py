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
from importlib import metadata
from pathlib import Path

from pdd.build.codedeps import module_closure, ran_files
from pdd.core.determinism import nondeterminism_notes
from pdd.core.hashing import hash_file, hash_path, list_files, sha256_bytes, write_atomic
from pdd.core.version import PROJECT_URL, __version__, package_versions

MANIFEST_SUFFIX = ".manifest.json"
BUILDER_ID = f"{PROJECT_URL}/pdd/build/runner.py"   # who built it: this project's stage runner, at builder.version
REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "torch", "numpy", "pillow", "pyarrow", "duckdb", "tokenizers", "transformers",
    "diffusers", "accelerate", "safetensors", "dvc", "snakemake",
)


def library_versions() -> dict:
    return {"python": platform.python_version(), **package_versions(LIBRARIES)}


def library_digests() -> dict:
    """{library: sha256 of its installed file list}, the libraries of `library_versions` by digest.

    The digest is over the distribution's RECORD (each file's path, sha256 and size, as the wheel lists them),
    sorted, leaving out what the installer adds or rewrites per machine: scripts outside site-packages (their
    shebang names the venv), byte-code caches and INSTALLER / REQUESTED / direct_url.json / RECORD. The same
    wheel gives the same digest in any venv; None when the library or its RECORD is missing."""
    out = {}
    for name in LIBRARIES:
        try:
            record = metadata.distribution(name).read_text("RECORD")
        except metadata.PackageNotFoundError:
            record = None
        if not record:
            out[name] = None
            continue
        keep = sorted(line for line in record.splitlines()
                      if line and not line.startswith("../") and "__pycache__" not in line
                      and not line.split(",")[0].endswith(_INSTALLER_FILES))
        out[name] = sha256_bytes("\n".join(keep).encode("utf-8"))
    return out


_INSTALLER_FILES = ("/INSTALLER", "/REQUESTED", "/direct_url.json", "/RECORD")


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


def output_files(out_dir: str | Path) -> dict:
    """{relative path: sha256} of every file of an output folder, the listing output.sha256 is computed over."""
    out_dir = Path(out_dir)
    return {rel: hash_file(out_dir / rel) for rel in list_files(out_dir)}


def tree_hash(files: dict) -> str:
    """hashing.hash_dir of a folder from its listing {relative path: sha256}, without reading the files again:
    sha256 over 'relpath\\0sha256\\n' lines in bytewise path order."""
    lines = "".join(f"{rel}\0{files[rel]}\n" for rel in sorted(files, key=lambda p: p.encode("utf-8")))
    return sha256_bytes(lines.encode("utf-8"))


def _output(out_dir: Path) -> dict:
    if not out_dir.is_dir():
        return {"path": out_dir.as_posix(), "sha256": hash_file(out_dir)}
    files = output_files(out_dir)
    return {"path": out_dir.as_posix(), "sha256": tree_hash(files), "files": files}


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
        "output": _output(out_dir),
        "inputs": {Path(p).as_posix(): hash_path(p) for p in inputs},
        "params": params,
        "seed": seed,
        "code": {"revision": code_revision(deps), "deps": deps, "files": code_hashes(ran)},
        "versions": library_versions(),
        "library_digests": library_digests(),
        "builder": {"id": BUILDER_ID, "version": __version__},
        "nondeterminism": (nondeterminism or []) + nondeterminism_notes(),
        **(extra or {}),
    }
    write_atomic(manifest_path(out_dir), manifest_bytes(manifest))
    return manifest


def manifest_bytes(manifest: dict) -> bytes:
    """A manifest file's bytes: indented, key-sorted JSON with a final newline (hashing.write_json's form)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(out_dir: str | Path) -> dict:
    with open(manifest_path(out_dir), encoding="utf-8") as fh:
        return json.load(fh)
