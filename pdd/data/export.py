"""What stage `export` computes: snapshot -> training shards, a pure function of (snapshot, params, seed).

Decodes every image (EXIF orientation applied, all EXIF/XMP/ICC metadata dropped),
fits it to a square (center crop, or pad on a background colour: export.fit) with one fixed
Pillow filter at each resolution in params, splits train/val and drops rows as stage `curate` decided (by each
image's content: pdd/data/curate.py), assembles captions from labels whose own licence params allow,
and writes shards (pdd/core/shards.py) in file_id order. Rebuilding gives
byte-identical shards.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pdd.data import personal
from pdd import snapshot
from pdd.core import images, shards
from pdd.core import config
from pdd.core.config import as_dict
from pdd.core.errors import PddError
from pdd.core.hashing import hash_file, hash_json, write_json
from pdd.data import curate

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# junk the collection's metadata carries: Perl placeholders written instead of a creator (HASH(0x8a0cf9c)),
# HTML entities and tags in titles and descriptions
_PERL_REF = re.compile(r"(?i)\b(?:HASH|ARRAY|SCALAR|CODE|GLOB)\(0x[0-9a-f]+\)")
_TAG = re.compile(r"<[^<>]{1,200}>")


def clean_label(text: str) -> str:
    """A label as training text: HTML entities decoded, tags and Perl placeholders removed, whitespace collapsed."""
    text = html.unescape(html.unescape(text or ""))
    text = _PERL_REF.sub(" ", _TAG.sub(" ", text))
    return " ".join(text.split())

def pick_labels(labels: list[dict], allowed_licences: list[str]) -> dict[str, str]:
    """One text per field, only from labels whose own licence is allowed; English or untagged first."""
    best: dict[str, tuple] = {}
    for lb in labels:
        text = clean_label(lb["text"])
        if lb["licence"] not in allowed_licences or not text:
            continue
        rank = (0 if lb.get("lang") in (None, "", "en") else 1, lb.get("lang") or "", text)
        if lb["field"] not in best or rank < best[lb["field"]][0]:
            best[lb["field"]] = (rank, text)
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
    path = Path(audit_dir) / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
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


def rows_in_order(snapshot_path, columns: list[str] | None = None):
    """The snapshot's rows, checked to be in canonical file_id order (the order every shard is written in)."""
    last_id = None
    for batch in snapshot.iter_batches(snapshot_path, batch_rows=128, columns=columns):
        for row in batch:
            key = row["file_id"].encode("utf-8")
            if last_id is not None and key <= last_id:
                raise PddError(f"export: {snapshot_path} is not in canonical file_id order at {row['file_id']}; re-pin it")
            last_id = key
            yield row


def row_caption(row: dict, cfg) -> str:
    """A snapshot row's training caption (cfg: the export config): its labels, personal data removed, through
    the caption template. The export writes it; stage curate groups series by it."""
    c = cfg.caption
    return build_caption(personal.scrub_labels(json.loads(row["labels"])), c.template, list(c.label_licences),
                         c.fallback, c.max_parts)


def renderer(cfg, decided: dict):
    """row -> shard record (images at every resolution, caption) with its split under "split"
    (decided: file_id -> (split, keep), from stage curate)."""
    resolutions = sorted(cfg.resolutions)

    def render(row: dict) -> dict:
        rec = render_row(row, resolutions, cfg.resample, cfg.fit, cfg.background)
        rec["caption"] = row_caption(row, cfg)
        rec["split"] = decided[row["file_id"]][0]
        return rec
    return render


def rendered(rows, cfg, decided: dict):
    """The rows rendered (renderer) on cfg.threads threads, in input order, with a bounded window.
    Pillow releases the GIL while decoding and resizing, pyarrow while compressing shards."""
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        yield from ordered_map(pool, renderer(cfg, decided), rows, window=8 * cfg.threads + 16)


def decisions(curate_dir, snapshot_path, cfg=None, seed: int = 0) -> dict:
    """file_id -> (split, keep) from stage curate, checked to cover exactly the snapshot's rows. Without a
    curate_dir (library use, tests, benches) the curation is computed here with params.yaml's declared
    `curate` defaults (cfg: the export config)."""
    if curate_dir is None:
        ccfg = config.section(config.declared(), "curate")
        t = curation(snapshot_path, ccfg, cfg, seed)
        return {f: (s, k) for f, s, k in zip(t.column("file_id").to_pylist(), t.column("split").to_pylist(),
                                             t.column("keep").to_pylist())}
    decided = curate.read(curate_dir)
    ids = [row["file_id"] for row in rows_in_order(snapshot_path, ["file_id"])]
    if len(ids) != len(decided) or any(i not in decided for i in ids):
        raise PddError(f"{curate_dir} was made for another snapshot than {snapshot_path}; run it again (`dvc repro curate`)")
    return decided


