"""A dataset's history, like git's for source code: `pdd snapshot list|show|textconv|blame`.

`show`/`list` read the snapshot file (its Parquet metadata and metadata columns, never the image
bytes), NAME.json beside it, and, when the store is there, when it was pinned and which imports and
scrape runs its rows came from. `textconv` is the git diff driver (one canonical line per row).
`blame` follows one file through the store's snapshots: where it entered, changed and left, and why.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pdd import snapshot
from pdd.errors import PddError


def _store_ro(db: str | Path | None):
    """The store opened read-only, or None when there is none (or it is busy: the info is optional)."""
    if not db or not Path(db).exists():
        return None
    from pdd.source.store import Store

    try:
        return Store(db, read_only=True)
    except PddError:
        return None


def _q(store, sql: str, params: list) -> list[dict]:
    import duckdb

    try:
        return store.query(sql, params)
    except duckdb.Error:  # an older store without that table
        return []


def _git_date(path: Path) -> str | None:
    try:
        p = subprocess.run(["git", "log", "-1", "--format=%cI", "--", path.name], cwd=path.parent, capture_output=True, text=True)
    except OSError:
        return None
    return (p.stdout.strip() or None) if p.returncode == 0 else None


def info(path: str | Path, db: str | Path | None = None) -> dict:
    """Everything `pdd snapshot show` prints about one snapshot file."""
    import duckdb

    path = Path(path)
    pf = snapshot.open_snapshot(path)
    meta = snapshot.read_meta(path)
    con = duckdb.connect()
    src = "read_parquet('" + str(path).replace("'", "''") + "')"
    licences = dict(con.execute(f"SELECT licence_kind, count(*) FROM {src} GROUP BY 1 ORDER BY 1").fetchall())
    sources = dict(con.execute(f"SELECT source_id, count(*) FROM {src} GROUP BY 1 ORDER BY 1").fetchall())
    size = con.execute(f"SELECT coalesce(sum(size), 0) FROM {src}").fetchone()[0]
    sidecar = path.with_suffix(".json")
    side = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    name = meta.get("pdd.snapshot") or path.stem
    out = {"name": name, "path": path.as_posix(), "format": meta.get("pdd.format"),
           "content_hash": meta.get("pdd.content_hash"), "created": None, "created_from": None,
           "rows": pf.metadata.num_rows, "bytes": int(size), "licences": licences, "sources": sources,
           "excluded": int(meta.get("pdd.excluded", side.get("excluded", 0)) or 0),
           "parquet_sha256": side.get("parquet_sha256"),
           "derived_from": ({"name": meta["pdd.derived_from"], "content_hash": meta.get("pdd.derived_from_hash"),
                             "excluded_ids": (side.get("derived_from") or {}).get("excluded_ids")}
                            if "pdd.derived_from" in meta else None),
           "imports": [], "scrape_runs": []}
    store = _store_ro(db)
    if store is not None:
        with store:
            pinned = _q(store, "SELECT created_at FROM snapshots WHERE name = ?", [name])
            if pinned:
                out["created"], out["created_from"] = str(pinned[0]["created_at"]), "store"
                out["imports"] = [
                    {"source_id": r["source_id"], "kind": r["kind"], "uri": r["uri"], "rows": r["n"],
                     "fetched_first": str(r["first"]), "fetched_last": str(r["last"])}
                    for r in _q(store,
                                "SELECT f.source_id, s.kind, s.uri, count(*) AS n, min(r.fetched_at) AS first, max(r.fetched_at) AS last "
                                "FROM snapshot_rows sr JOIN revisions r USING (revision_id) JOIN files f USING (file_id) "
                                "LEFT JOIN sources s USING (source_id) WHERE sr.snapshot_name = ? GROUP BY ALL ORDER BY 1", [name])]
                out["scrape_runs"] = [
                    {"run_id": r["run_id"], "api": r["api"], "started_at": str(r["started_at"]),
                     "finished_at": str(r["finished_at"]) if r["finished_at"] else None, "rows": r["n"]}
                    for r in _q(store,
                                "SELECT sf.run_id, any_value(ru.api) AS api, any_value(ru.started_at) AS started_at, "
                                "any_value(ru.finished_at) AS finished_at, count(DISTINCT sf.revision_id) AS n "
                                "FROM snapshot_rows sr JOIN scrape_files sf USING (revision_id) JOIN scrape_runs ru USING (run_id) "
                                "WHERE sr.snapshot_name = ? GROUP BY 1 ORDER BY 1", [name])]
    if out["created"] is None:
        date = _git_date(path)
        if date:
            out["created"], out["created_from"] = date, "git (last commit of the file)"
    return out


def format_info(i: dict) -> list[str]:
    lines = [f"snapshot {i['name']}  ({i['path']})",
             f"  content hash  {i['content_hash']}",
             f"  format        {i['format']}",
             f"  created       {i['created'] or 'unknown'}" + (f"  (from {i['created_from']})" if i["created_from"] else ""),
             f"  rows          {i['rows']}  ({i['bytes']} image bytes)",
             "  licences      " + ", ".join(f"{k} {v}" for k, v in i["licences"].items()),
             "  sources       " + ", ".join(f"{k} {v}" for k, v in i["sources"].items()),
             f"  excluded      {i['excluded']} (ids on data/exclusions.tsv left out when pinning)"]
    d = i.get("derived_from")
    if d:
        left = d["excluded_ids"]
        lines.append(f"  derived from  {d['name']} ({str(d['content_hash'])[:12]}) by `pdd snapshot pin --from`"
                     + (f", leaving out {', '.join(left[:5])}" + (f" and {len(left) - 5} more" if len(left) > 5 else "")
                        if left else ""))
    for im in i["imports"]:
        lines.append(f"  from          {im['source_id']} ({im['kind']} {im['uri']}): {im['rows']} rows, fetched "
                     f"{im['fetched_first']} .. {im['fetched_last']}")
    for r in i["scrape_runs"]:
        lines.append(f"  scrape run    #{r['run_id']} {r['api']} started {r['started_at']}: {r['rows']} rows")
    if not i["imports"] and not i["scrape_runs"] and not d:
        lines.append("  from          (not in the store here: no import/scrape record)")
    return lines


def list_snapshots(snap_dir: str | Path, db: str | Path | None = None, skipped: list | None = None) -> list[dict]:
    """info() of every snapshot in SNAP_DIR. A .parquet that is not a readable snapshot is left out (and
    [path, why] appended to SKIPPED when given) instead of aborting the whole list."""
    out = []
    for p in sorted(Path(snap_dir).glob("*.parquet")):
        try:
            out.append(info(p, db))
        except (PddError, ValueError, OSError) as exc:
            if skipped is not None:
                skipped.append([p.as_posix(), " ".join(str(exc).split())[:200]])
    return out


# ---- git textconv driver ------------------------------------------------------------------------
def textconv(path: str | Path, out=None) -> None:
    """One line per row: the row's canonical JSON (no image bytes; the sha256 column covers them)."""
    out = out or sys.stdout
    meta = snapshot.read_meta(path) if Path(path).is_file() else {}
    for batch in snapshot.iter_batches(path, batch_rows=4096, columns=snapshot.META_COLUMNS):
        if meta is not None:
            out.write(f"# pdd snapshot {meta.get('pdd.snapshot')} {meta.get('pdd.format')} "
                      f"content_hash={meta.get('pdd.content_hash')}\n")
            meta = None
        for r in batch:
            out.write(snapshot.canonical_row(r) + "\n")


