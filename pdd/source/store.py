"""The snapshot store: one embedded DuckDB database plus content-addressed blobs.

This is the only module that writes the database. Everything is append-only:
a changed file gets a new revision, nothing stored is ever overwritten or
deleted, and image bytes live in data/blobs/<sha256>, written atomically.

Tables
  sources        where files come from (a Commons API, a museum folder)
  files          one row per source item: file_id = '<source_id>:<external id>'
  revisions      every observed state of a file: bytes (sha256, source sha1, size,
                 mime, dimensions, blob path), licence decision + evidence,
                 provenance, accepted/rejected with the reason
  labels         titles/creators/captions of a revision, each with its own licence
  snapshots      pinned, immutable sets of revisions (+ snapshot_rows)
The view current_revisions is the newest revision of every file.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import duckdb
import pyarrow as pa

from pdd.core.errors import PddError
from pdd.core.hashing import canonical_json, hash_json, sha256_bytes, write_atomic
from pdd.rights import screen
from pdd.rights.text import LicenceDecision

DEFAULT_DB = Path("data/pdd.duckdb")
# file_id = '<source_id>:<external_id>': a source id with ':' would let 'a:b' + 'c' collide with 'a' + 'b:c'
SOURCE_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def validate_source_id(source_id) -> str:
    """The source id, or a one-line PddError: lower-case letters, digits, '.', '_', '-' (no ':'), at most 64."""
    if not isinstance(source_id, str) or not SOURCE_ID_RE.fullmatch(source_id):
        raise PddError(f"source name {str(source_id)[:80]!r} is not valid: use 1-64 lower-case letters, digits, "
                       "'.', '_' and '-', starting with a letter or digit (no ':')")
    return source_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    source_id  TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,          -- 'commons' | 'folder'
    uri        TEXT,
    first_seen TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS files (
    file_id     TEXT PRIMARY KEY,      -- '<source_id>:<external_id>'
    source_id   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    title       TEXT
);
CREATE SEQUENCE IF NOT EXISTS revision_seq START 1;
CREATE TABLE IF NOT EXISTS revisions (
    revision_id      BIGINT PRIMARY KEY DEFAULT nextval('revision_seq'),
    file_id          TEXT NOT NULL,
    rev_no           INTEGER NOT NULL,
    title            TEXT,             -- as observed in this revision (files.title keeps the first)
    status           TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason           TEXT NOT NULL,
    sha256           TEXT,             -- of the stored bytes (data/blobs/<sha256>)
    source_sha1      TEXT,             -- as the source reports it, when it does
    size             BIGINT,
    mime             TEXT,
    width            INTEGER,
    height           INTEGER,
    blob_path        TEXT,
    source_url       TEXT,
    licence_kind     TEXT,
    licence_reason   TEXT,
    licence_evidence TEXT,             -- canonical JSON
    provenance       TEXT,             -- canonical JSON, source-specific fields
    fingerprint      TEXT NOT NULL,    -- hash of all of the above: new revision only when it changes
    fetched_at       TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (file_id, rev_no)
);
-- migrations for databases made by earlier versions (columns are only ever added)
ALTER TABLE revisions ADD COLUMN IF NOT EXISTS title TEXT;
CREATE TABLE IF NOT EXISTS labels (
    revision_id BIGINT NOT NULL,
    field       TEXT NOT NULL,         -- title | creator | date | medium | caption | description ...
    lang        TEXT,
    text        TEXT NOT NULL,
    licence     TEXT NOT NULL,         -- the label's own licence (pd, cc0, cc-by-sa, ...)
    source      TEXT                   -- where the text came from
);
CREATE TABLE IF NOT EXISTS snapshots (
    name           TEXT PRIMARY KEY,
    content_hash   TEXT NOT NULL,
    n_rows         BIGINT NOT NULL,
    parquet_path   TEXT NOT NULL,
    parquet_sha256 TEXT NOT NULL,
    created_at     TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS snapshot_rows (
    snapshot_name TEXT NOT NULL,
    revision_id   BIGINT NOT NULL
);
CREATE OR REPLACE VIEW current_revisions AS
    SELECT * FROM revisions
    QUALIFY row_number() OVER (PARTITION BY file_id ORDER BY rev_no DESC) = 1;
"""


