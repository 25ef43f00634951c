"""A dataset's history, like git's for source code: `pdd snapshot list|show|textconv|blame`.

`show`/`list` read the snapshot file (its Parquet metadata and metadata columns, never the image
bytes), NAME.json beside it, and, when the store is there, when it was pinned and which imports and
scrape runs its rows came from. `textconv` is the git diff driver (one canonical line per row).
`blame` follows one file through the store's snapshots: where it entered, changed and left, and why;
`blame --git` does the same along the git history of the build snapshot params.yaml names (no store needed).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

from pdd import diff as pdiff
from pdd import exclusions, snapshot
from pdd.core.errors import PddError
from pdd.core.ids import printable
from pdd.source.store import Store


def _store_ro(db: str | Path | None):
    """The store opened read-only, or None when there is none (or it is busy: the info is optional)."""
    if not db or not Path(db).exists():
        return None
    try:
        return Store(db, read_only=True)
    except PddError:
        return None


def _q(store, sql: str, params: list) -> list[dict]:
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
             "  licences      " + ", ".join(f"{printable(k)} {v}" for k, v in i["licences"].items()),
             "  sources       " + ", ".join(f"{k} {v}" for k, v in i["sources"].items()),
             f"  excluded      {i['excluded']} (ids on data/exclusions.tsv left out when pinning)"]
    d = i.get("derived_from")
    if d:
        left = d["excluded_ids"]
        lines.append(f"  derived from  {d['name']} ({str(d['content_hash'])[:12]}) by `pdd snapshot pin --from`"
                     + (f", leaving out {', '.join(printable(f) for f in left[:5])}" + (f" and {len(left) - 5} more" if len(left) > 5 else "")
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
        raise PddError(f"{printable(file_id)}: not a file in the store {store.db_path}")
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
    lines = [f"file {printable(b['file_id'])}"]
    for r in b["revisions"]:
        lines.append(f"  rev {r['rev_no']}  {r['status']:8s} {printable(r['licence_kind'] or '-'):8s} {r['fetched_at']}  "
                     f"{printable(r['reason'])}")
    for e in b["events"]:
        lines.append(f"  {e['event']:7s} {e['snapshot']}: {printable(e['why'])}")
    if not b["events"]:
        lines.append("  in no pinned snapshot")
    if b["excluded"]:
        lines.append(f"  on the exclusion list since {b['excluded']['date']}: {printable(b['excluded']['reason'])}")
    return lines


# ---- blame over git revisions -----------------------------------------------------------------
def _cat_batch(root: Path, names: list[str], check_only: bool = False) -> list[tuple[str, str, bytes] | None]:
    """(oid, type, contents) of each REV:PATH in NAMES through one `git cat-file --batch[-check]`;
    None for a name git does not have. (check_only: contents are b"".)"""
    if any("\n" in n for n in names):
        raise PddError("a path with a newline in it cannot be read from git")
    proc = subprocess.run(["git", "cat-file", "--batch-check" if check_only else "--batch"], cwd=root,
                          input="".join(n + "\n" for n in names).encode("utf-8"), capture_output=True)
    if proc.returncode != 0:
        raise PddError(f"git cat-file failed in {root}: {proc.stderr.decode(errors='replace').strip()[:200]}")
    out, pos, result = proc.stdout, 0, []
    for _ in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].decode("utf-8", errors="replace")
        pos = end + 1
        parts = header.rsplit(" ", 2)
        if header.endswith((" missing", " ambiguous")) or len(parts) != 3 or not parts[2].isdigit():
            result.append(None)
            continue
        oid, kind, size = parts
        data = b""
        if not check_only:
            data, pos = out[pos:pos + int(size)], pos + int(size) + 1
        result.append((oid, kind, data))
    return result


def _commits(root: Path, rev_range: str) -> list[dict]:
    """The first-parent history of REV_RANGE (`HEAD`, `v1..v3`, ...), oldest first, plus the first
    commit's parent (outside the range: what the range starts from) as `base` when it has one."""
    if not rev_range or rev_range.startswith("-") or "\n" in rev_range:
        raise PddError(f"--git {rev_range!r}: not a git revision or range")
    proc = subprocess.run(["git", "log", "--first-parent", "--reverse", "--format=%H%x1f%P%x1f%cI%x1f%s",
                           "--end-of-options", rev_range, "--"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["unknown revision"])[0]
        raise PddError(f"--git {rev_range}: not a git revision or range in {root} ({why})")
    commits = []
    for line in proc.stdout.splitlines():
        sha, parents, date, subject = line.split("\x1f", 3)
        commits.append({"commit": sha, "parent": (parents.split() or [None])[0], "date": date, "subject": subject})
    if not commits:
        raise PddError(f"--git {rev_range}: no commits in that range")
    return commits


def row_in(path: Path, file_id: str) -> tuple[dict | None, dict]:
    """(FILE_ID's row without image bytes, or None; the snapshot's pdd metadata)."""
    snapshot.open_snapshot(path)
    meta = snapshot.read_meta(path)
    src = "read_parquet('" + str(path).replace("'", "''") + "')"
    con = duckdb.connect()
    cur = con.execute(f"SELECT {', '.join(snapshot.META_COLUMNS)} FROM {src} WHERE file_id = ?", [file_id])
    got = cur.fetchall()
    return (dict(zip(snapshot.META_COLUMNS, got[0])) if got else None), meta


def _exclusions_at(root: Path, commit: str, rel: str) -> dict:
    found = _cat_batch(root, [f"{commit}:{rel}"])[0]
    if found is None or found[1] != "blob":
        return {}
    with tempfile.TemporaryDirectory(prefix="pdd-blame-") as tmp:
        path = Path(tmp) / "exclusions.tsv"
        path.write_bytes(found[2])
        try:
            return exclusions.read(path)
        except PddError:
            return {}


def blame_git(file_id: str, rev_range: str = "HEAD", repo: str | Path | None = None,
              exclusions_rel: str = "data/exclusions.tsv", store=None) -> dict:
    """Where FILE_ID entered, changed and left the build snapshot along the first-parent git history
    of REV_RANGE, and why. At each commit the build snapshot is the file params.yaml names there,
    committed in git or tracked by DVC, read like `pdd diff REV` reads it (pdd.diff.snapshot_at_revision:
    no checkout); only commits where that snapshot (its path, git blob or .dvc file) changes are read.
    Why: the licence decision of the row (reason and evidence) when it entered or its licence changed;
    for leaving, the exclusion list at that commit (EXCLUSIONS_REL), else the STORE's newer revision
    that is not accepted (when a store is given), else that the snapshot there no longer has it."""
    root = pdiff._repo_root(repo)
    if root is None:
        raise PddError(f"{repo or '.'}: not inside a git repository (pdd snapshot blame --git reads its history)")
    commits = _commits(root, rev_range)
    base = commits[0]["parent"]
    walk = ([{"commit": base, "base": True}] if base else []) + commits
    params = _cat_batch(root, [f"{c['commit']}:params.yaml" for c in walk])
    rels = [pdiff.snapshot_path_in_params(p[2]) if p and p[1] == "blob" else None for p in params]
    # a commit whose params.yaml names a path outside the repository is reported as skipped (git would
    # refuse the whole batch of names: `fatal: ... is outside repository`)
    outside = [bool(rel) and pdiff.outside_repo(rel) for rel in rels]
    names = []
    for c, rel, out in zip(walk, rels, outside):
        if rel and not out:
            names += [f"{c['commit']}:{rel}", f"{c['commit']}:{rel}.dvc", f"{c['commit']}:dvc.lock"]
    oids = iter(_cat_batch(root, names, check_only=True))
    keys = []
    for rel, out in zip(rels, outside):
        if not rel:
            keys.append(None)
            continue
        if out:
            keys.append(("outside", rel))
            continue
        own, dvcfile, lock = (next(oids) for _ in range(3))
        own_id, dvc_id = (own[0] if own else None), (dvcfile[0] if dvcfile else None)
        keys.append((rel, own_id, dvc_id, None if own_id or dvc_id else (lock[0] if lock else None)))

    states: dict = {}
    events, unavailable, seen = [], [], False
    prev = None          # ("row", row, meta, rel) | ("absent", None, meta, rel) | ("none", why, None, None)
    with tempfile.TemporaryDirectory(prefix="pdd-blame-") as tmp:
        for c, rel, key in zip(walk, rels, keys):
            if key is None:
                state = ("none", "params.yaml names no build snapshot (snapshot.path) at this revision", None, None)
            elif key in states:
                state = states[key]
            elif key[0] == "outside":
                state = ("unavailable", f"params.yaml names snapshot.path {printable(rel)!r}, outside the repository", None, rel)
                states[key] = state
            else:
                try:
                    path, _how = pdiff.snapshot_at_revision(c["commit"], root, Path(tmp))
                    try:
                        row, meta = row_in(path, file_id)
                    finally:
                        path.unlink(missing_ok=True)
                    state = ("row" if row else "absent", row, meta, rel)
                except PddError as exc:
                    state = ("unavailable", str(exc), None, rel)
                states[key] = state
            if state[0] == "unavailable":
                if not c.get("base"):
                    unavailable.append({"commit": c["commit"], "why": state[1]})
                continue  # what we cannot read changes nothing we can report
            seen = seen or state[0] == "row"
            if not c.get("base"):
                event = _git_event(file_id, prev, state, c, root, exclusions_rel, store)
                if event:
                    events.append(event)
            prev = state
    if not seen:
        raise PddError(f"{printable(file_id)}: in no build snapshot along --git {rev_range} ({len(commits)} revision(s), "
                       f"{len(states)} snapshot version(s) read)")
    return {"file_id": file_id, "range": rev_range, "repo": root.as_posix(), "revisions": len(commits),
            "snapshot_versions": len(states), "events": events, "unavailable": unavailable,
            "present_at_end": prev is not None and prev[0] == "row"}


def _decision(row: dict) -> str:
    return f"{row['licence_status']} {row['licence_kind']}: {row['licence_reason']}"


def _git_event(file_id: str, prev, state, c: dict, root: Path, exclusions_rel: str, store) -> dict | None:
    was, now = prev is not None and prev[0] == "row", state[0] == "row"
    meta = state[2] or {}
    event = {"commit": c["commit"], "date": c["date"], "subject": c["subject"], "snapshot": meta.get("pdd.snapshot"),
             "path": state[3], "content_hash": meta.get("pdd.content_hash")}
    if now and not was:
        row = state[1]
        return {**event, "event": "entered", "rev_no": row["rev_no"], "fields": [], "why": _decision(row),
                "evidence": json.loads(row["licence_evidence"] or "{}")}
    if now and was:
        a, b = prev[1], state[1]
        fields = [k for k in pdiff.COMPARED if a[k] != b[k]]
        if not fields:
            return None
        why = pdiff.detail_line(pdiff.change_record(file_id, fields, a, b))[len(f"~ {printable(file_id)}  "):]
        licence = any(k in fields for k in pdiff.FIELD_GROUPS["licence"])
        return {**event, "event": "changed", "rev_no": b["rev_no"], "fields": fields,
                "why": why + (f" (decision: {b['licence_reason']})" if licence else ""),
                **({"evidence": json.loads(b["licence_evidence"] or "{}")} if licence else {})}
    if was and not now:
        excluded = _exclusions_at(root, c["commit"], exclusions_rel).get(file_id)
        if excluded:
            why = f"excluded on {excluded['date']}: {excluded['reason']}"
        elif state[0] == "none":
            why = state[1]
        else:
            why = _store_reason(store, file_id, prev[1]["rev_no"]) or \
                "not in the snapshot params.yaml names here (not among the store's accepted rows when it was pinned)"
        return {**event, "event": "left", "rev_no": None, "fields": [], "why": why}
    return None


def _store_reason(store, file_id: str, rev_no: int) -> str | None:
    """The newest revision after REV_NO that is not accepted, when the store knows the file."""
    if store is None:
        return None
    later = _q(store, "SELECT rev_no, status, reason FROM revisions WHERE file_id = ? AND rev_no > ? ORDER BY rev_no DESC",
               [file_id, rev_no])
    bad = [r for r in later if r["status"] != "accepted"]
    return f"rev {bad[0]['rev_no']} {bad[0]['status']}: {bad[0]['reason']} (store)" if bad else None


def format_blame_git(b: dict) -> list[str]:
    lines = [f"file {printable(b['file_id'])}  (build snapshot along git {b['range']}, first parent: {b['revisions']} revision(s), "
             f"{b['snapshot_versions']} snapshot version(s))"]
    for e in b["events"]:
        where = f"{e['snapshot'] or '?'} ({str(e['content_hash'])[:12]})" if e["path"] else "no snapshot"
        lines.append(f"  {e['event']:7s} {e['commit'][:12]} {e['date'][:10]} {e['subject'][:40]!r}  {where}: {printable(e['why'])}")
        if e.get("evidence"):
            text = printable(json.dumps(e["evidence"], sort_keys=True, ensure_ascii=False))
            lines.append(f"          evidence {text[:150]}{'...' if len(text) > 150 else ''}")
    for u in b["unavailable"]:
        lines.append(f"  (skipped {u['commit'][:12]}: {u['why']})")
    lines.append(f"  {'in' if b['present_at_end'] else 'not in'} the build snapshot at the end of the range")
    return lines
