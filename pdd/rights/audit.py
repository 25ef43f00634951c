"""What stage `audit` checks: the snapshot must prove, row by row, that it may be compiled.

Fails the build, naming the rows, if any row lacks an accepted public-domain/CC0
licence decision, if an image's bytes do not match its sha256, or if the
snapshot's content hash does not match the one it was pinned with (a tampered
or mis-pinned snapshot must not compile).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pdd import snapshot
from pdd.core.hashing import hash_file
from pdd.core.errors import PddError
from pdd.core.ids import printable
from pdd.rights.text import redecide_text
from pdd.rights.commons import redecide as commons_redecide
from pdd import exclusions
from pdd.rights.openclipart import redecide as openclipart_redecide
from pdd.rights import screen

# Evidence is a few levels deep (Commons: extmetadata -> field -> value; SDC scopes: 4). A crafted row
# nested deeper is refused before anything walks it (json and repr recurse: a RecursionError otherwise).
MAX_EVIDENCE_DEPTH = 32


def _depth(value) -> int:
    """How deeply lists and dicts nest in VALUE (iteratively: a crafted value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def read_evidence(text) -> tuple[dict | None, str | None]:
    """(the licence evidence of a row, None) or (None, why it is refused): not JSON, not an object, or
    nested deeper than MAX_EVIDENCE_DEPTH (fail closed: such a row does not compile)."""
    try:
        evidence = json.loads(text or "{}")
    except (json.JSONDecodeError, TypeError):
        return None, "no licence evidence"
    except RecursionError:
        return None, f"licence evidence nested more than {MAX_EVIDENCE_DEPTH} levels deep"
    if not isinstance(evidence, dict):
        return None, f"licence evidence is a JSON {type(evidence).__name__}, not an object"
    if _depth(evidence) > MAX_EVIDENCE_DEPTH:
        return None, f"licence evidence nested more than {MAX_EVIDENCE_DEPTH} levels deep"
    if not evidence:
        return None, "no licence evidence"
    return evidence, None


def row_problems(row: dict, allowed: list[str], review: dict | None = None) -> list[str]:
    problems = []
    if row.get("licence_status") != "accepted":
        problems.append(f"status {row.get('licence_status')!r}")
    if row.get("licence_kind") not in allowed:
        problems.append(f"licence {row.get('licence_kind')!r} not in {allowed}")
    if not str(row.get("licence_reason") or "").startswith("accepted"):
        problems.append("no accepting licence decision")
    evidence, refused = read_evidence(row.get("licence_evidence"))
    if refused:
        problems.append(refused)
        return problems
    # Defence in depth: decide again from the stored evidence with today's rules. A row whose
    # evidence no longer (or never) supports an accepted PD/CC0 decision must not compile.
    again = openclipart_redecide(evidence) or redecide_text(evidence) or commons_redecide(evidence)
    if again is None:
        problems.append("licence evidence of an unknown kind")
    elif not again.accepted:
        problems.append(f"evidence does not support acceptance ({again.reason})")
    elif again.kind != row.get("licence_kind"):
        problems.append(f"evidence says {again.kind}, row says {row.get('licence_kind')}")
    # the marks and likeness screen, again with today's lists and reviewed decisions (data/rights_review.tsv)
    screened = screen.row_problem(row, evidence, review)
    if screened:
        problems.append(screened)
    return problems


def audit_snapshot(path: str | Path, allowed: list[str], exclusions_path: str | Path = exclusions.DEFAULT_PATH,
                   review_path: str | Path = screen.DEFAULT_REVIEW) -> dict:
    """Check every row; raise PddError naming the failing rows, else return the report.
    A row whose id is on the exclusion list (data/exclusions.tsv) fails, with the takedown reason; so does a
    row the marks and likeness screen rejects today, with data/rights_review.tsv's decisions, and an id
    that more than one row has (a snapshot holds one row per file: a second row of the same id could carry
    another licence decision than the one checked). Ids are printed escaped."""
    digest, integrity = snapshot.verify(path)
    rows = snapshot.read_rows(path)
    review = screen.read_review(review_path)
    bad: dict[str, list[str]] = {}
    for r in rows:
        bad.setdefault(r["file_id"], []).extend(row_problems(r, allowed, review))
    for fid, n in Counter(r["file_id"] for r in rows).items():
        if n > 1:
            bad[fid].append(f"file_id on {n} rows (a snapshot has one row per file)")
    if None in bad:
        bad[None].insert(0, "row(s) without a file_id")
    excl = exclusions.read(exclusions_path)
    exclusions.warn_unmatched(excl, (r["file_id"] for r in rows), Path(path).as_posix())
    for fid, problems in exclusions.check_snapshot_ids((r["file_id"] for r in rows), excl).items():
        bad[fid] = bad.get(fid, []) + problems
    bad = {k: v for k, v in bad.items() if v}
    if bad or integrity:
        named = [printable(f"{fid} ({'; '.join(p)})") for fid, p in sorted(bad.items(), key=lambda kv: str(kv[0]))]
        named += [printable(p) for p in integrity]
        shown = ", ".join(named[:10]) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
        raise PddError(
            f"audit failed: {len(named)} problem(s) in {path}: {shown}; "
            "this snapshot must not be built: re-pin it from the store (`pdd snapshot pin`)"
        )
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["licence_kind"]] = kinds.get(r["licence_kind"], 0) + 1
    # parquet_sha256: export compiles only the very file that passed (pdd/data/export.py check_audit)
    return {"snapshot": Path(path).as_posix(), "content_hash": digest, "parquet_sha256": hash_file(path), "rows": len(rows),
            "licences": dict(sorted(kinds.items())), "passed": True,
            "screen": {"decider": screen.DECIDER, "reviewed_accepts": sum(r["file_id"] in review for r in rows)}}
