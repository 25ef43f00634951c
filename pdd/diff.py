"""`pdd diff A B`: row-level, rights-aware diff of two dataset snapshots.

A and B are each a snapshot name (data/snapshots/NAME.parquet), a snapshot Parquet path, or a git
revision (`v1`, `HEAD~3`, a tag, `git:REV` to force it) at which params.yaml names the build's
snapshot; the snapshot is read from git when committed there, else through `dvc.api` from the DVC
cache or remote, without checking the revision out.

The diff runs in DuckDB over the Parquet metadata columns only (the image column is never read),
on a narrow projection (short columns as they are, long text columns as 64-bit hashes), in one pass
over each file: a FULL OUTER JOIN on file_id whose unmatched rows are the two anti-joins (added,
removed) and whose matched rows with any column IS DISTINCT FROM its partner are what an EXCEPT
finds (changed), column by column. diff_paths_except() is the same diff as two EXCEPTs + anti-joins
(each file read twice: ~1.6x the bare queries at 1 M rows, the join ~1x); the tests hold them equal.
Memory is bounded by DuckDB's memory_limit (it spills to disk).
"""
from __future__ import annotations

import json
import posixpath
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pdd import snapshot
from pdd.core import params as params_mod
from pdd.core.errors import PddError
from pdd.core.ids import printable

# Which columns make up each field group of the summary (every metadata column is in one group).
FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "caption/labels": ("title", "labels"),
    "licence": ("licence_status", "licence_kind", "licence_reason"),
    "image bytes": ("sha256", "source_sha1", "size", "mime"),
    "dimensions": ("width", "height"),
    "source URL": ("source_url",),
    "evidence": ("licence_evidence", "provenance"),
    "other": ("source_id", "external_id"),
}
# rev_no moves whenever the store records a new revision, so it is shown (`rev 1 -> 2`) but counted
# in a group only when nothing else changed ("other").
COMPARED = [c for c in snapshot.META_COLUMNS if c != "file_id"]
assert sorted(c for cols in FIELD_GROUPS.values() for c in cols) == sorted(c for c in COMPARED if c != "rev_no")
DEFAULT_ALLOWED = ("pd", "cc0")
MEMORY_LIMIT = "1.5GB"  # DuckDB spills beyond this; the 1M-row bench peaks near 1 GB RSS


@dataclass
class Side:
    spec: str             # what the user typed
    path: Path            # a local snapshot Parquet file
    origin: str           # "file", "snapshot name" or "git REV (git|dvc)"
    meta: dict = field(default_factory=dict)
    rows: int = 0


# ---- resolving A and B ------------------------------------------------------------------
def _git(args: list[str], cwd: Path, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=not binary)


def _repo_root(repo: str | Path | None) -> Path | None:
    p = _git(["rev-parse", "--show-toplevel"], Path(repo or "."))
    return Path(p.stdout.strip()) if p.returncode == 0 else None


def _is_revision(root: Path | None, rev: str) -> str | None:
    if root is None:
        return None
    p = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    return p.stdout.strip() if p.returncode == 0 else None


def snapshot_path_in_params(text) -> str | None:
    """snapshot.path of a params.yaml text (str or bytes), or None when it names none."""
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        rel = ((params_mod.parse(text) or {}).get("snapshot") or {}).get("path")
    except (PddError, UnicodeDecodeError, AttributeError):
        return None
    return rel if isinstance(rel, str) and rel and "\n" not in rel else None


def outside_repo(rel: str) -> bool:
    """Whether REL (a snapshot.path of some revision's params.yaml) points outside the repository:
    absolute, or climbing out with '..'. git refuses to read such a path (`fatal: ... is outside
    repository`), and DVC must not be asked to."""
    return posixpath.isabs(rel) or posixpath.normpath(rel).split("/")[0] == ".."