# ---- blame ------------------------------------------------------------------------------------
def blame(store, file_id: str, exclusions: dict | None = None) -> dict:
    """Where FILE_ID entered, changed and left the store's snapshots (in pin order), and why."""
    revs = store.query("SELECT revision_id, rev_no, status, reason, licence_kind, sha256, title, fetched_at "
                       "FROM revisions WHERE file_id = ? ORDER BY rev_no", [file_id])
    if not revs:
        raise PddError(f"{file_id}: not a file in the store {store.db_path}")
    by_id = {r["revision_id"]: r for r in revs}
    snaps = store.query(
        "SELECT s.name, s.created_at, (SELECT any_value(sr.revision_id) FROM snapshot_rows sr JOIN revisions r USING (revision_id) "
        " WHERE sr.snapshot_name = s.name AND r.file_id = ?) AS revision_id FROM snapshots s ORDER BY s.created_at, s.name",
        [file_id])
    events, prev = [], None
    for s in snaps:
        cur = s["revision_id"]
        if cur is not None and prev is None:
            r = by_id[cur]
            events.append({"snapshot": s["name"], "event": "entered", "rev_no": r["rev_no"],
                           "why": f"{r['status']} {r['licence_kind']}: {r['reason']}"})
        elif cur is not None and cur != prev:
            a, b = by_id[prev], by_id[cur]
            what = [k for k in ("title", "sha256", "licence_kind", "reason") if a[k] != b[k]]
            events.append({"snapshot": s["name"], "event": "changed", "rev_no": b["rev_no"],
                           "why": f"rev {a['rev_no']} -> {b['rev_no']}" + (f" ({', '.join(what)})" if what else "")})
        elif cur is None and prev is not None:
            # why it left: the newest revision pinned no later than this snapshot, or the exclusion list
            later = [r for r in revs if r["rev_no"] > by_id[prev]["rev_no"] and r["fetched_at"] <= s["created_at"]]
            if later and later[-1]["status"] != "accepted":
                why = f"rev {later[-1]['rev_no']} {later[-1]['status']}: {later[-1]['reason']}"
            elif exclusions and file_id in exclusions:
                e = exclusions[file_id]
                why = f"excluded on {e['date']}: {e['reason']}"
            else:
                why = "not among the store's accepted rows when pinned"
            events.append({"snapshot": s["name"], "event": "left", "rev_no": None, "why": why})
        prev = cur
    return {"file_id": file_id,
            "revisions": [{"rev_no": r["rev_no"], "status": r["status"], "licence_kind": r["licence_kind"],
                           "reason": r["reason"], "fetched_at": str(r["fetched_at"])} for r in revs],
            "events": events,
            "excluded": (exclusions or {}).get(file_id)}


def format_blame(b: dict) -> list[str]:
    lines = [f"file {b['file_id']}"]
    for r in b["revisions"]:
        lines.append(f"  rev {r['rev_no']}  {r['status']:8s} {r['licence_kind'] or '-':8s} {r['fetched_at']}  {r['reason']}")
    for e in b["events"]:
        lines.append(f"  {e['event']:7s} {e['snapshot']}: {e['why']}")
    if not b["events"]:
        lines.append("  in no pinned snapshot")
    if b["excluded"]:
        lines.append(f"  on the exclusion list since {b['excluded']['date']}: {b['excluded']['reason']}")
    return lines
