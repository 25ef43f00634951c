"""`pdd import-openclipart DIR`: the Open Clip Art Library 0.18 as Debian packages it into the store.

DIR is where `dpkg-deb -x` unpacked openclipart-png and openclipart-svg (1:0.18+dfsg-19), or its
usr/share/openclipart. The tree is png/<category>/.../<name>.png beside svg/<category>/.../<name>.svg.
Debian replaced duplicate files by relative symlinks, so one store row is made per distinct PNG file
(its real path inside png/, which is also its id); the other names that link to it are kept as aliases.

Each file's licence is decided from its own SVG's RDF only (pdd.rights.openclipart; the package's
copyright file is never evidence), fail closed, and trademarks are rejected; the store then screens every
accepted file for marks and likenesses (pdd.rights.screen, with data/rights_review.tsv). Accepted PNGs are decoded
with the bomb checks (IHDR read first: more than images.MAX_PIXELS pixels is refused before any
decompression), flattened on white, shrunk to --max-side (Lanczos, never upscaled) and stored as
lossless WebP with fixed settings, so the same package gives the same bytes and the same snapshot.
"""
from __future__ import annotations

import os
import struct
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pdd.core.hashing import sha256_bytes
from pdd.core import images
from pdd.core.errors import PddError
from pdd.core.ids import check_id
from pdd.rights import openclipart as rights
from pdd.source.store import FileRecord, Label, Store

SOURCE_ID = "openclipart"
PACKAGE = "Open Clip Art Library 0.18, Debian openclipart-png/openclipart-svg"
MAX_PNG_BYTES = 32 * 1024 * 1024  # the largest PNG in 0.18 is about 4.3 MB
BATCH = 256
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Item:
    key: str             # png/<key>.png is the file's real path; also its external id
    png: Path
    svg: Path | None     # svg/<key>.svg (None when missing)
    aliases: list[str]   # other names (symlinks) that resolve to the same PNG


@dataclass
class ImportReport:
    accepted: int = 0
    rejected: int = 0
    unchanged: int = 0
    names: int = 0       # PNG names in the tree (symlinked duplicates included)
    reasons: Counter = field(default_factory=Counter)


def resolve_roots(folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder)
    for cand in (folder, folder / "usr" / "share" / "openclipart", folder / "openclipart"):
        if (cand / "png").is_dir() and (cand / "svg").is_dir():
            return cand / "png", cand / "svg"
    raise PddError(f"{folder}: no usr/share/openclipart/{{png,svg}} here (pass the folder `dpkg-deb -x` unpacked "
                   "openclipart-png and openclipart-svg into)")


def _names(base: Path, ext: str) -> dict[str, Path]:
    """key -> real path for every regular file, or symlink resolving to a regular file inside base."""
    out: dict[str, Path] = {}
    real_base = base.resolve()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            if not fn.lower().endswith(ext):
                continue
            path = Path(dirpath, fn)
            real = path.resolve()
            if not real.is_relative_to(real_base) or not real.is_file():
                continue  # dangling, or leading outside the tree
            out[path.relative_to(base).as_posix()[: -len(ext)]] = real
    return out


