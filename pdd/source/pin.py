"""`pdd snapshot pin NAME`: freeze the store's accepted rows as an immutable snapshot (the source side:
this reads the DuckDB store; the format itself is pdd/snapshot.py)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pdd import snapshot
from pdd.core import files
from pdd.core.errors import PddError
from pdd.core.hashing import canonical_json, hash_file, sha256_bytes, write_json
from pdd.snapshot import DEFAULT_DIR, SCHEMA, SNAPSHOT_FORMAT, WRITE_OPTIONS, content_hash, read_meta, snapshot_name
from pdd.exclusions import apply as apply_exclusions, warn_unmatched
from pdd.source.store import Store


def collect_rows(store: Store) -> list[dict]:
    """The newest revision of every accepted file, in canonical order, without image bytes."""
    revs = store.query(
        "SELECT r.*, f.source_id, f.external_id FROM current_revisions r JOIN files f USING (file_id) "
        "WHERE r.status = 'accepted' ORDER BY r.file_id"
    )
    labels_of = store.labels_for([r["revision_id"] for r in revs])
    rows = []
    for r in revs:
        labels = labels_of[r["revision_id"]]
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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # a failed pin leaves nothing behind
        if isinstance(exc, OSError):  # e.g. disk full: one line, not a traceback
            raise PddError(f"{path}: cannot write snapshot {name!r} ({exc.strerror or exc}); nothing was written: "
                           f"free space in {path.parent} and pin again") from None
        raise
    if replace:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    return tmp


def _write_pinned(rows: list[dict], out_dir: Path, name: str, digest: str, read_image, extra_meta: dict | None,
                  record_extra: dict) -> dict:
    """Write NAME.parquet (temp, fsync, rename) and then NAME.json into OUT_DIR; an existing file of
    that name with other bytes, or an existing record that differs, is refused and left as it was."""
    if out_dir.is_dir():
        clean_stale_tmps(out_dir)
    path = out_dir / f"{name}.parquet"
    record = out_dir / f"{name}.json"
    tmp = write_parquet(rows, path, name, digest, read_image, extra_meta, replace=False)
    try:
        info = {"name": name, "format": SNAPSHOT_FORMAT, "content_hash": digest, "n_rows": len(rows),
                "parquet": path.name, "parquet_sha256": hash_file(tmp), **record_extra}
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
    return info


def _snapshots_dir(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PddError(f"{out_dir}: not a folder (--out-dir must name the snapshots folder)")
    return out_dir


def _store_pin(store: Store, name: str, digest: str) -> dict | None:
    """The store's record of a pin named NAME, or None; one with another content hash is refused."""
    existing = store.query("SELECT * FROM snapshots WHERE name = ?", [name])
    if existing and existing[0]["content_hash"] != digest:
        raise PddError(
            f"snapshot {name!r} is already pinned with other content in the store {store.db_path} "
            f"(hash {existing[0]['content_hash'][:12]}); snapshots are immutable: pin under a new name"
        )
    return existing[0] if existing else None


def rejection_class(reason: str) -> str:
    """The reason a model card counts a rejected file by: licence, trademark (the logo/trademark word rule),
    mark, likeness or reviewed (the marks and likeness screen), decompression bomb, bad image."""
    r = str(reason).removeprefix("rejected: ")
    for kind in ("mark", "likeness", "reviewed", "trademark"):
        if r.startswith(f"{kind}:"):
            return kind
    if r.startswith("bad image"):
        return "decompression bomb" if "decompression bomb" in r else "bad image"
    return "licence"


def rejection_counts(store: Store) -> dict:
    """{reason class: distinct files} over the newest revision of every rejected file in the store."""
    out: dict[str, int] = {}
    for r in store.query("SELECT reason FROM current_revisions WHERE status = 'rejected'"):
        k = rejection_class(r["reason"])
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def pin(store: Store, name: str, out_dir: str | Path = DEFAULT_DIR, exclusions: dict | None = None) -> dict:
    """Freeze the store's accepted rows as snapshot NAME. Same rows again: same bytes, same hash.
    A name is bound to its content forever: different rows under a used name is an error, whether the
    store or the files in OUT_DIR (NAME.parquet, NAME.json) know the name.
    Ids in EXCLUSIONS (pdd/exclusions.py) are left out; how many is recorded in the Parquet
    metadata (`pdd.excluded`) and NAME.json (`excluded`), only when there were any, so a pin
    without exclusions stays byte-identical to one made before exclusions existed. NAME.json also counts
    the store's rejected files by reason class (`rejected`, when there are any) for the model card.

    Crash safety: the Parquet is written to a temp file in OUT_DIR, fsynced and renamed, then NAME.json
    (also temp+fsync+rename), then the store records the pin. A pin killed in between leaves at most
    complete files and no record: pinning the same rows under the same name again finds the same bytes
    and records them. Temp files of killed pins are removed by the next pin into OUT_DIR."""
    name = snapshot_name(name)
    out_dir = _snapshots_dir(out_dir)
    rows, excluded = apply_exclusions(collect_rows(store), exclusions)
    warn_unmatched(exclusions, excluded, f"the store {store.db_path} (its accepted files)")
    if not rows:
        raise PddError("nothing to pin: the store has no accepted files (import or scrape first)")
    digest = content_hash(rows)
    existing = _store_pin(store, name, digest)
    check_not_pinned_otherwise(out_dir, name, digest)
    extra_meta = {"pdd.excluded": str(len(excluded))} if excluded else None
    record_extra = {"excluded": len(excluded)} if excluded else {}
    rejected = rejection_counts(store)
    if rejected:  # only when there are any: a pin without rejections keeps its earlier record
        record_extra["rejected"] = rejected
    info = _write_pinned(rows, out_dir, name, digest, store.read_blob, extra_meta, record_extra)
    path = out_dir / info["parquet"]
    if not existing:
        with store.transaction() as con:
            con.execute("INSERT INTO snapshots (name, content_hash, n_rows, parquet_path, parquet_sha256) VALUES (?, ?, ?, ?, ?)",
                        [name, digest, len(rows), path.as_posix(), info["parquet_sha256"]])
            con.executemany("INSERT INTO snapshot_rows VALUES (?, ?)", [[name, r["_revision_id"]] for r in rows])
    return info


