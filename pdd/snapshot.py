"""The snapshot format: schema, canonical rows, content hash, read, verify, diff and summary.
Pinning (which reads the store) lives on the source side, in pdd/source/pin.py; this module never opens the store.

A snapshot is the build's source code: an immutable, content-hashed set of
accepted file revisions, exported as one sorted Parquet file with the image
bytes embedded (so a snapshot is self-contained: git or DVC tracks one file,
and nothing after the pin needs the database or the blob folder).

Canonical form: one row per file, sorted by file_id; every column but `image`
goes into the row's canonical JSON; the snapshot's content hash is sha256 over
those lines. The image bytes are covered through the `sha256` column, which is
checked against the bytes when pinning and again by the audit stage.
Pinning the same rows twice writes byte-identical Parquet (fixed writer
settings, no timestamps) and the same hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from pdd.core import files
from pdd.core.errors import PddError
from pdd.core.hashing import canonical_json, hash_file, sha256_bytes, write_json

SNAPSHOT_FORMAT = "pdd-snapshot/1"
DEFAULT_DIR = Path("data/snapshots")

SCHEMA = pa.schema([
    ("file_id", pa.string()),
    ("rev_no", pa.int32()),
    ("source_id", pa.string()),
    ("external_id", pa.string()),
    ("title", pa.string()),
    ("sha256", pa.string()),
    ("source_sha1", pa.string()),
    ("size", pa.int64()),
    ("mime", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("source_url", pa.string()),
    ("licence_status", pa.string()),
    ("licence_kind", pa.string()),
    ("licence_reason", pa.string()),
    ("licence_evidence", pa.string()),   # canonical JSON
    ("provenance", pa.string()),         # canonical JSON
    ("labels", pa.string()),             # canonical JSON list of {field, lang, text, licence, source}
    ("image", pa.binary()),
])
META_COLUMNS = [f.name for f in SCHEMA if f.name != "image"]
# Image bytes are JPEG/PNG already: compressing them again only costs every reader CPU.
COMPRESSION = {f.name: ("none" if f.name == "image" else "zstd") for f in SCHEMA}
WRITE_OPTIONS = dict(compression=COMPRESSION, row_group_size=128, use_dictionary=False,
                     write_statistics=False, write_page_index=False)


def canonical_row(row: dict) -> str:
    return canonical_json({k: row[k] for k in META_COLUMNS})


def content_hash(rows: Iterable[dict]) -> str:
    """sha256 over the format tag and each row's canonical JSON, one line each (rows may be streamed)."""
    h = hashlib.sha256(SNAPSHOT_FORMAT.encode() + b"\n")
    for row in rows:
        h.update(canonical_row(row).encode("utf-8") + b"\n")
    return h.hexdigest()


# ---- reading (no database needed: a snapshot file is self-contained) -----------------
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def snapshot_name(name) -> str:
    """A snapshot's name (a trailing '.parquet' dropped), or a one-line PddError: at most 100 letters,
    digits, '.', '_' and '-', starting with a letter or digit."""
    text = str(name) if isinstance(name, (str, Path)) else ""
    if text.endswith(".parquet"):
        text = text[: -len(".parquet")]
    if not NAME_RE.fullmatch(text):
        shown = str(name)[:60] + ("..." if len(str(name)) > 60 else "")
        raise PddError(f"snapshot name {shown!r} is not valid: 1-100 letters, digits, '.', '_' and '-', "
                       "starting with a letter or digit")
    return text


def resolve(name_or_path: str | Path, snap_dir: str | Path = DEFAULT_DIR) -> Path:
    """The Parquet file of a snapshot given as a path (with a folder, or an existing file) or as a
    name in SNAP_DIR ('NAME' or 'NAME.parquet')."""
    p = Path(name_or_path)
    text = str(name_or_path)

    def kind(path: Path) -> str | None:   # what PATH is when it exists and is no regular file
        try:
            return files.not_regular(path)
        except OSError:  # e.g. a name too long for the file system
            return None

    try:
        is_file = p.is_file()
    except OSError:
        is_file = False
    if is_file or "/" in text or os.sep in text or kind(p) not in (None, "a folder"):
        path = p
    else:
        path = Path(snap_dir) / f"{snapshot_name(text)}.parquet"
    try:
        found = path.is_file()
    except OSError:
        found = False
    if not found and kind(path):   # a FIFO, socket, device or folder: say what it is, not "not found"
        raise PddError(f"snapshot {text[:120]}: {str(path)[:160]} is {kind(path)}, not a snapshot file; "
                       "give a pinned snapshot's .parquet file or its name")
    if not found:
        try:
            hint = " (real snapshots are fetched with `dvc pull`)" if path.with_suffix(".parquet.dvc").exists() else ""
        except (OSError, ValueError):
            hint = ""
        raise PddError(f"snapshot {text[:120]}: {str(path)[:160]} not found{hint}")
    return path


def open_snapshot(path: str | Path) -> pq.ParquetFile:
    """A ParquetFile known to have the snapshot columns; anything else is a one-line PddError."""
    try:
        pf = pq.ParquetFile(path)  # (pq.read_table would import pandas via pyarrow.dataset)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PddError(f"{path}: not a readable snapshot Parquet file ({exc})") from None
    missing = [n for n in SCHEMA.names if n not in pf.schema_arrow.names]
    if missing:
        raise PddError(f"{path}: not a pdd snapshot (missing columns {', '.join(missing)}); pin one with `pdd snapshot pin`")
    # a crafted file with the right names but other types (an int file_id, a text image, a nested column)
    # would reach the readers as values they do not expect: refused here, before any row is read
    have = pf.schema_arrow
    for want in SCHEMA:
        found = [have.field(i).type for i in have.get_all_field_indices(want.name)]
        if found != [want.type]:
            what = f"appears {len(found)} times" if len(found) != 1 else f"is {found[0]}, not {want.type}"
            raise PddError(f"{path}: not a pdd snapshot: column {want.name!r} {what}; "
                           "re-pin it from the store with `pdd snapshot pin`")
    return pf


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    return open_snapshot(path).read(columns=columns)