def plan(folder: str | Path) -> tuple[list[Item], int]:
    """The distinct PNG files, in key order, each with its own SVG and its aliases; and the name count."""
    png_root, svg_root = resolve_roots(folder)
    pngs, svgs = _names(png_root, ".png"), _names(svg_root, ".svg")
    real_png = png_root.resolve()
    groups: dict[str, list[str]] = {}
    for name, real in pngs.items():
        key = real.relative_to(real_png).as_posix()[: -len(".png")]
        groups.setdefault(key, []).append(name)
    items = [Item(key, real_png / f"{key}.png", svgs.get(key), sorted(n for n in names if n != key))
             for key, names in sorted(groups.items(), key=lambda kv: kv[0].encode("utf-8"))]
    return items, len(pngs)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from IHDR (stdlib only, nothing decompressed); raise BadImage."""
    if len(data) < 33 or data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
        raise images.BadImage("not a PNG (bad signature or IHDR)")
    return struct.unpack(">II", data[16:24])


def stored_image(data: bytes, max_side: int) -> tuple[bytes, int, int]:
    """PNG bytes -> (lossless WebP bytes, width, height): bomb check on IHDR, full decode, flatten on
    white, shrink to max_side. Raise BadImage with the reason."""
    w, h = png_size(data)
    if w * h > images.MAX_PIXELS:
        raise images.BadImage(f"decompression bomb: {w}x{h} exceeds {images.MAX_PIXELS} pixels")
    img = images.open_checked(data)
    if img.format != "PNG" or img.size != (w, h):
        raise images.BadImage("corrupt image: decoder disagrees with the PNG header")
    if getattr(img, "n_frames", 1) != 1:
        raise images.BadImage("animated PNG")
    out = images.shrink_to(images.flatten_on_white(img), max_side)
    return images.encode_webp_lossless(out), out.width, out.height


def reason_class(rec: FileRecord, kind: str | None) -> str:
    """The short reason a summary counts by."""
    if rec.status == "accepted":
        return "accepted"
    if rec.reason.startswith("rejected: bad image: decompression bomb"):
        return "rejected: decompression bomb"
    if rec.reason.startswith("rejected: bad image"):
        return "rejected: bad image"
    for screened in ("mark", "likeness", "reviewed"):  # the marks and likeness screen (pdd.rights.screen)
        if rec.reason.startswith(f"rejected: {screened}:"):
            return f"rejected: {screened}"
    return f"rejected: {kind}"


def decide_item(item: Item, max_side: int) -> tuple[FileRecord, str]:
    """One distinct PNG -> (FileRecord, reason class). Never raises for bad input."""
    category = item.key.rsplit("/", 1)[0] if "/" in item.key else ""
    provenance = {"source": PACKAGE, "png": f"png/{item.key}.png", "aliases": item.aliases}
    base = dict(source_id=SOURCE_ID, external_id=item.key, provenance=provenance)
    if item.svg is None:
        rec = FileRecord(title=item.key.rsplit("/", 1)[-1], status="rejected", reason="rejected: no SVG beside the PNG (no metadata)", **base)
        return rec, "rejected: no-svg"
    try:
        size = item.svg.stat().st_size
        if size > rights.MAX_SVG_BYTES:
            raise OSError(f"SVG larger than {rights.MAX_SVG_BYTES} bytes")
        svg = item.svg.read_bytes()
        meta = rights.read_rdf(svg)
        svg_sha = sha256_bytes(svg)
    except OSError as exc:
        meta, svg_sha = {"error": f"cannot read SVG: {exc}"}, None
    decision = rights.decide(meta, item.key, aliases=item.aliases, svg=f"svg/{item.key}.svg", svg_sha256=svg_sha)
    title = meta.get("title") or item.key.rsplit("/", 1)[-1]
    label_licence = decision.kind if decision.kind in ("pd", "cc0") else "unknown"
    labels = [Label(f, text, label_licence, source=src) for f, text, src in (
        ("title", meta.get("title"), "svg-rdf:dc:title"),
        ("creator", meta.get("creator"), "svg-rdf:dc:creator"),
        ("keywords", ", ".join(meta.get("keywords") or []), "svg-rdf:dc:subject"),
        ("category", category, "path"),
    ) if text]
    base.update(title=title, labels=labels, licence=decision)
    if not decision.accepted:
        rec = FileRecord(status="rejected", reason=decision.reason, **base)
        return rec, reason_class(rec, decision.kind)
    try:
        if item.png.stat().st_size > MAX_PNG_BYTES:
            raise images.BadImage(f"file larger than {MAX_PNG_BYTES} bytes")
        raw = item.png.read_bytes()
        provenance["png_sha256"] = sha256_bytes(raw)
        data, width, height = stored_image(raw, max_side)
    except images.BadImage as exc:
        rec = FileRecord(status="rejected", reason=f"rejected: bad image: {exc}", **base)
        return rec, reason_class(rec, decision.kind)
    except OSError as exc:
        rec = FileRecord(status="rejected", reason=f"rejected: bad image: cannot read ({exc.strerror or exc})", **base)
        return rec, reason_class(rec, decision.kind)
    ow, oh = png_size(raw)
    provenance["pdd_processing"] = (f"{ow}x{oh} PNG flattened on white, downscaled to max side {max_side} px "
                                    "(Lanczos, never upscaled), lossless WebP (quality 80, method 6)")
    rec = FileRecord(status="accepted", reason=decision.reason, data=data, mime="image/webp",
                     width=width, height=height, **base)
    return rec, "accepted"


def import_openclipart(store: Store, folder: str | Path, *, max_side: int = 64, workers: int | None = None,
                       progress=None) -> ImportReport:
    items, names = plan(folder)
    if not items:
        raise PddError(f"{folder}: no PNG files under png/")
    for item in items:  # before anything is stored: an id a takedown could not name is refused
        check_id(item.key, f"{folder}: PNG id (png/ID.png)", "rename that file; nothing was imported")
    store.ensure_source(SOURCE_ID, "openclipart", Path(folder).resolve().as_uri())
    report = ImportReport(names=names)
    workers = workers or min(8, os.cpu_count() or 1)
    # Pillow decodes/encodes without the GIL; the threads work ahead while the main thread records
    # (results come back in key order, so the store sees the same sequence every time)
    with ThreadPoolExecutor(workers) as pool:
        pending = pool.map(lambda it: decide_item(it, max_side), items)
        for start in range(0, len(items), BATCH):
            results = [next(pending) for _ in items[start:start + BATCH]]
            created = store.record_batch([rec for rec, _ in results])
            for (rec, klass), (_rev, new) in zip(results, created):
                if klass == "accepted" and rec.status != "accepted":  # the store's screen rejected it
                    klass = reason_class(rec, None)
                report.unchanged += not new
                if rec.status == "accepted":
                    report.accepted += 1
                else:
                    report.rejected += 1
                report.reasons[klass] += 1
                if progress:
                    progress(rec)
    return report
