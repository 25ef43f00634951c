"""Museum open-access dumps into the store: a folder of images plus a CSV with a licence column.

Each row is decided and stored on its own (one transaction per row), so a bad
row never costs the good ones, and re-running the import adds only what changed.
Rows whose licence is not positively public domain / CC0 are stored as rejected
with the reason, without their bytes; so are files that are not usable images.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pdd.core import files, images
from pdd.core.errors import PddError
from pdd.core.ids import check_id
from pdd.core.hashing import sha256_bytes
from pdd.rights.text import classify_licence_text
from pdd.source.store import FileRecord, Label, Store, validate_source_id

LABEL_FIELDS = ("title", "creator", "date", "medium", "caption", "description")
# what --label-licence may say: the label licences params.yaml's export.caption.label_licences knows, or unknown
LABEL_LICENCES = ("pd", "cc0", "cc-by", "cc-by-sa", "unknown")
MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class ImportReport:
    accepted: int = 0
    rejected: int = 0
    unchanged: int = 0
    reasons: Counter = field(default_factory=Counter)


def default_source_id(folder: Path) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-").lstrip("._-")[:64] or "folder"


def _read_csv(path: Path) -> tuple[list[dict], list[str]]:
    try:
        with files.open_regular(path, "the metadata CSV", "r", newline="", encoding="utf-8-sig",
                                hint="pass --metadata PATH to the CSV beside the images") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            # DictReader keeps only the last cell of a repeated column name: the others (e.g. a second
            # licence column) would be thrown away unseen
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            if repeated:
                raise PddError(f"{path}: the header names column {', '.join(repr(c) for c in repeated)} more than once; "
                               "rename or remove the duplicate column")
            rows = list(reader)
    except FileNotFoundError:
        raise PddError(f"{path}: metadata CSV not found (pass --metadata PATH to the CSV beside the images)") from None
    except IsADirectoryError:
        raise PddError(f"{path}: is a folder, not a CSV file (pass --metadata PATH to the CSV beside the images)") from None
    except OSError as exc:
        raise PddError(f"{path}: cannot read the metadata CSV ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PddError(f"{path}: cannot read as UTF-8 CSV ({exc}); re-save it as UTF-8 CSV") from None
    return rows, columns


def _resolve_inside(folder: Path, rel: str) -> Path | None:
    """The file a CSV row names, only if it lies inside the import folder."""
    root = folder.resolve()
    candidate = (root / rel).resolve()
    return candidate if candidate.is_relative_to(root) else None


def row_external_id(row: dict, file_column: str, id_column: str | None) -> str:
    rel = (row.get(file_column) or "").strip()
    external_id = (row.get(id_column) or "").strip() if id_column else rel
    return external_id or rel


def conflict_record(rows: list[dict], *, source_id: str, external_id: str, file_column: str) -> FileRecord:
    """One rejected record for an id that several rows of one import share: every row (licence cells
    included) is kept as provenance, so the evidence shows what disagreed. Deterministic, so an
    unchanged CSV adds no revision when imported again."""
    rel = (rows[0].get(file_column) or "").strip()
    title = (rows[0].get("title") or Path(rel).stem or external_id).strip()
    cells = [{k: v for k, v in sorted((k, v) for k, v in r.items() if k is not None)} for r in rows]
    return FileRecord(source_id=source_id, external_id=external_id, title=title, status="rejected",
                      reason=f"rejected: conflict: id appears {len(rows)} times in this import",
                      provenance={"conflicting_rows": cells})


def decide_row(folder: Path, row: dict, *, source_id: str, file_column: str, id_column: str | None,
               licence_column: str, evidence_column: str | None, label_licence: str, max_side: int | None) -> FileRecord:
    """Turn one CSV row into a FileRecord, accepted or rejected with its reason. Never raises for bad input."""
    rel = (row.get(file_column) or "").strip()
    external_id = row_external_id(row, file_column, id_column)
    title = (row.get("title") or Path(rel).stem or external_id).strip()
    provenance = {k: v for k, v in sorted((k, v) for k, v in row.items() if k is not None) if k not in (licence_column, evidence_column)}
    labels = [Label(f, row[f].strip(), label_licence, source=f"csv:{f}") for f in LABEL_FIELDS if (row.get(f) or "").strip()]
    base = dict(source_id=source_id, external_id=external_id, title=title, provenance=provenance, labels=labels)

    if None in row:  # csv.DictReader files surplus cells under the key None
        return FileRecord(status="rejected", reason="rejected: CSV row has more fields than the header (fix the row's quoting)", **base)
    decision = classify_licence_text(row.get(licence_column), field_name=licence_column)
    if evidence_column and row.get(evidence_column):
        decision.evidence[evidence_column] = row[evidence_column]
    if not decision.accepted:
        return FileRecord(status="rejected", reason=decision.reason, licence=decision, **base)
    if not rel:
        return FileRecord(status="rejected", reason=f"rejected: empty {file_column} column", licence=decision, **base)
    path = _resolve_inside(folder, rel)
    if path is None:
        return FileRecord(status="rejected", reason=f"rejected: {rel!r} lies outside {folder}", licence=decision, **base)
    if not path.is_file():  # a FIFO, socket, device or folder is rejected like a corrupt image, never opened
        kind = files.not_regular(path)
        return FileRecord(status="rejected", reason=f"rejected: file {rel!r} " + (f"is {kind}, not a regular file" if kind else "not found"),
                          licence=decision, **base)
    if path.stat().st_size > MAX_FILE_BYTES:
        return FileRecord(status="rejected", reason=f"rejected: file larger than {MAX_FILE_BYTES} bytes", licence=decision, **base)
    data = files.read_regular(path, f"image {rel!r}")
    try:
        info = images.inspect(data)
        if max_side:
            original = (sha256_bytes(data), info.width, info.height)
            data = images.downscale_jpeg(data, max_side)
            info = images.inspect(data)
            provenance["pdd_processing"] = (
                f"downscaled from {original[1]}x{original[2]} (sha256 {original[0]}) to max side {max_side} px, Lanczos, JPEG q90"
            )
    except images.BadImage as exc:
        return FileRecord(status="rejected", reason=f"rejected: bad image: {exc}", licence=decision, **base)
    return FileRecord(
        status="accepted", reason=decision.reason, licence=decision, data=data,
        mime=info.mime, width=info.width, height=info.height, **base,
    )


def import_folder(store: Store, folder: str | Path, metadata_csv: str | Path, *, source_id: str | None = None,
                  file_column: str = "file", id_column: str | None = None, licence_column: str = "license",
                  evidence_column: str | None = "license_evidence", label_licence: str = "unknown",
                  max_side: int | None = None, progress=None) -> ImportReport:
    if label_licence not in LABEL_LICENCES:
        hint = f" (did you mean {label_licence.lower()!r}?)" if str(label_licence).lower() in LABEL_LICENCES else ""
        raise PddError(f"--label-licence {str(label_licence)[:40]!r} is not one of {', '.join(LABEL_LICENCES)}{hint}: "
                       "a label whose licence matches nothing would never become training text")
    folder = Path(folder)
    if not folder.is_dir():
        raise PddError(f"{folder}: not a folder (pass the folder that holds the images)")
    rows, columns = _read_csv(Path(metadata_csv))
    for needed in (file_column, licence_column):
        if needed not in columns:
            raise PddError(f"{metadata_csv}: no {needed!r} column (columns: {', '.join(columns)}); name it with --{'file' if needed == file_column else 'licence'}-column")
    if id_column and id_column not in columns:
        raise PddError(f"{metadata_csv}: no {id_column!r} column for --id-column")
    source_id = validate_source_id(default_source_id(folder) if source_id is None else source_id)
    store.ensure_source(source_id, "folder", folder.resolve().as_uri())
    report = ImportReport()
    # an id that several rows share is a conflict: all its rows are rejected, as one record
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row_external_id(row, file_column, id_column), []).append(row)
    for external_id in by_id:  # before anything is stored: an id a takedown could not name is refused
        check_id(external_id, f"{metadata_csv}: id", "fix that row's file/id cell; nothing was imported")
    done: set[str] = set()
    for row in rows:
        external_id = row_external_id(row, file_column, id_column)
        same = by_id[external_id]
        if len(same) > 1:
            if external_id in done:
                continue
            done.add(external_id)
            rec = conflict_record(same, source_id=source_id, external_id=external_id, file_column=file_column)
        else:
            rec = decide_row(folder, row, source_id=source_id, file_column=file_column, id_column=id_column,
                             licence_column=licence_column, evidence_column=evidence_column if evidence_column in columns else None,
                             label_licence=label_licence, max_side=max_side)
        _rev, created = store.record(rec)
        n = len(same)
        if not created:
            report.unchanged += n
        if rec.status == "accepted":
            report.accepted += 1
        else:
            report.rejected += n
            report.reasons[rec.reason] += n
        if progress:
            progress(rec)
    return report
