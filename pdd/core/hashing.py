"""Content hashes shared by every stage: files, directories, canonical JSON."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pdd.core.errors import PddError
from pdd.core.files import disk_full

CHUNK = 1 << 20
# Engine bookkeeping, not content: Snakemake drops this marker into directory outputs.
IGNORED_NAMES = frozenset({".snakemake_timestamp"})


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def list_files(root: str | Path) -> list[str]:
    """Relative POSIX paths of every file below root, sorted bytewise (stable across machines)."""
    root = Path(root)
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name in IGNORED_NAMES:
                continue
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out, key=lambda p: p.encode("utf-8"))


def hash_dir(root: str | Path, exclude: tuple[str, ...] = ()) -> str:
    """One hash for a directory tree: sha256 over 'relpath\\0filehash\\n' lines, sorted.

    ``exclude`` names relative paths to leave out.
    """
    h = hashlib.sha256()
    for rel in list_files(root):
        if rel in exclude:
            continue
        h.update(f"{rel}\0{hash_file(Path(root, rel))}\n".encode("utf-8"))
    return h.hexdigest()


def hash_path(path: str | Path, exclude: tuple[str, ...] = ()) -> str:
    path = Path(path)
    return hash_dir(path, exclude) if path.is_dir() else hash_file(path)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Indented, key-sorted JSON with a final newline, written atomically (stable bytes for equal data)."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temp name in the same folder and rename: readers never see half a file. A write that
    fails (a full disk, no permission) removes the temp file, leaves PATH as it was and is one PddError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PddError(f"{path}: cannot write it ({exc.strerror or exc}); it was left as it was: "
                           f"{'free space in ' + str(path.parent) if disk_full(exc) else 'check the folder'} "
                           "and run again") from None
        raise
