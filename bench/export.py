#!/usr/bin/env python3
"""Export throughput beside a bare Pillow decode+resize loop over the same images, same threads.

    python bench/export.py [--snapshot data/snapshots/openclipart-0.18.parquet] [--resolution 64] [--threads 2]
                           [--repeat 5] [--originals FOLDER [--metadata CSV]]

Measured on the committed demo snapshot by default (Open Clip Art 0.18: 6,790 lossless WebP images
at 64 px, the worst case: per-image decoding is so cheap that reading and writing weigh most), with
the export settings of params.yaml (fit, background, resample, captions) at --resolution. With
--originals, also on a snapshot of that folder (import-folder layout: images plus a metadata CSV
with file and license columns), imported and pinned in a temp dir: larger originals show the
decode-bound case. Nothing of that folder is written into the repository.

Both sides start from the snapshot's image bytes already in memory... except that the stage also
reads the snapshot, builds captions, splits and writes zstd Parquet shards: that overhead is the
point of the ratio (goal >= 0.9). Best of --repeat runs, measured alternately in one process.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageOps  # noqa: E402

from pdd import snapshot  # noqa: E402
from pdd.core import config  # noqa: E402
from pdd.data import export  # noqa: E402
from pdd.core.images import RESAMPLE  # noqa: E402
from pdd.source import pin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data/snapshots/openclipart-0.18.parquet"


def bare_loop(blobs: list[bytes], cfg) -> None:
    res, method = cfg.resolutions[0], RESAMPLE[cfg.resample]

    def one(data: bytes) -> bytes:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if cfg.fit == "pad":
            return ImageOps.pad(img, (res, res), method=method, color=tuple(cfg.background)).tobytes()
        return ImageOps.fit(img, (res, res), method=method).tobytes()
    with ThreadPoolExecutor(max_workers=cfg.threads) as pool:
        list(pool.map(one, blobs))


def measure(snap: str, res: int, threads: int, repeat: int) -> None:
    blobs = snapshot.read_table(snap, ["image"]).column("image").to_pylist()
    n = len(blobs)
    cfg = config.replace(config.load(REPO / "params.yaml")["export"], resolutions=(res,), threads=threads)
    best_stage = best_bare = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            t = time.perf_counter()
            bare_loop(blobs, cfg)
            best_bare = min(best_bare, time.perf_counter() - t)
            t = time.perf_counter()
            export.export(snap, Path(tmp, f"run{i}"), cfg, seed=0)
            best_stage = min(best_stage, time.perf_counter() - t)
    stage_ips, bare_ips = n / best_stage, n / best_bare
    print(f"export bench: {snap}: {n} images -> {res}px ({cfg.fit}), {threads} threads, best of {repeat}")
    print(f"  {'export stage':24s} {stage_ips:9.1f} images/s")
    print(f"  {'bare Pillow loop':24s} {bare_ips:9.1f} images/s")
    print(f"  ratio stage/bare = {stage_ips / bare_ips:.3f}  (goal >= 0.9)")


def pin_originals(folder: Path, metadata: Path, tmp: str) -> str:
    from pdd.source.importers import import_folder
    from pdd.source.store import Store

    with Store(Path(tmp, "bench.duckdb")) as store:
        import_folder(store, folder, metadata, label_licence="cc0")
        pin.pin(store, "originals", tmp)
    return str(Path(tmp, "originals.parquet"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshot", default=str(DEMO.relative_to(Path.cwd()) if DEMO.is_relative_to(Path.cwd()) else DEMO))
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--originals", type=Path, help="optional: a folder of images to pin and measure too")
    ap.add_argument("--metadata", type=Path, help="its CSV (file, license, title, ...; default FOLDER/metadata.csv)")
    args = ap.parse_args()
    if args.originals and not (args.metadata or args.originals / "metadata.csv").is_file():
        ap.error(f"{args.metadata or args.originals / 'metadata.csv'}: no metadata CSV for --originals")
    measure(args.snapshot, args.resolution, args.threads, args.repeat)
    if args.originals:
        with tempfile.TemporaryDirectory() as tmp:
            measure(pin_originals(args.originals, args.metadata or args.originals / "metadata.csv", tmp),
                    args.resolution, args.threads, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
