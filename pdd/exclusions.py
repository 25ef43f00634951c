"""The takedown / opt-out list: `data/exclusions.tsv`, a versioned text file in the repository.

One line per excluded file, tab-separated, sorted by file_id, with a header:

    file_id<TAB>reason<TAB>date

`pdd exclude FILE_ID --reason TEXT` adds a line (the id must be a file the store knows); pinning
leaves excluded ids out and records how many it left out; the audit stage fails, naming the ids,
if an excluded id is in the build snapshot. The file is a pure function of what was excluded:
no timestamps but the date the user gives (default: today), rows sorted, one id once.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

from pdd.core import files
from pdd.core.errors import PddError
from pdd.core.hashing import write_atomic

DEFAULT_PATH = Path("data/exclusions.tsv")
HEADER = ("file_id", "reason", "date")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def read(path: str | Path = DEFAULT_PATH) -> dict[str, dict]:
    """{file_id: {"reason", "date"}}; a missing file is an empty list. Malformed lines are one-line errors."""
    path = Path(path)
    if not path.exists():
        return {}
    files.regular_file(path, "the exclusion list", "pass --exclusions PATH to the takedown list (a data/exclusions.tsv file)")
    out: dict[str, dict] = {}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if tuple(cells) == HEADER:
            continue
        if len(cells) != 3 or not cells[0]:
            raise PddError(f"{path}:{no}: expected 3 tab-separated cells (file_id, reason, date), got {len(cells)}")
        out[cells[0]] = {"reason": cells[1], "date": cells[2]}
    return out


def excluded_ids(path: str | Path = DEFAULT_PATH) -> set[str]:
    """The ids on the exclusion list (empty when there is no list)."""
    return set(read(path))


def write(path: str | Path, entries: dict[str, dict]) -> None:
    lines = ["\t".join(HEADER)]
    for fid in sorted(entries, key=lambda s: s.encode("utf-8")):
        lines.append("\t".join((fid, entries[fid]["reason"], entries[fid]["date"])))
    write_atomic(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))


def _clean(text: str) -> str:
    return " ".join(str(text or "").split())


def add(path: str | Path, file_id: str, reason: str, date: str | None = None, store=None) -> dict:
    """Add FILE_ID to the list (checked against the store when one is given). Returns the entry.
    Excluding an id again with the same reason is a no-op; with another reason it updates the line."""
    reason = _clean(reason)
    if not reason:
        raise PddError("pdd exclude needs a non-empty --reason (why this file is taken down)")
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        day = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date() if epoch else _dt.date.today()
        date = day.isoformat()
    if not _DATE.fullmatch(date):
        raise PddError(f"--date {date!r}: expected YYYY-MM-DD")
    if store is not None:
        known = store.query("SELECT 1 FROM files WHERE file_id = ?", [file_id])
        if not known:
            raise PddError(f"{file_id}: not a file in the store {store.db_path} (ids look like 'source:external_id'; "
                           "see `pdd snapshot show NAME`)")
    entries = read(path)
    entries[file_id] = {"reason": reason, "date": date}
    write(path, entries)
    return {"file_id": file_id, **entries[file_id]}


def apply(rows: list[dict], exclusions: dict[str, dict] | set[str] | None) -> tuple[list[dict], list[str]]:
    """Rows without the excluded ids, and the ids that were left out (sorted)."""
    if not exclusions:
        return rows, []
    kept, dropped = [], []
    for r in rows:
        (dropped if r["file_id"] in exclusions else kept).append(r)
    return kept, sorted(r["file_id"] for r in dropped)


def check_snapshot_ids(ids, exclusions: dict[str, dict]) -> dict[str, list[str]]:
    """{file_id: [problem]} for every id in IDS that is on the exclusion list (for the audit)."""
    return {fid: [f"excluded on {exclusions[fid]['date']}: {exclusions[fid]['reason']}"]
            for fid in sorted(set(ids) & exclusions.keys())}