def kept_rows(snapshot_path, decided: dict):
    return (row for row in rows_in_order(snapshot_path) if decided[row["file_id"]][1])


def curation(snapshot_path, cfg, ex, seed: int):
    """Stage curate's table: every row rendered at cfg.resolution as the export renders it, then decided
    (pdd/data/curate.py)."""
    ids, shas, pixels, captions = [], [], [], []

    def render(row):
        rec = render_row(row, [cfg.resolution], ex.resample, ex.fit, ex.background)
        return rec["file_id"], rec["sha256"], rec[shards.image_column(cfg.resolution)], row_caption(row, ex)

    with ThreadPoolExecutor(max_workers=ex.threads) as pool:
        for fid, sha, px, cap in ordered_map(pool, render, rows_in_order(snapshot_path), window=8 * ex.threads + 16):
            ids.append(fid)
            shas.append(sha)
            pixels.append(np.frombuffer(px, dtype=np.uint8).reshape(cfg.resolution, cfg.resolution, 3))
            captions.append(cap)
    if not ids:
        raise PddError(f"curate: snapshot {snapshot_path} has no rows")
    return curate.decide(ids, shas, np.stack(pixels), cfg, ex.val_fraction, seed, captions)


def check_counts(snapshot_path, counts: dict, cfg) -> None:
    total = sum(counts.values())
    if not total:
        raise PddError(f"export: snapshot {snapshot_path} has no rows")
    for split in shards.SPLITS:
        if not counts[split]:  # the training stages need both splits (val recall, PSNR, the quality floor)
            raise PddError(f"export: the {split} split of {snapshot_path} is empty ({total} rows, export.val_fraction "
                           f"{cfg.val_fraction}); use a larger snapshot or change export.val_fraction")


def make_index(cfg, names: dict, counts: dict) -> dict:
    return {"format": shards.FORMAT, "resolutions": sorted(cfg.resolutions), "layout": shards.LAYOUT,
            "caption_template": cfg.caption.template, "counts": dict(counts), "shards": dict(names)}