def snapshot_at_revision(rev: str, root: Path, dest_dir: Path) -> tuple[Path, str]:
    """Write the build snapshot that params.yaml names at REV into DEST_DIR (no checkout).
    Returns (path, how: 'git' or 'dvc')."""
    params = _git(["show", f"{rev}:params.yaml"], root)
    if params.returncode != 0:
        raise PddError(f"git revision {rev}: has no params.yaml, so no build snapshot to diff")
    rel = snapshot_path_in_params(params.stdout)
    if not rel:
        raise PddError(f"git revision {rev}: params.yaml names no snapshot.path")
    if outside_repo(rel):
        raise PddError(f"git revision {rev}: params.yaml names snapshot.path {rel!r}, outside the repository; "
                       "only a snapshot inside it can be read at a revision")
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in rev)
    dest = dest_dir / f"{safe}-{Path(rel).name}"
    kind = _git(["cat-file", "-t", f"{rev}:{rel}"], root)
    if kind.returncode == 0 and kind.stdout.strip() == "blob":
        blob = _git(["cat-file", "blob", f"{rev}:{rel}"], root, binary=True)
        if not blob.stdout.startswith(b"PAR1"):
            # a Git-LFS/DVC pointer or some other file committed under that name: fall through to DVC
            pass
        else:
            dest.write_bytes(blob.stdout)
            return dest, "git"
    try:
        # lazy: 300 ms (python -X importtime), only for a revision whose snapshot is not in git; every
        # `pdd snapshot show/blame/diff` would pay it otherwise
        import dvc.api
        from dvc.exceptions import DvcException
    except ImportError:  # pragma: no cover - dvc is a dependency
        raise PddError(f"git revision {rev}: {rel} is not committed in git, and dvc is not installed to read it") from None
    try:
        with dvc.api.open(rel, repo=str(root), rev=rev, mode="rb") as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except (DvcException, FileNotFoundError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PddError(f"git revision {rev}: params.yaml names {rel}, but that revision has no such snapshot "
                       f"in git or in DVC's cache/remote ({first})") from None
    return dest, "dvc"


def resolve_side(spec: str, snap_dir: str | Path, repo: str | Path | None, tmp: Path) -> Side:
    """A snapshot file or name first (that is what exists here), then a git revision."""
    force_git = spec.startswith("git:")
    if not force_git:
        p = Path(spec)
        if p.suffix == ".parquet" or p.exists():
            if not p.is_file():
                raise PddError(f"{spec}: no such snapshot file")
            return Side(spec, p, "file")
        named = Path(snap_dir) / f"{spec}.parquet"
        if named.is_file():
            return Side(spec, named, "snapshot name")
    rev = spec[4:] if force_git else spec
    root = _repo_root(repo)
    commit = _is_revision(root, rev)
    if commit is None:
        where = f"in {snap_dir}" + ("" if root else "; not inside a git repository")
        raise PddError(f"{spec}: not a snapshot file, a snapshot name {where}, or a git revision")
    path, how = snapshot_at_revision(rev, root, tmp)
    return Side(spec, path, f"git {rev} ({commit[:12]}, {how})")


def check_side(side: Side) -> None:
    pf = snapshot.open_snapshot(side.path)  # one-line error for non-Parquet / missing columns
    meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
    if "pdd.format" not in meta:
        raise PddError(f"{side.spec}: {side.path} has the snapshot columns but no pdd.format metadata; "
                       "not a pinned snapshot (pin one with `pdd snapshot pin`)")
    side.meta, side.rows = meta, pf.metadata.num_rows


# ---- the diff ------------------------------------------------------------------------------
def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(memory_limit: str = MEMORY_LIMIT, tmp_dir: str | Path | None = None):
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    if tmp_dir is not None:
        con.execute(f"SET temp_directory = {_sql_path(Path(tmp_dir))}")
    return con


# Short columns are compared as they are; long text columns through DuckDB's 64-bit hash(), so the
# EXCEPT hashes narrow rows (~150 bytes instead of the ~1 KB of JSON text a row carries). A changed
# value that keeps its 64-bit hash would go unseen: odds 2**-64 per changed cell.
EXACT = ["rev_no", "source_id", "size", "mime", "width", "height", "licence_status", "licence_kind"]
HASHED = [c for c in COMPARED if c not in EXACT]


def _projection(path: Path) -> str:
    cols = ", ".join(["file_id", *EXACT, *(f"hash({c}) AS {c}" for c in HASHED)])
    return f"SELECT {cols} FROM read_parquet({_sql_path(path)})"


def diff_paths(a: Path, b: Path, con=None) -> dict:
    """The raw diff of two snapshot files: added/removed ids and changed rows with their columns.

    One pass over each file: a FULL OUTER JOIN on file_id of the two narrow projections; rows with
    no partner are the two anti-joins (added, removed), and a row is changed when any column IS
    DISTINCT FROM its partner's (what an EXCEPT of the two sides finds, column by column)."""
    con = con or connect()
    differs = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in COMPARED)
    flags = ", ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in COMPARED)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE delta AS SELECT coalesce(o.file_id, n.file_id) AS file_id, "
            f"o.file_id IS NOT NULL AS in_a, n.file_id IS NOT NULL AS in_b, o.licence_kind AS kind_a, n.licence_kind AS kind_b, "
            f"o.licence_status AS status_a, n.licence_status AS status_b, o.rev_no AS rev_a, n.rev_no AS rev_b, "
            f"[{flags}] AS flags "
            f"FROM ({_projection(a)}) o FULL OUTER JOIN ({_projection(b)}) n ON o.file_id = n.file_id "
            f"WHERE o.file_id IS NULL OR n.file_id IS NULL OR {differs}")
        added = [r[0] for r in con.execute("SELECT file_id FROM delta WHERE NOT in_a ORDER BY file_id").fetchall()]
        removed = [r[0] for r in con.execute("SELECT file_id FROM delta WHERE NOT in_b ORDER BY file_id").fetchall()]
        joined = [(r[0], *r[1:7], *r[7]) for r in con.execute(
            "SELECT file_id, kind_a, kind_b, status_a, status_b, rev_a, rev_b, flags FROM delta "
            "WHERE in_a AND in_b ORDER BY file_id").fetchall()]
    except duckdb.OutOfMemoryException as exc:
        raise PddError(f"diff ran out of memory ({str(exc).splitlines()[0]}); raise pdd.diff.MEMORY_LIMIT") from None
    except duckdb.Error as exc:
        raise PddError(f"cannot diff {a} and {b}: {str(exc).splitlines()[0]}") from None
    return _changed_rows(added, removed, joined)


