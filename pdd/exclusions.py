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
import sys
from pathlib import Path

from pdd.core import files
from pdd.core.errors import PddError
from pdd.core.ids import check_id, id_problem, printable
from pdd.core.hashing import write_atomic

DEFAULT_PATH = Path("data/exclusions.tsv")
HEADER = ("file_id", "reason", "date")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date_problem(date: str) -> str | None:
    if not _DATE.fullmatch(date):
        return "expected YYYY-MM-DD"
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        return "not a calendar date"
    return None


def _text(path: Path) -> str:
    """The list's text: a regular file (no hang on a FIFO: pdd.core.files), UTF-8 (a leading BOM dropped),
    line ends normalised to \\n."""
    try:
        data = files.read_regular(path, "the exclusion list",
                                  hint="pass --exclusions PATH to the takedown list (a data/exclusions.tsv file)")
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise PddError(f"{path}: cannot read the exclusion list ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise PddError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x}); re-save the exclusion list as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read(path: str | Path = DEFAULT_PATH) -> dict[str, dict]:
    """{file_id: {"reason", "date"}}; a missing file is an empty list. Parsed strictly, so that no
    takedown is lost to an editor: a BOM, CRLF line ends and whitespace around cells are harmless;
    anything else that is not a header, blank line, `#` comment or `id<TAB>reason<TAB>YYYY-MM-DD`
    line with a valid id is a one-line error naming the file and line."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return {}
    out: dict[str, dict] = {}
    for no, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.strip().split("\t")]
        if tuple(cells) == HEADER:
            continue
        where = f"{path}:{no}"
        if len(cells) != 3 or not cells[0]:
            hint = "; the cells must be separated by tabs (an editor may have turned them into spaces)" \
                if len(line.split()) >= 3 else ""
            raise PddError(f"{where}: expected 3 tab-separated cells (file_id, reason, date), got {len(cells)}{hint}")
        fid, reason, date = cells
        check_id(fid, f"{where}: file_id", "fix that line (one entry per line)")
        if id_problem(reason) or not reason:
            raise PddError(f"{where}: reason {reason!r}: must be non-empty printable text; fix that line")
        problem = _date_problem(date)
        if problem:
            raise PddError(f"{where}: date {date!r}: {problem}; fix that line")
        out[fid] = {"reason": reason, "date": date}
    return out


def warn_unmatched(entries: dict | set | None, matched, where: str) -> list[str]:
    """Print one warning (stderr) naming the entries of the list that match no id in MATCHED (the ids
    of WHERE): a typo'd takedown must not pass unseen. Returns them, sorted."""
    unmatched = sorted(set(entries or ()) - set(matched))
    if unmatched:
        shown = ", ".join(printable(f) for f in unmatched[:10]) + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
        print(f"pdd: warning: {len(unmatched)} exclusion(s) match no file of {where}: {shown} "
              "(already left out, or a mistyped id?)", file=sys.stderr)
    return unmatched


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
    if not reason or id_problem(reason):
        raise PddError("pdd exclude needs a non-empty --reason of printable text (why this file is taken down)")
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        day = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date() if epoch else _dt.date.today()
        date = day.isoformat()
    problem = _date_problem(date)
    if problem:
        raise PddError(f"--date {date!r}: {problem}")
    check_id(file_id, "pdd exclude: file id", "it cannot be written to the list safely")
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