def export(snapshot_path: str | Path, out_dir: str | Path, cfg, seed: int, curate_dir=None) -> dict:
    """Stream the snapshot's kept rows (already in canonical file_id order) into train/val shards."""
    resolutions = sorted(cfg.resolutions)
    decided = decisions(curate_dir, snapshot_path, cfg, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {s: shards.ShardWriter(out_dir, s, resolutions, cfg.shard_rows) for s in shards.SPLITS}
    for rec in rendered(kept_rows(snapshot_path, decided), cfg, decided):
        writers[rec.pop("split")].add(rec)
    counts = {s: w.rows for s, w in writers.items()}
    check_counts(snapshot_path, counts, cfg)
    index = make_index(cfg, {s: w.close() for s, w in writers.items()}, counts)
    shards.write_index(out_dir, index)
    return index


# ---- the same export in slices (cluster scatter / gather) -----------------------------------------
# Slice I of N writes whole shards (shard j of the list train-00000.., val-00000.. when j % N == I), each
# shard holding exactly the rows one export job puts in it, written by the same ShardWriter in the same
# order: so the gathered folder is byte-identical to one job's. Choosing the shards needs only the file
# ids and stage curate's decisions, not the images.
def plan(snapshot_path, cfg, seed: int, curate_dir=None, decided: dict | None = None) -> dict:
    """{split: [[file ids of shard 0], [.. shard 1], ...]}, as one export job writes them."""
    ids = {s: [] for s in shards.SPLITS}
    decided = decided or decisions(curate_dir, snapshot_path, cfg, seed)
    for row in rows_in_order(snapshot_path, ["file_id"]):
        split, keep = decided[row["file_id"]]
        if keep:
            ids[split].append(row["file_id"])
    check_counts(snapshot_path, {s: len(v) for s, v in ids.items()}, cfg)
    r = cfg.shard_rows
    return {s: [v[i:i + r] for i in range(0, len(v), r)] for s, v in ids.items()}


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.parquet"


def slice_key(snapshot_path, cfg, seed: int, parts: int, curate_dir=None) -> str:
    """What a slice was made from: the snapshot file's bytes, the curation, the export params, the seed and the
    slice count."""
    made = hash_file(Path(curate_dir) / curate.FILE) if curate_dir is not None else "curate defaults"
    return hash_json({"snapshot_sha256": hash_file(snapshot_path), "curation": made,
                      "export": as_dict(cfg), "seed": seed, "parts": parts})


def export_slice(snapshot_path: str | Path, out_dir: str | Path, cfg, seed: int, part: int, parts: int,
                 curate_dir=None) -> dict:
    """Slice `part` of `parts`: its shards, under their final names, and slice.json saying what they were made from."""
    if not 0 <= part < parts:
        raise PddError(f"export: slice {part}/{parts} does not exist (slices are numbered 0 to {parts - 1})")
    resolutions = sorted(cfg.resolutions)
    decided = decisions(curate_dir, snapshot_path, cfg, seed)
    shard_list = plan(snapshot_path, cfg, seed, decided=decided)
    mine = [(s, k) for s in shards.SPLITS for k in range(len(shard_list[s]))][part::parts]
    owner = {fid: (s, k) for s, k in mine for fid in shard_list[s][k]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = {key: out_dir / f".{shard_name(*key)}.d" for key in mine}
    writers = {key: shards.ShardWriter(d, key[0], resolutions, cfg.shard_rows) for key, d in work.items()}
    for d in work.values():
        d.mkdir()
    for rec in rendered((row for row in rows_in_order(snapshot_path) if row["file_id"] in owner), cfg, decided):
        rec.pop("split")
        writers[owner[rec["file_id"]]].add(rec)
    for key, writer in writers.items():
        written = writer.close()
        if written != [shard_name(key[0], 0)]:   # one shard_rows-sized shard per writer, by construction
            raise PddError(f"export: slice {part}/{parts} wrote {written} for {shard_name(*key)}; this is a bug")
        os.replace(work[key] / written[0], out_dir / shard_name(*key))
        shutil.rmtree(work[key])
    write_json(out_dir / "slice.json", {"part": part, "parts": parts, "key": slice_key(snapshot_path, cfg, seed, parts, curate_dir),
                                        "shards": [shard_name(*key) for key in mine]})
    return {"shards": [shard_name(*key) for key in mine], "rows": len(owner)}


def gather(slice_dirs: list[Path], out_dir: str | Path, snapshot_path, cfg, seed: int, curate_dir=None) -> dict:
    """Assemble the export from its slices (copies their shards, writes index.json); refuses slices made
    from another snapshot, params or slice count, and a missing or doubled shard."""
    parts = len(slice_dirs)
    key = slice_key(snapshot_path, cfg, seed, parts, curate_dir)
    shard_list = plan(snapshot_path, cfg, seed, curate_dir)
    wanted = {shard_name(s, k) for s in shards.SPLITS for k in range(len(shard_list[s]))}
    found: dict[str, Path] = {}
    redo = f"run the {parts} export slices again (`python -m stages.export --slice I/{parts}`)"
    for i, d in enumerate(slice_dirs):
        try:
            meta = json.loads((Path(d) / "slice.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise PddError(f"export: {d}/slice.json missing or unreadable: slice {i}/{parts} was not exported; {redo}") from None
        if meta.get("key") != key or meta.get("part") != i or meta.get("parts") != parts:
            raise PddError(f"export: {d} was made from another snapshot, params, seed or slice count; {redo}")
        for name in meta["shards"]:
            if name in found or name not in wanted:
                raise PddError(f"export: shard {name} from {d} is {'doubled' if name in found else 'not in the plan'}; {redo}")
            found[name] = Path(d)
    if set(found) != wanted:
        raise PddError(f"export: shards missing from the slices: {', '.join(sorted(wanted - set(found))[:5])}; {redo}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, d in sorted(found.items()):
        shutil.copyfile(d / name, out_dir / name)
    names = {s: [shard_name(s, k) for k in range(len(shard_list[s]))] for s in shards.SPLITS}
    index = make_index(cfg, names, {s: sum(len(x) for x in shard_list[s]) for s in shards.SPLITS})
    shards.write_index(out_dir, index)
    return index