def diff_paths_except(a: Path, b: Path, con=None) -> dict:
    """diff_paths() as two EXCEPTs and two anti-joins (reads each file twice; kept as the reference
    the one-pass join is tested against, and timed beside it in bench/diff.py).

    new_rows = B EXCEPT A and old_rows = A EXCEPT B (over the narrow projection) hold both versions
    of every row that is not unchanged; anti-joins between those two small sets give the added and
    removed ids, and their join on file_id the changed rows, column by column."""
    con = con or connect()
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE new_rows AS {_projection(b)} EXCEPT {_projection(a)}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE old_rows AS {_projection(a)} EXCEPT {_projection(b)}")
        added = [r[0] for r in con.execute("SELECT file_id FROM new_rows ANTI JOIN old_rows USING (file_id) ORDER BY file_id").fetchall()]
        removed = [r[0] for r in con.execute("SELECT file_id FROM old_rows ANTI JOIN new_rows USING (file_id) ORDER BY file_id").fetchall()]
        flags = ", ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in COMPARED)
        joined = con.execute(
            f"SELECT o.file_id, o.licence_kind, n.licence_kind, o.licence_status, n.licence_status, o.rev_no, n.rev_no, {flags} "
            "FROM old_rows o JOIN new_rows n USING (file_id) ORDER BY o.file_id").fetchall()
    except duckdb.OutOfMemoryException as exc:
        raise PddError(f"diff ran out of memory ({str(exc).splitlines()[0]}); raise pdd.diff.MEMORY_LIMIT") from None
    except duckdb.Error as exc:
        raise PddError(f"cannot diff {a} and {b}: {str(exc).splitlines()[0]}") from None
    return _changed_rows(added, removed, joined)


def change_record(file_id: str, fields: list[str], old: dict, new: dict) -> dict:
    """One changed row (what detail_line prints): its changed fields and their groups, revision and licence
    from OLD to NEW (each a dict with rev_no, licence_kind, licence_status)."""
    groups = [g for g, gc in FIELD_GROUPS.items() if any(c in fields for c in gc)] or ["other"]
    return {"file_id": file_id, "fields": fields, "groups": groups, "rev_no": {"from": old["rev_no"], "to": new["rev_no"]},
            "licence": {"from": old["licence_kind"], "to": new["licence_kind"], "status_from": old["licence_status"],
                        "status_to": new["licence_status"]}}


def _changed_rows(added: list[str], removed: list[str], joined) -> dict:
    changed = []
    for row in joined:
        fields = [c for c, differs in zip(COMPARED, row[7:]) if differs]
        changed.append(change_record(row[0], fields, {"rev_no": row[5], "licence_kind": row[1], "licence_status": row[3]},
                                     {"rev_no": row[6], "licence_kind": row[2], "licence_status": row[4]}))
    return {"added": added, "removed": removed, "changed": changed}


