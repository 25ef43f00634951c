"""What stage `export` computes: snapshot -> training shards, a pure function of (snapshot, params, seed).

Decodes every image (EXIF orientation applied, all EXIF/XMP/ICC metadata dropped),
fits it to a square (center crop, or pad on a background colour: export.fit) with one fixed
Pillow filter at each resolution in params, splits train/val by a seeded hash of the file id (stable when files are
added or removed), assembles captions from labels whose own licence params allow,
and writes shards (pdd/data/shards.py) in file_id order. Rebuilding gives
byte-identical shards.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pdd import snapshot
from pdd.data import images, shards
from pdd.errors import PddError

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def split_of(file_id: str, seed: int, val_fraction: float) -> str:
    """train or val from a seeded hash of the file id: a file keeps its split across snapshot versions."""
    digest = hashlib.sha256(f"{seed}:split:{file_id}".encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def pick_labels(labels: list[dict], allowed_licences: list[str]) -> dict[str, str]:
    """One text per field, only from labels whose own licence is allowed; English or untagged first."""
    best: dict[str, tuple] = {}
    for lb in labels:
        if lb["licence"] not in allowed_licences or not (lb["text"] or "").strip():
            continue
        rank = (0 if lb.get("lang") in (None, "", "en") else 1, lb.get("lang") or "", lb["text"])
        if lb["field"] not in best or rank < best[lb["field"]][0]:
            best[lb["field"]] = (rank, " ".join(lb["text"].split()))
    return {k: v[1] for k, v in best.items()}


def build_caption(labels: list[dict], template: str, allowed_licences: list[str], fallback: str,
                  max_parts: int = 0) -> str:
    """Fill the template from labels; parts whose field is missing are dropped with their separator.
    Comma-separated parts that repeat an earlier part (ignoring case) are dropped; then at most
    `max_parts` parts are kept (0: all)."""
    fields = pick_labels(labels, allowed_licences)
    text = _FIELD.sub(lambda m: fields.get(m.group(1), "\x00"), template)
    kept, seen = [], set()
    for p in (p.strip() for p in re.split(r"\s*,\s*", text)):
        if p and "\x00" not in p and p.casefold() not in seen:
            seen.add(p.casefold())
            kept.append(p)
    return ", ".join(kept[:max_parts] if max_parts else kept) or fallback


def render_row(row: dict, resolutions: list[int], resample: str, fit: str = "crop", background=(255, 255, 255)) -> dict:
    try:
        img = images.decode_rgb(row["image"], min_short_side=max(resolutions))
    except images.BadImage as exc:
        raise PddError(f"export: {row['file_id']} in the snapshot cannot be decoded ({exc}); re-pin the snapshot") from None
    out = {"file_id": row["file_id"], "sha256": row["sha256"]}
    for res in resolutions:
        out[shards.image_column(res)] = images.fit_square(img, res, resample, fit, tuple(background)).tobytes()
    return out


def ordered_map(pool: ThreadPoolExecutor, fn, items, window: int):
    """Like pool.map, in input order, but with at most `window` items in flight: workers keep
    decoding while the caller writes shards, and memory stays bounded for any snapshot size."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def check_audit(audit_dir: str | Path, snapshot_path: str | Path) -> dict:
    """Export compiles only a snapshot that the audit passed: the report must have passed and name this
    snapshot's pinned content hash AND the sha256 of this very Parquet file. A failed audit leaves the
    previous (passing) report in place, and a tampered file can keep its declared content hash, so the
    declared hash alone let a snapshot the audit had just rejected through."""
    import json as _json

    from pdd.build.hashing import hash_file

    path = Path(audit_dir) / "report.json"
    try:
        report = _json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PddError(f"{path}: no audit report; run the audit first (`dvc repro audit`)") from None
    if not isinstance(report, dict):
        raise PddError(f"{path}: not an audit report; run the audit first (`dvc repro audit`)")
    pinned = snapshot.read_meta(snapshot_path).get("pdd.content_hash")
    try:
        file_sha = hash_file(snapshot_path)
    except OSError as exc:
        raise PddError(f"{snapshot_path}: cannot read the snapshot ({exc.strerror or exc})") from None
    again = "run the audit on this snapshot first (`dvc repro audit`)"
    if report.get("passed") is not True:
        raise PddError(f"{path}: the audit did not pass; {again}")
    if report.get("content_hash") != pinned:
        raise PddError(f"{path} was made for content hash {str(report.get('content_hash'))[:12]}, not for {snapshot_path} "
                       f"(content hash {str(pinned)[:12]}); {again}")
    if report.get("parquet_sha256") != file_sha:
        raise PddError(f"{path} was made for another file than {snapshot_path} (sha256 {file_sha[:12]}, the report says "
                       f"{str(report.get('parquet_sha256'))[:12]}): the snapshot changed since it was audited; {again}")
    return report


def export(snapshot_path: str | Path, out_dir: str | Path, cfg, seed: int) -> dict:
    """Stream the snapshot (already in canonical file_id order) into train/val shards."""
    resolutions = sorted(cfg.resolutions)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {s: shards.ShardWriter(out_dir, s, resolutions, cfg.shard_rows) for s in shards.SPLITS}
    tpl, allowed, fallback = cfg.caption.template, list(cfg.caption.label_licences), cfg.caption.fallback

    def rows_in_order():
        last_id = None
        for batch in snapshot.iter_batches(snapshot_path, batch_rows=128):
            for row in batch:
                key = row["file_id"].encode("utf-8")
                if last_id is not None and key <= last_id:
                    raise PddError(f"export: {snapshot_path} is not in canonical file_id order at {row['file_id']}; re-pin it")
                last_id = key
                yield row

    def render(row: dict) -> dict:
        rec = render_row(row, resolutions, cfg.resample, cfg.fit, cfg.background)
        rec["caption"] = build_caption(json.loads(row["labels"]), tpl, allowed, fallback, cfg.caption.max_parts)
        rec["split"] = split_of(row["file_id"], seed, cfg.val_fraction)
        return rec

    # Pillow releases the GIL while decoding and resizing, pyarrow while compressing shards.
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        for rec in ordered_map(pool, render, rows_in_order(), window=8 * cfg.threads + 16):
            writers[rec.pop("split")].add(rec)
    if not any(w.rows for w in writers.values()):
        raise PddError(f"export: snapshot {snapshot_path} has no rows")
    for split, writer in writers.items():
        if not writer.rows:  # the training stages need both splits (val recall, PSNR, the quality floor)
            total = sum(w.rows for w in writers.values())
            raise PddError(f"export: the {split} split of {snapshot_path} is empty ({total} rows, export.val_fraction "
                           f"{cfg.val_fraction}); use a larger snapshot or change export.val_fraction")
    index = {"format": "pdd-shards/1", "resolutions": resolutions, "layout": "raw RGB uint8, HWC, row-major",
             "caption_template": tpl, "counts": {}, "shards": {}}
    for split, writer in writers.items():
        index["shards"][split] = writer.close()
        index["counts"][split] = writer.rows
    shards.write_index(out_dir, index)
    return index