class _ImagesInOrder:
    """read_image for write_parquet when the images come from another snapshot file: its image column
    streamed row group by row group, in file order, each image checked against the sha256 asked for.
    The rows written must be a subsequence of the file's rows in its order (true after exclusions)."""

    def __init__(self, path: Path):
        self._batches = snapshot.iter_batches(path, batch_rows=WRITE_OPTIONS["row_group_size"], columns=["sha256", "image"])
        self._pending: list[dict] = []
        self._path = path

    def __call__(self, sha256: str) -> bytes:
        while True:
            if not self._pending:
                self._pending = next(self._batches, None)
                if self._pending is None:
                    raise PddError(f"{self._path}: ran out of rows while copying images (changed while pinning?)")
                self._pending.reverse()
            row = self._pending.pop()
            if row["sha256"] == sha256:
                data = row["image"] or b""
                if sha256_bytes(data) != sha256:
                    raise PddError(f"{self._path}: an image does not match its sha256 {sha256[:12]} (tampered snapshot)")
                return data


def pin_from(source: str | Path, name: str, out_dir: str | Path = DEFAULT_DIR, exclusions: dict | None = None,
             store: Store | None = None) -> dict:
    """Derive snapshot NAME from the snapshot file SOURCE with the ids in EXCLUSIONS left out, without
    the store SOURCE was pinned from (a fresh clone has only the committed snapshot): the takedown path.

    SOURCE must verify (content hash, every image's sha256, its NAME.json when there is one). The
    rows are SOURCE's rows minus the excluded ones, so the content hash is the one a pin from the
    original store with the same exclusions gets; the file records where it came from: Parquet
    metadata `pdd.derived_from` (SOURCE's name) and `pdd.derived_from_hash` (its content hash), and
    `pdd.excluded`, the rows left out in all (SOURCE's own `pdd.excluded` plus those left out now),
    when there are any; NAME.json the same as `derived_from` {name, content_hash, excluded_ids} and
    `excluded`. Same SOURCE and exclusions: same bytes. A name already used for other content, in
    OUT_DIR or in STORE's snapshots (when given), is refused; the store is not written to."""
    name = snapshot_name(name)
    out_dir = _snapshots_dir(out_dir)
    source = files.regular_file(source, "the snapshot to pin from", "pass --from NAME or the path of a pinned .parquet file")
    src_digest, problems = snapshot.verify(source)
    if problems:
        raise PddError(f"{source}: cannot pin from it: {len(problems)} problem(s): {'; '.join(problems[:3])}")
    meta = read_meta(source)
    if meta.get("pdd.format") != SNAPSHOT_FORMAT:
        raise PddError(f"{source}: format {meta.get('pdd.format')!r}, this pdd pins {SNAPSHOT_FORMAT}: "
                       "not a snapshot it can derive from")
    src_name = meta.get("pdd.snapshot") or source.stem
    rows = snapshot.read_rows(source)
    ids = [r["file_id"].encode("utf-8") for r in rows]
    if any(a >= b for a, b in zip(ids, ids[1:])):
        raise PddError(f"{source}: rows are not sorted by file_id with each id once; not a pinned snapshot")
    rows, excluded = apply_exclusions(rows, exclusions)
    warn_unmatched(exclusions, excluded, str(source))
    if not rows:
        raise PddError(f"nothing to pin: every row of {source} is on the exclusion list")
    digest = content_hash(rows)
    if store is not None:
        _store_pin(store, name, digest)
    check_not_pinned_otherwise(out_dir, name, digest)
    total = int(meta.get("pdd.excluded", "0") or 0) + len(excluded)
    extra_meta = {"pdd.derived_from": src_name, "pdd.derived_from_hash": src_digest}
    record = {"derived_from": {"name": src_name, "content_hash": src_digest, "excluded_ids": excluded}}
    if total:
        extra_meta["pdd.excluded"] = str(total)
        record["excluded"] = total
    return _write_pinned(rows, out_dir, name, digest, _ImagesInOrder(source), extra_meta, record)
