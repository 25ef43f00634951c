"""`pdd snapshot pin NAME`: freeze the store's accepted rows as an immutable snapshot (the source side:
this reads the DuckDB store; the format itself is pdd/snapshot.py)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pdd.build.hashing import canonical_json, hash_file, write_json
from pdd.errors import PddError
from pdd.snapshot import DEFAULT_DIR, SCHEMA, SNAPSHOT_FORMAT, WRITE_OPTIONS, content_hash, read_meta, snapshot_name
from pdd.exclusions import apply as apply_exclusions
from pdd.source.store import Store


def collect_rows(store: Store) -> list[dict]:
    """The newest revision of every accepted file, in canonical order, without image bytes."""
    revs = store.query(
        "SELECT r.*, f.source_id, f.external_id FROM current_revisions r JOIN files f USING (file_id) "
        "WHERE r.status = 'accepted' ORDER BY r.file_id"
    )
    rows = []
    for r in revs:
        labels = [{k: lb[k] for k in ("field", "lang", "text", "licence", "source")} for lb in store.labels_of(r["revision_id"])]
        rows.append({
            "file_id": r["file_id"], "rev_no": r["rev_no"], "source_id": r["source_id"], "external_id": r["external_id"],
            "title": r["title"], "sha256": r["sha256"], "source_sha1": r["source_sha1"], "size": r["size"],
            "mime": r["mime"], "width": r["width"], "height": r["height"], "source_url": r["source_url"],
            "licence_status": r["status"], "licence_kind": r["licence_kind"], "licence_reason": r["licence_reason"],
            "licence_evidence": r["licence_evidence"] or "{}", "provenance": r["provenance"] or "{}",
            "labels": canonical_json(sorted(labels, key=canonical_json)), "_revision_id": r["revision_id"],
        })
    rows.sort(key=lambda r: r["file_id"].encode("utf-8"))
    return rows


_TMP = re.compile(r"\..+\.(parquet|json)\.tmp-(\d+)")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_tmps(out_dir: Path) -> list[Path]:
    """Remove the `.NAME.parquet.tmp-PID` / `.NAME.json.tmp-PID` files of pins whose process is gone
    (killed while writing); a live process's temp file is left alone."""
    removed = []
    for p in out_dir.glob(".*.tmp-*"):
        m = _TMP.fullmatch(p.name)
        if m and p.is_file() and not _alive(int(m.group(2))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _other_content(path: Path, message: str) -> PddError:
    return PddError(f"snapshot {path.stem!r}: {path} already exists with other content ({message}); snapshots are "
                    "immutable and nothing pinned is overwritten: pin under a new name (or restore that file from git/DVC)")


def check_not_pinned_otherwise(out_dir: Path, name: str, digest: str) -> None:
    """Refuse, whatever the store says, when NAME.parquet or NAME.json exists with another content hash."""
    parquet, record = out_dir / f"{name}.parquet", out_dir / f"{name}.json"
    if parquet.exists():
        try:
            stated = read_meta(parquet).get("pdd.content_hash")
        except PddError:
            stated = "unreadable"
        if stated != digest:
            raise _other_content(parquet, f"content hash {str(stated)[:12]}, the store's rows hash to {digest[:12]}")
    if record.exists():
        try:
            stated = json.loads(record.read_text(encoding="utf-8")).get("content_hash")
        except (OSError, ValueError, AttributeError):
            stated = "unreadable"
        if stated != digest:
            raise _other_content(record, f"content hash {str(stated)[:12]}, the store's rows hash to {digest[:12]}")


def write_parquet(rows: list[dict], path: Path, name: str, digest: str, read_image, extra_meta: dict | None = None,
                  *, replace: bool = True) -> Path:
    """Write row group by row group, reading (and verifying) each image only when its group is written,
    into a temp file in the same folder, fsynced. With REPLACE it is renamed over PATH (and the temp
    name returned is gone); else the caller renames it."""
    schema = SCHEMA.with_metadata({"pdd.format": SNAPSHOT_FORMAT, "pdd.snapshot": name, "pdd.content_hash": digest,
                                   **(extra_meta or {})})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PddError(f"{path.parent}: cannot make the snapshot folder ({exc.strerror or exc})") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    group = WRITE_OPTIONS["row_group_size"]
    options = {k: v for k, v in WRITE_OPTIONS.items() if k != "row_group_size"}
    try:
        with pq.ParquetWriter(tmp, schema, **options) as writer:
            for start in range(0, len(rows), group):
                chunk = rows[start:start + group]
                cols = {f.name: [r[f.name] for r in chunk] for f in SCHEMA if f.name != "image"}
                cols["image"] = [read_image(r["sha256"]) for r in chunk]
                writer.write_table(pa.table(cols, schema=schema), row_group_size=group)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed pin leaves nothing behind
        raise
    if replace:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    return tmp


def pin(store: Store, name: str, out_dir: str | Path = DEFAULT_DIR, exclusions: dict | None = None) -> dict:
    """Freeze the store's accepted rows as snapshot NAME. Same rows again: same bytes, same hash.
    A name is bound to its content forever: different rows under a used name is an error, whether the
    store or the files in OUT_DIR (NAME.parquet, NAME.json) know the name.
    Ids in EXCLUSIONS (pdd/exclusions.py) are left out; how many is recorded in the Parquet
    metadata (`pdd.excluded`) and NAME.json (`excluded`), only when there were any, so a pin
    without exclusions stays byte-identical to one made before exclusions existed.

    Crash safety: the Parquet is written to a temp file in OUT_DIR, fsynced and renamed, then NAME.json
    (also temp+fsync+rename), then the store records the pin. A pin killed in between leaves at most
    complete files and no record: pinning the same rows under the same name again finds the same bytes
    and records them. Temp files of killed pins are removed by the next pin into OUT_DIR."""
    name = snapshot_name(name)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PddError(f"{out_dir}: not a folder (--out-dir must name the snapshots folder)")
    rows, excluded = apply_exclusions(collect_rows(store), exclusions)
    if not rows:
        raise PddError("nothing to pin: the store has no accepted files (import or scrape first)")
    digest = content_hash(rows)
    existing = store.query("SELECT * FROM snapshots WHERE name = ?", [name])
    if existing and existing[0]["content_hash"] != digest:
        raise PddError(
            f"snapshot {name!r} is already pinned with other content (hash {existing[0]['content_hash'][:12]}); "
            "snapshots are immutable: pin under a new name"
        )
    check_not_pinned_otherwise(out_dir, name, digest)
    if out_dir.is_dir():
        clean_stale_tmps(out_dir)
    path = out_dir / f"{name}.parquet"
    record = out_dir / f"{name}.json"
    extra_meta = {"pdd.excluded": str(len(excluded))} if excluded else None
    tmp = write_parquet(rows, path, name, digest, store.read_blob, extra_meta, replace=False)
    try:
        info = {"name": name, "format": SNAPSHOT_FORMAT, "content_hash": digest, "n_rows": len(rows),
                "parquet": path.name, "parquet_sha256": hash_file(tmp)}
        if excluded:
            info["excluded"] = len(excluded)
        # the exact bytes only: a file of the same name and hash but other bytes is not overwritten either
        if path.exists() and hash_file(path) != info["parquet_sha256"]:
            raise _other_content(path, f"file sha256 {hash_file(path)[:12]}, this pin writes {info['parquet_sha256'][:12]}")
        if record.exists():
            try:
                old = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = None
            if old != info:
                raise _other_content(record, "its record differs from this pin's")
        os.replace(tmp, path)
        _fsync_dir(out_dir)
    finally:
        tmp.unlink(missing_ok=True)
    write_json(record, info)
    _fsync_dir(out_dir)
    if not existing:
        with store.transaction() as con:
            con.execute("INSERT INTO snapshots (name, content_hash, n_rows, parquet_path, parquet_sha256) VALUES (?, ?, ?, ?, ?)",
                        [name, digest, len(rows), path.as_posix(), info["parquet_sha256"]])
            con.executemany("INSERT INTO snapshot_rows VALUES (?, ?)", [[name, r["_revision_id"]] for r in rows])
    return info