def iter_batches(path: str | Path, batch_rows: int = 256, columns: list[str] | None = None):
    """Rows as lists of dicts, batch by batch, in file order (memory stays bounded for big snapshots)."""
    pf = open_snapshot(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pylist()


def read_meta(path: str | Path) -> dict:
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise PddError(f"{path}: not a readable snapshot Parquet file ({exc})") from None
    return {k.decode(): v.decode() for k, v in meta.items()}


def read_rows(path: str | Path) -> list[dict]:
    """Every row without its image bytes."""
    return read_table(path, META_COLUMNS).to_pylist()


def verify(path: str | Path, store=None) -> tuple[str, list[str]]:
    """Recompute the content hash and check every image against its sha256 (streaming, row group by
    row group), then check the result against every independent record of the pin that exists: the
    NAME.json written beside the Parquet and, when STORE is given, its snapshots table. (A forger can
    make the file consistent with itself: swap an image, fix its sha256 and size, re-hash the rows.)
    Returns (hash, problems)."""
    problems = []
    n_rows = [0]

    def checked_rows():
        for batch in iter_batches(path, batch_rows=WRITE_OPTIONS["row_group_size"]):
            for r in batch:
                if sha256_bytes(r["image"] or b"") != r["sha256"]:
                    problems.append(f"{r['file_id']}: image bytes do not match sha256")
                n_rows[0] += 1
                yield r

    digest = content_hash(checked_rows())
    meta = read_meta(path)
    stated = meta.get("pdd.content_hash")
    if stated != digest:
        problems.append(f"content hash {digest[:12]} differs from the pinned {str(stated)[:12]} (snapshot modified after pinning)")
    problems += pin_record_problems(path, digest, n_rows[0], meta.get("pdd.snapshot"), store)
    return digest, problems


def pin_record_problems(path: str | Path, digest: str, n_rows: int, name: str | None, store=None) -> list[str]:
    """How the snapshot file differs from the records made when it was pinned: NAME.json beside it (when
    it exists) and the store's snapshots row for its name (when a store is given and knows the name).
    A record that lacks a field it should have counts as a mismatch."""
    path = Path(path)
    records: list[tuple[str, dict]] = []
    problems: list[str] = []
    beside = path.with_suffix(".json")
    if beside.exists():
        try:
            info = json.loads(beside.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            info = None
            problems.append(f"{beside.name} beside it is not readable JSON ({exc})")
        if info is not None and not isinstance(info, dict):
            problems.append(f"{beside.name} beside it is not a pin record")
        elif info is not None:
            if info.get("name") != name or info.get("parquet") != path.name:
                problems.append(f"{beside.name} records snapshot {info.get('name')!r} in {info.get('parquet')!r}, "
                                f"but the file is {path.name!r} pinned as {name!r}")
            records.append((beside.name, info))
    if store is not None and name:
        rows = store.query("SELECT name, content_hash, n_rows, parquet_sha256 FROM snapshots WHERE name = ?", [name])
        if rows:
            records.append((f"the store's record of {name!r}", rows[0]))
    file_sha = hash_file(path) if records else None
    for label, rec in records:
        if rec.get("content_hash") != digest:
            problems.append(f"content hash {digest[:12]} differs from {str(rec.get('content_hash'))[:12]} recorded in {label} "
                            "(not the snapshot that was pinned)")
        if rec.get("n_rows") != n_rows:
            problems.append(f"{n_rows} rows, but {label} records {rec.get('n_rows')}")
        if rec.get("parquet_sha256") != file_sha:
            problems.append(f"file sha256 {file_sha[:12]} differs from {str(rec.get('parquet_sha256'))[:12]} recorded in {label}")
    return problems


def diff(a: str | Path, b: str | Path) -> dict:
    """What changed between two snapshots, like `git diff --stat` for data."""
    ra = {r["file_id"]: r for r in read_rows(resolve(a))}
    rb = {r["file_id"]: r for r in read_rows(resolve(b))}
    changed = []
    for fid in sorted(ra.keys() & rb.keys()):
        fields = [c for c in META_COLUMNS if c not in ("rev_no",) and ra[fid][c] != rb[fid][c]]
        if fields:
            changed.append({"file_id": fid, "fields": fields})
    return {
        "a": str(a), "b": str(b),
        "added": sorted(rb.keys() - ra.keys()),
        "removed": sorted(ra.keys() - rb.keys()),
        "changed": changed,
        "unchanged": len(ra.keys() & rb.keys()) - len(changed),
    }


def summary(path: str | Path) -> dict:
    rows = read_rows(path)
    kinds: dict[str, int] = {}
    sources: dict[str, int] = {}
    for r in rows:
        kinds[r["licence_kind"]] = kinds.get(r["licence_kind"], 0) + 1
        sources[r["source_id"]] = sources.get(r["source_id"], 0) + 1
    meta = read_meta(path)
    return {"path": str(path), "name": meta.get("pdd.snapshot"), "content_hash": meta.get("pdd.content_hash"),
            "rows": len(rows), "licences": kinds, "sources": sources, "bytes": sum(r["size"] or 0 for r in rows)}
