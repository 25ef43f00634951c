"""Shared helpers for the scrape/mirror tests: a fast in-process scrape and a database digest."""
from __future__ import annotations

import sys
from pathlib import Path

from pdd.core.hashing import canonical_json, hash_file
from pdd.source.commons.http import CommonsClient
from pdd.source.commons.walk import ScrapeConfig, Scraper
from pdd.source.store import Store

EMAIL = "pdd-tests@pd-diffusion.org"
FIXTURE_ROOT = "Category:Paintings by Maarten van Oosterwijk"
SYNTH_ROOT = "Category:Synthetic paintings"


def client(api: str, **kw) -> CommonsClient:
    opts = {"timeout": 5.0, "max_retries": 4, "backoff_base": 0.01, "backoff_cap": 0.05}
    opts.update(kw)
    return CommonsClient(api, EMAIL, **opts)


def scrape(api: str, db: Path, categories=(FIXTURE_ROOT,), thumb_width: int = 960, depth: int = 3, client_kw=None, **cfg):
    c = client(api, **(client_kw or {}))
    with Store(db) as store:
        report = Scraper(store, c, ScrapeConfig(api=api, categories=list(categories), thumb_width=thumb_width, depth=depth, **cfg)).run()
    c.close()
    return report, c


def digest(db: Path) -> dict:
    """Everything the scrape stored, without ids and timestamps: equal for equal outcomes."""
    with Store(db, read_only=True) as store:
        revs = store.query(
            "SELECT file_id, rev_no, status, reason, sha256, source_sha1, size, mime, width, height, blob_path, source_url, "
            "licence_kind, licence_reason, licence_evidence, provenance, fingerprint FROM revisions ORDER BY file_id, rev_no")
        labels = store.query(
            "SELECT r.file_id, r.rev_no, l.field, l.lang, l.text, l.licence, l.source FROM labels l JOIN revisions r USING (revision_id) "
            "ORDER BY ALL")
        files = store.query("SELECT file_id, source_id, external_id, title FROM files ORDER BY file_id")
        blob_dir = store.blob_dir
    blobs = {p.name: hash_file(p) for p in sorted(blob_dir.iterdir()) if not p.name.startswith(".")} if blob_dir.exists() else {}
    return {"revisions": canonical_json(revs), "labels": canonical_json(labels), "files": canonical_json(files), "blobs": blobs,
            "accepted": sorted(r["file_id"] for r in revs if r["status"] == "accepted")}


def tables(db: Path) -> dict:
    """Every table of the store, row by row (in a stable order), and the blob folder's files: for
    before/after comparisons of a run that must lose and add nothing."""
    with Store(db, read_only=True) as store:
        names = [r["table_name"] for r in store.query(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 1")]
        out = {name: repr(store.con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()) for name in names}
        blob_dir = store.blob_dir
    out["blobs"] = {p.name: hash_file(p) for p in sorted(blob_dir.iterdir())} if blob_dir.exists() else {}
    return out


def pdd_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "pdd", *map(str, args)]