def rights_diff(sa: Side, sb: Side, allowed=DEFAULT_ALLOWED, tmp_dir: Path | None = None) -> dict:
    """The full, rights-aware report of B against A."""
    if sa.meta["pdd.format"] != sb.meta["pdd.format"]:
        raise PddError(f"{sa.spec} is {sa.meta['pdd.format']} but {sb.spec} is {sb.meta['pdd.format']}: "
                       "snapshots of different schema versions cannot be diffed row by row; re-pin the older one")
    raw = diff_paths(sa.path, sb.path, connect(tmp_dir=tmp_dir))
    by_group = {g: 0 for g in FIELD_GROUPS}
    transitions: dict[tuple, int] = {}
    for ch in raw["changed"]:
        for g in ch["groups"]:
            by_group[g] += 1
        lic = ch["licence"]
        if lic["from"] != lic["to"] or lic["status_from"] != lic["status_to"]:
            key = (_kind(lic["from"], lic["status_from"]), _kind(lic["to"], lic["status_to"]), lic["to"] in allowed and lic["status_to"] == "accepted")
            transitions[key] = transitions.get(key, 0) + 1
    trans = [{"from": f, "to": t, "count": n, "regression": not ok} for (f, t, ok), n in sorted(transitions.items())]
    n_changed = len(raw["changed"])
    return {
        "a": _side_json(sa), "b": _side_json(sb),
        "counts": {"added": len(raw["added"]), "removed": len(raw["removed"]), "changed": n_changed,
                   "unchanged": sa.rows - len(raw["removed"]) - n_changed},
        "changed_by_group": by_group,
        "licence_transitions": trans,
        "rights_regression": any(t["regression"] for t in trans),
        "allowed_licences": sorted(allowed),
        "equal": not (raw["added"] or raw["removed"] or n_changed),
        **raw,
    }


def _kind(kind, status) -> str:
    return str(kind) if status == "accepted" else f"{kind} ({status})"


def _side_json(s: Side) -> dict:
    return {"spec": s.spec, "origin": s.origin, "name": s.meta.get("pdd.snapshot"),
            "content_hash": s.meta.get("pdd.content_hash"), "format": s.meta.get("pdd.format"), "rows": s.rows}


def diff(a: str, b: str, snap_dir: str | Path = snapshot.DEFAULT_DIR, repo: str | Path | None = None,
         allowed=DEFAULT_ALLOWED) -> dict:
    with tempfile.TemporaryDirectory(prefix="pdd-diff-") as tmp:
        sides = [resolve_side(s, snap_dir, repo, Path(tmp)) for s in (a, b)]
        for s in sides:
            check_side(s)
        return rights_diff(*sides, allowed=allowed, tmp_dir=Path(tmp))


# ---- printing -------------------------------------------------------------------------------
def detail_line(ch: dict) -> str:
    parts = []
    for g in ch["groups"]:
        cols = [c for c in FIELD_GROUPS[g] if c in ch["fields"]] or [c for c in ch["fields"] if c == "rev_no"]
        text = f"{g} ({', '.join(cols)})"
        lic = ch["licence"]
        if g == "licence" and (lic["from"] != lic["to"] or lic["status_from"] != lic["status_to"]):
            text += f" {printable(_kind(lic['from'], lic['status_from']))} -> {printable(_kind(lic['to'], lic['status_to']))}"
        parts.append(text)
    rev = ch["rev_no"]
    head = f"~ {printable(ch['file_id'])}  " + (f"rev {rev['from']} -> {rev['to']}  " if rev["from"] != rev["to"] else "")
    return head + "; ".join(parts)


def format_summary(d: dict) -> list[str]:
    c = d["counts"]
    out = [f"{c['added']} added, {c['removed']} removed, {c['changed']} changed, {c['unchanged']} unchanged",
           "changed by field: " + ", ".join(f"{g} {n}" for g, n in d["changed_by_group"].items())]
    if d["licence_transitions"]:
        out.append("licence transitions:")
        for t in d["licence_transitions"]:
            out.append(f"  {printable(t['from'])} -> {printable(t['to'])}: {t['count']}" + ("   <-- RIGHTS REGRESSION" if t["regression"] else ""))
    if d["rights_regression"]:
        n = sum(t["count"] for t in d["licence_transitions"] if t["regression"])
        out.append(f"!!! RIGHTS REGRESSION: {n} row(s) moved to a licence outside {d['allowed_licences']} "
                   "(the audit will refuse this snapshot; check the licence decisions before building)")
    return out


def format_text(d: dict, stat: bool = False) -> list[str]:
    head = [f"--- {d['a']['spec']}  ({d['a']['origin']}, {d['a']['rows']} rows, {str(d['a']['content_hash'])[:12]})",
            f"+++ {d['b']['spec']}  ({d['b']['origin']}, {d['b']['rows']} rows, {str(d['b']['content_hash'])[:12]})"]
    if stat:
        return head + format_summary(d)
    body = [f"- {printable(fid)}" for fid in d["removed"]] + [f"+ {printable(fid)}" for fid in d["added"]] + [detail_line(ch) for ch in d["changed"]]
    return head + body + format_summary(d)


def to_json(d: dict) -> str:
    return json.dumps(d, indent=2, sort_keys=False, ensure_ascii=False)