# ==== scrape state (issue 3; used by pdd/source/commons/state.py) ================================
# Resume state of `pdd scrape`: runs, the category walk (frontier, visited set, continuation
# tokens) and per-file status. No PRIMARY KEY/UNIQUE here on purpose: rows are updated in place
# inside one transaction per batch, which DuckDB's eager unique-index checks would refuse.
SCRAPE_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS scrape_run_seq START 1;
CREATE TABLE IF NOT EXISTS scrape_runs (
    run_id      BIGINT NOT NULL,
    api         TEXT NOT NULL,
    config_key  TEXT NOT NULL,         -- hash of api, categories, depth, thumb width, sdc
    config      TEXT NOT NULL,         -- canonical JSON
    started_at  TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS scrape_categories (
    run_id       BIGINT NOT NULL,
    seq          BIGINT NOT NULL,      -- breadth-first order
    title        TEXT NOT NULL,
    depth        INTEGER NOT NULL,
    subcats_cont TEXT,                 -- JSON continue set for the next subcategory page
    subcats_done BOOLEAN NOT NULL DEFAULT false,
    files_cont   TEXT,                 -- JSON continue set for the next file batch
    files_done   BOOLEAN NOT NULL DEFAULT false,
    batches      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS scrape_files (
    run_id      BIGINT NOT NULL,
    pageid      BIGINT NOT NULL,
    title       TEXT,
    status      TEXT NOT NULL,         -- accepted | rejected | unchanged
    reason      TEXT,
    revision_id BIGINT,
    meta_hash   TEXT,                  -- hash of imageinfo + SDC + thumb width: unchanged files are skipped next run
    seen_at     TIMESTAMP DEFAULT current_timestamp
);
"""
SCHEMA += SCRAPE_SCHEMA


_INT_COLUMNS = {"revision_id", "rev_no", "size", "width", "height"}   # every other column of revisions/labels is text


def _arrow_column(column: str, values: list) -> pa.Array:
    return pa.array([_column_value(column, v) for v in values], type=pa.int64() if column in _INT_COLUMNS else pa.string())


@contextmanager
def _registered(con, name: str, table: pa.Table):
    """An Arrow table visible to SQL as NAME for the statements inside the block."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def _column_value(column: str, value):
    """A revision value as its column stores it: a text column keeps a value a source sent in another shape
    (a hostile API's list for a MIME type) as its canonical JSON; an integer column takes only integers."""
    if value is None:
        return None
    if column in _INT_COLUMNS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{column} must be an integer, not {value!r}")
        return value
    return value if isinstance(value, str) else canonical_json(value)


@dataclass(frozen=True)
class Label:
    field: str
    text: str
    licence: str
    lang: str | None = None
    source: str | None = None

    def as_dict(self) -> dict:
        return {"field": self.field, "lang": self.lang, "text": self.text, "licence": self.licence, "source": self.source}


class Recorded(NamedTuple):
    """What storing one observation did: its revision, and whether that revision is new."""
    revision_id: int
    created: bool


class _Newest(NamedTuple):
    """The newest revision of a file while a batch is recorded; REVISION is a _Slot until its id is drawn."""
    revision: int | _Slot
    rev_no: int
    fingerprint: str


class _Slot(NamedTuple):
    """A revision new in this batch: its place among the batch's new revisions."""
    index: int


@dataclass
class FileRecord:
    """One observation of a source item, accepted or rejected, ready to store."""

    source_id: str
    external_id: str
    title: str
    status: str  # 'accepted' | 'rejected'
    reason: str
    licence: LicenceDecision | None = None
    data: bytes | None = None  # image bytes; stored as a blob when given
    source_sha1: str | None = None
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    source_url: str | None = None
    provenance: dict = field(default_factory=dict)
    labels: list[Label] = field(default_factory=list)

    @property
    def file_id(self) -> str:
        return f"{self.source_id}:{self.external_id}"


class Store:
    """Open (creating if needed) the database and the blob folder next to it."""

    def __init__(self, db_path: str | Path = DEFAULT_DB, blob_dir: str | Path | None = None, read_only: bool = False,
                 rights_review: str | Path = screen.DEFAULT_REVIEW):
        self.db_path = Path(db_path)
        self.rights_review_path = Path(rights_review)
        self._rights_review: dict | None = None
        self.blob_dir = Path(blob_dir) if blob_dir else self.db_path.parent / "blobs"
        if read_only and not self.db_path.exists():
            raise PddError(f"{self.db_path}: no database yet (import or scrape something first)")
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PddError(f"{self.db_path}: cannot make its folder ({exc.strerror or exc}); pass --db PATH in a writable folder") from None
        if self.db_path.is_dir():
            raise PddError(f"{self.db_path}: is a folder, not a database file (pass --db PATH/pdd.duckdb)")
        try:
            self.con = duckdb.connect(str(self.db_path), read_only=read_only)
        except duckdb.Error as exc:  # IOException (locks, unwritable), a file that is not a DuckDB database, ...
            if "lock" in str(exc).lower():
                raise PddError(
                    f"{self.db_path} is in use by another pdd process (one writer at a time): "
                    "wait for it to finish or stop it, then run this again"
                ) from None
            raise PddError(f"{self.db_path}: cannot open database ({str(exc).splitlines()[0]})") from None
        if not read_only:
            self.con.execute(SCHEMA)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    # ---- blobs ---------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256

    def put_blob(self, data: bytes) -> str:
        """Store bytes under their sha256 (atomic temp+rename; a no-op when present)."""
        digest = sha256_bytes(data)
        path = self.blob_path(digest)
        if not path.exists():
            write_atomic(path, data)
        return digest

    def read_blob(self, sha256: str) -> bytes:
        path = self.blob_path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PddError(f"blob {sha256} missing from {self.blob_dir} (restore data/blobs or re-import its source)") from None
        if sha256_bytes(data) != sha256:
            raise PddError(f"blob {path} is corrupt (content hash differs); delete it and re-import its source")
        return data

    # ---- sources and revisions -------------------------------------------------
    def ensure_source(self, source_id: str, kind: str, uri: str | None = None) -> None:
        validate_source_id(source_id)
        self.con.execute(
            "INSERT INTO sources (source_id, kind, uri) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [source_id, kind, uri]
        )

    def latest_revision(self, file_id: str) -> dict | None:
        rows = self.query("SELECT * FROM current_revisions WHERE file_id = ?", [file_id])
        return rows[0] if rows else None

    def record(self, rec: FileRecord) -> Recorded:
        """Store one observation in its own transaction. Returns (revision_id, created): a new revision
        is written only when bytes, licence, provenance, labels or status differ from the newest one."""
        return self.record_batch([rec])[0]

    def record_batch(self, recs: list[FileRecord], after=None) -> list[Recorded]:
        """Store many observations in ONE transaction (one commit per batch). ``after(con, results)``
        runs inside the same transaction (the scraper writes its resume state there), so a batch and
        its continuation token are committed together or not at all."""
        with self.transaction() as con:
            results = self._record_many(con, recs)
            if after is not None:
                after(con, results)
        return results

    def rights_review(self) -> dict:
        """The reviewed decisions (data/rights_review.tsv), read once, strictly (pdd.rights.screen)."""
        if self._rights_review is None:
            self._rights_review = screen.read_review(self.rights_review_path)
        return self._rights_review

    def _record_many(self, con, recs: list[FileRecord]) -> list[Recorded]:
        """record() for every observation of a batch, inside a transaction the caller holds, with the same
        result as storing them one after another (a file seen twice in a batch gets its second revision
        only if it differs from the first), in a handful of statements for the whole batch: a statement
        per row made importing thousands of files cost seconds of DuckDB overhead each hundred. Blobs are
        written (atomically) before the commit that refers to them."""
        for rec in recs:
            # every source's accepted file passes the marks and likeness screen before it is stored
            screen.screen_record(rec, self.rights_review())
            if rec.status not in ("accepted", "rejected"):
                raise ValueError(f"status must be accepted or rejected, not {rec.status!r}")
            if rec.status == "accepted" and (rec.data is None or rec.licence is None or not rec.licence.accepted):
                raise ValueError("an accepted record needs image bytes and an accepted licence decision")
        if not recs:
            return []
        first_seen: dict[str, FileRecord] = {}
        for rec in recs:
            first_seen.setdefault(rec.file_id, rec)
        ids = list(first_seen)
        self._insert(con, "files", pa.table({
            "file_id": ids, "source_id": [first_seen[f].source_id for f in ids],
            "external_id": [first_seen[f].external_id for f in ids], "title": [first_seen[f].title for f in ids],
        }), conflict="ON CONFLICT DO NOTHING")
        # the newest revision of every file in the batch (= current_revisions, for these files only)
        with _registered(con, "_pdd_batch_ids", pa.table({"file_id": ids})):
            newest = {file_id: _Newest(rid, rev_no, fp) for file_id, rid, rev_no, fp in con.execute(
                "SELECT file_id, revision_id, rev_no, fingerprint FROM revisions "
                "WHERE file_id IN (SELECT file_id FROM _pdd_batch_ids) "
                "QUALIFY row_number() OVER (PARTITION BY file_id ORDER BY rev_no DESC) = 1").fetchall()}
        # pending: (revision, created) per record; a revision new in this batch is a _Slot until its id is drawn
        new_revs, new_labels = [], []
        pending: list[tuple[int | _Slot, bool]] = []
        for rec in recs:
            values, labels, fingerprint = self._revision_values(rec)
            prev = newest.get(rec.file_id)
            if prev and prev.fingerprint == fingerprint:
                pending.append((prev.revision, False))
                continue
            slot = _Slot(len(new_revs))        # its revision_id is drawn below, in this order
            rev_no = (prev.rev_no + 1) if prev else 1
            new_revs.append({"file_id": rec.file_id, "rev_no": rev_no, **values, "fingerprint": fingerprint})
            new_labels.append(labels)
            newest[rec.file_id] = _Newest(slot, rev_no, fingerprint)
            pending.append((slot, True))
        rev_ids: list[int] = []
        if new_revs:
            rev_ids = [r[0] for r in con.execute(
                "SELECT nextval('revision_seq') AS id FROM range(?) ORDER BY id", [len(new_revs)]).fetchall()]
            for rev, rid in zip(new_revs, rev_ids):
                rev["revision_id"] = rid
            self._insert(con, "revisions", pa.table({c: _arrow_column(c, [r[c] for r in new_revs]) for c in new_revs[0]}))
            rows = [{"revision_id": rid, **lb} for rid, labels in zip(rev_ids, new_labels) for lb in labels]
            if rows:
                self._insert(con, "labels", pa.table({c: _arrow_column(c, [r[c] for r in rows]) for c in rows[0]}))
        return [Recorded(rev_ids[ref.index] if isinstance(ref, _Slot) else ref, created) for ref, created in pending]

    def _revision_values(self, rec: FileRecord) -> tuple[dict, list[dict], str]:
        """A revision's columns, its labels (sorted) and the fingerprint of both; writes the blob."""
        sha = self.put_blob(rec.data) if rec.data is not None else None
        lic = rec.licence
        values = {
            "title": rec.title,
            "status": rec.status,
            "reason": rec.reason,
            "sha256": sha,
            "source_sha1": rec.source_sha1,
            "size": len(rec.data) if rec.data is not None else None,
            "mime": rec.mime,
            "width": rec.width,
            "height": rec.height,
            "blob_path": f"blobs/{sha}" if sha else None,
            "source_url": rec.source_url,
            "licence_kind": lic.kind if lic else None,
            "licence_reason": lic.reason if lic else None,
            "licence_evidence": canonical_json(lic.evidence) if lic else None,
            "provenance": canonical_json(rec.provenance),
        }
        labels = sorted((lb.as_dict() for lb in rec.labels), key=canonical_json)
        fingerprint = hash_json({**values, "labels": labels})
        return values, labels, fingerprint

    @staticmethod
    def _insert(con, table: str, rows: pa.Table, conflict: str = "") -> None:
        """INSERT the rows of an Arrow table (columns named as the table's) in one statement."""
        cols = ", ".join(rows.column_names)
        with _registered(con, "_pdd_rows", rows):
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _pdd_rows {conflict}")

    # ---- reading -----------------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> list[dict]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def labels_of(self, revision_id: int) -> list[dict]:
        return self.labels_for([revision_id])[int(revision_id)]

    def labels_for(self, revision_ids: list[int]) -> dict[int, list[dict]]:
        """labels_of for many revisions in one query: revision_id -> its labels (every id has a list)."""
        out: dict[int, list[dict]] = {int(r): [] for r in revision_ids}
        if not out:
            return out
        with _registered(self.con, "_pdd_revision_ids", pa.table({"revision_id": pa.array(list(out), type=pa.int64())})):
            rows = self.con.execute(
                "SELECT revision_id, field, lang, text, licence, source FROM labels "
                "WHERE revision_id IN (SELECT revision_id FROM _pdd_revision_ids) "
                "ORDER BY revision_id, field, lang, text").fetchall()
        for rid, *values in rows:
            out[rid].append(dict(zip(("field", "lang", "text", "licence", "source"), values)))
        return out

    def counts(self) -> dict:
        row = self.con.execute(
            "SELECT count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status = 'rejected') FROM current_revisions"
        ).fetchone()
        return {"accepted": row[0], "rejected": row[1]}


def loads_json(text: str | None) -> dict:
    return json.loads(text) if text else {}
