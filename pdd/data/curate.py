"""What stage `curate` computes: which split each snapshot row goes to, and which rows the export keeps.
A pure function of (snapshot, params, seed), deterministic, written as a table the export follows.

Held out means held out. The Open Clip Art collection holds the same picture under several names (148 rows
of the demo share their bytes with another row) and long near-identical series (1,220 "spirograph" stars,
desktop-icon themes). A split by file id puts copies on both sides, so val is not held out and every "compared
to val" figure leans on leaked images. Here the split is decided by the image's *content*:

* each image is rendered as the export renders it (`curate.resolution` px, export.fit / resample /
  background) and gets a perceptual key: a horizontal and a vertical difference hash (dHash) of its grey
  levels (`curate.hash_size`^2 bits each) and its mean colour in 2x2 quadrants at 8 levels per channel;
* the split is a seeded hash of that key, so byte-identical images and images with the same key always land
  in the same split, and a file keeps its split across snapshot versions as long as its pixels do (it depends
  on nothing but its own content);
* a val image whose hashes are within `curate.near_distance` bits of a train image's (a near-duplicate the
  exact key missed) is dropped from val (`curate.val_near_train: drop`) or kept and counted (`keep`).

Curation (the training set as a build step): images with the same key form a near-duplicate cluster; at most
`curate.cap_per_cluster` images of each cluster are kept in train (the first by sha256 of the image bytes:
deterministic, and independent of file names); 0 keeps all. Diffusion models copy duplicated images first
(Somepalli et al. 2023, Carlini et al. 2023), and one series of 1,220 near-identical stars was a fifth of the
demo's training set.

A series cap: a text-to-image model learns nothing from a caption that names hundreds of different pictures
("Part of the Flat Icon Collection (...)" on 478 icons, "gramastar" on 446 ring-like star polygons) but their
average, and such series take steps from every other caption. `curate.cap_per_caption` keeps at most that many
train images per identical caption (as the export builds it), again the first by sha256; 0 keeps all.

Writes data/curate/curation.parquet (file_id order: file_id, sha256, key, dhash (hex), split, keep, reason)
and returns the counts for metrics/curate.json.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pdd.core.errors import PddError

FILE = "curation.parquet"
REASONS = ("kept", "val_near_train", "cluster_cap", "caption_cap")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def dhashes(rgb_u8: np.ndarray, hash_size: int) -> np.ndarray:
    """[N,R,R,3] uint8 -> [N, 2*hash_size^2/8] uint8: horizontal then vertical dHash bits of the grey levels."""
    out = []
    for img in rgb_u8:
        grey = Image.fromarray(img).convert("L")
        h = np.asarray(grey.resize((hash_size + 1, hash_size), Image.Resampling.BOX), dtype=np.int16)
        v = np.asarray(grey.resize((hash_size, hash_size + 1), Image.Resampling.BOX), dtype=np.int16)
        bits = np.concatenate([(h[:, 1:] > h[:, :-1]).ravel(), (v[1:, :] > v[:-1, :]).ravel()])
        out.append(np.packbits(bits))
    return np.stack(out) if out else np.zeros((0, (2 * hash_size * hash_size + 7) // 8), dtype=np.uint8)


def colour_code(rgb_u8: np.ndarray) -> np.ndarray:
    """[N,R,R,3] -> [N,12] uint8: mean colour of the 2x2 quadrants, 8 levels per channel."""
    n, r = rgb_u8.shape[:2]
    q = rgb_u8[:, : r // 2 * 2, : r // 2 * 2].astype(np.float64).reshape(n, 2, r // 2, 2, r // 2, 3).mean(axis=(2, 4))
    return (q // 32).astype(np.uint8).reshape(n, 12)


def keys(rgb_u8: np.ndarray, hash_size: int) -> tuple[list[str], np.ndarray]:
    """The perceptual key of each image (hex) and its dHash bytes."""
    dh = dhashes(rgb_u8, hash_size)
    col = colour_code(rgb_u8)
    return [a.tobytes().hex() + "-" + b.tobytes().hex() for a, b in zip(dh, col)], dh


def split_of_key(key: str, seed: int, val_fraction: float) -> str:
    """train or val from a seeded hash of the perceptual key: same content, same split, in every snapshot."""
    digest = hashlib.sha256(f"{seed}:split:{key}".encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def near(query: np.ndarray, ref: np.ndarray, distance: int, chunk: int = 512) -> np.ndarray:
    """For each query hash, whether some ref hash is within `distance` bits (Hamming)."""
    hit = np.zeros(len(query), dtype=bool)
    if not len(ref) or not len(query):
        return hit
    for s in range(0, len(query), chunk):
        x = np.bitwise_xor(query[s:s + chunk, None, :], ref[None, :, :])
        hit[s:s + chunk] = (_POPCOUNT[x].sum(axis=2, dtype=np.int32) <= distance).any(axis=1)
    return hit


def decide(file_ids: list[str], sha256s: list[str], rgb_u8: np.ndarray, cfg, val_fraction: float, seed: int,
           captions: list[str] | None = None) -> pa.Table:
    """The curation table (see the module doc) for rows in file_id order with their rendered pixels (and their
    captions, for the series cap)."""
    key, dh = keys(rgb_u8, cfg.hash_size)
    split = [split_of_key(k, seed, val_fraction) for k in key]
    keep = [True] * len(file_ids)
    reason = ["kept"] * len(file_ids)
    is_val = np.array([s == "val" for s in split], dtype=bool)
    if cfg.near_distance >= 0:
        close = near(dh[is_val], dh[~is_val], cfg.near_distance)
        for i, c in zip(np.nonzero(is_val)[0], close):
            if c and cfg.val_near_train == "drop":
                keep[i], reason[i] = False, "val_near_train"
    def cap_groups(group_of: list[str], cap: int, why: str) -> None:
        """Keep the first `cap` kept train rows of each group by (sha256, file_id); drop the rest for `why`."""
        members: dict[str, list[int]] = defaultdict(list)
        for i, g in enumerate(group_of):
            if split[i] == "train" and keep[i]:
                members[g].append(i)
        for rows in members.values():
            for i in sorted(rows, key=lambda i: (sha256s[i], file_ids[i]))[cap:]:
                keep[i], reason[i] = False, why

    if cfg.cap_per_cluster:
        cap_groups(key, cfg.cap_per_cluster, "cluster_cap")
    if cfg.cap_per_caption:
        if captions is None or len(captions) != len(file_ids):
            raise PddError("curate: curate.cap_per_caption needs every row's caption")
        cap_groups(captions, cfg.cap_per_caption, "caption_cap")
    return pa.table({"file_id": pa.array(file_ids, pa.string()), "sha256": pa.array(sha256s, pa.string()),
                     "key": pa.array(key, pa.string()), "dhash": pa.array([d.tobytes().hex() for d in dh], pa.string()),
                     "split": pa.array(split, pa.string()), "keep": pa.array(keep, pa.bool_()),
                     "reason": pa.array(reason, pa.string())})


def counts(table: pa.Table, hash_size: int, near_distance: int) -> dict:
    """What the curation found and did, for metrics/curate.json and the model card."""
    rows = table.to_pylist()
    by_sha = Counter(r["sha256"] for r in rows)
    by_key = Counter(r["key"] for r in rows)
    splits_of_key: dict[str, set] = defaultdict(set)
    for r in rows:
        splits_of_key[r["key"]].add(r["split"])
    kept = [r for r in rows if r["keep"]]
    dh = np.frombuffer(b"".join(bytes.fromhex(r["dhash"]) for r in rows), dtype=np.uint8).reshape(len(rows), -1) if rows else None
    out = {
        "rows": len(rows),
        "byte_identical_groups": sum(1 for v in by_sha.values() if v > 1),
        "byte_identical_rows": sum(v for v in by_sha.values() if v > 1),
        "near_duplicate_clusters": sum(1 for v in by_key.values() if v > 1),
        "near_duplicate_rows": sum(v for v in by_key.values() if v > 1),
        "largest_cluster": max(by_key.values(), default=0),
        "keys_in_both_splits": sum(1 for v in splits_of_key.values() if len(v) > 1),
        "dropped": {reason: sum(1 for r in rows if r["reason"] == reason) for reason in REASONS[1:]},
        "kept": {s: sum(1 for r in kept if r["split"] == s) for s in ("train", "val")},
    }
    if rows:
        tr = np.array([r["split"] == "train" and r["keep"] for r in rows])
        va = np.array([r["split"] == "val" and r["keep"] for r in rows])
        out["kept_val_near_kept_train"] = int(near(dh[va], dh[tr], near_distance).sum()) if near_distance >= 0 else None
        shas = {r["sha256"] for r in rows if r["split"] == "train" and r["keep"]}
        out["kept_val_byte_identical_to_train"] = sum(1 for r in rows if r["split"] == "val" and r["keep"] and r["sha256"] in shas)
    return out


def write(table: pa.Table, out_dir) -> Path:
    out = Path(out_dir) / FILE
    pq.write_table(table, out, compression="zstd", use_dictionary=False, write_statistics=False, store_schema=False)
    return out


def write_summary(counts_: dict, out_dir) -> None:
    (Path(out_dir) / "summary.json").write_text(json.dumps(counts_, indent=2, sort_keys=True) + "\n")


def read_summary(curate_dir) -> dict:
    try:
        return json.loads((Path(curate_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PddError(f"{curate_dir}: no summary.json; build it again (`dvc repro curate`)") from None


def read(curate_dir) -> dict[str, tuple[str, bool]]:
    """file_id -> (split, keep) from a curate stage output."""
    path = Path(curate_dir) / FILE
    if not path.is_file():
        raise PddError(f"{curate_dir}: no {FILE}; build it first (`dvc repro curate`)")
    t = pq.read_table(path, columns=["file_id", "split", "keep"])
    return {f: (s, k) for f, s, k in zip(t.column("file_id").to_pylist(), t.column("split").to_pylist(),
                                         t.column("keep").to_pylist())}
