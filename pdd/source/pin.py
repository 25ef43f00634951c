"""`pdd snapshot pin NAME`: freeze the store's accepted rows as an immutable snapshot (the source side:
this reads the DuckDB store; the format itself is pdd/snapshot.py)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pdd.build.hashing import canonical_json, hash_file, write_json
from pdd.errors import PddError
from pdd.snapshot import DEFAULT_DIR, SCHEMA, SNAPSHOT_FORMAT, WRITE_OPTIONS, content_hash
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


def write_parquet(rows: list[dict], path: Path, name: str, digest: str, read_image, extra_meta: dict | None = None) -> None:
    """Write row group by row group, reading (and verifying) each image only when its group is written."""
    schema = SCHEMA.with_metadata({"pdd.format": SNAPSHOT_FORMAT, "pdd.snapshot": name, "pdd.content_hash": digest,
                                   **(extra_meta or {})})
    path.parent.mkdir(parents=True, exist_ok=True)
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
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed pin leaves nothing behind
        raise
    os.replace(tmp, path)


def pin(store: Store, name: str, out_dir: str | Path = DEFAULT_DIR, exclusions: dict | None = None) -> dict:
    """Freeze the store's accepted rows as snapshot NAME. Same rows again: same bytes, same hash.
    A name is bound to its content forever: different rows under a used name is an error.
    Ids in EXCLUSIONS (pdd/exclusions.py) are left out; how many is recorded in the Parquet
    metadata (`pdd.excluded`) and NAME.json (`excluded`), only when there were any, so a pin
    without exclusions stays byte-identical to one made before exclusions existed."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise PddError(f"snapshot name {name!r} is not valid: start with a letter or digit, then letters, digits, '.', '_' and '-'")
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
    path = Path(out_dir) / f"{name}.parquet"
    extra_meta = {"pdd.excluded": str(len(excluded))} if excluded else None
    write_parquet(rows, path, name, digest, store.read_blob, extra_meta)
    info = {"name": name, "format": SNAPSHOT_FORMAT, "content_hash": digest, "n_rows": len(rows),
            "parquet": path.name, "parquet_sha256": hash_file(path)}
    if excluded:
        info["excluded"] = len(excluded)
    write_json(Path(out_dir, f"{name}.json"), info)
    if not existing:
        with store.transaction() as con:
            con.execute("INSERT INTO snapshots (name, content_hash, n_rows, parquet_path, parquet_sha256) VALUES (?, ?, ?, ?, ?)",
                        [name, digest, len(rows), path.as_posix(), info["parquet_sha256"]])
            con.executemany("INSERT INTO snapshot_rows VALUES (?, ?)", [[name, r["_revision_id"]] for r in rows])
    return info
