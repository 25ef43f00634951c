"""A small, real, pinned snapshot made at test time, for tests that need "a pinned snapshot" but not the
committed demo: seeded generated PNGs (coloured shapes on coloured grounds, assorted sizes, most of them
not square) plus metadata CSVs, imported with the project's folder importer into a fresh DuckDB store and
pinned with pdd.source.pin. The same code and library versions give the same bytes every time.

The data, fixed by SEED (the tests assert exact numbers derived from it):
- source ``mus``: images 0..47, labels (title, creator, date) under CC0; file licence "Public Domain"
  (kind pd) for every fifth image, "CC0 1.0" (cc0) otherwise; ids are ``mus:0000``..``mus:0047``;
- source ``web``: images 48..59, the same kind of labels but under CC BY-SA (so captions may not use
  them); ids ``web:0048``..``web:0059``;
- REJECTED: rows whose licence is not public domain / CC0 (CC BY-SA, empty, copyrighted) and a row
  whose file is missing; they are in the store but not in the snapshot.
Accepted: 57 rows: 45 cc0 and 12 pd (see COUNTS).
"""
from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SEED = 20261129
N_IMAGES = 60
NAME = "generated-57"
SOURCES = {"mus": (range(0, 48), "cc0"), "web": (range(48, 60), "cc-by-sa")}  # source: (images, label licence)
REJECTED = {7: "CC BY-SA 4.0", 21: "", 52: "© 2024 All rights reserved"}   # image -> file licence
MISSING = "mus:0099"                                                       # a CSV row without its file
COUNTS = {"rows": 57, "licences": {"cc0": 45, "pd": 12}, "sources": {"mus": 46, "web": 11},
          "store": {"accepted": 57, "rejected": 4}}

COLOURS = [("red", (200, 30, 40)), ("green", (40, 160, 60)), ("blue", (40, 70, 200)), ("yellow", (230, 210, 40)),
           ("black", (15, 15, 15)), ("white", (245, 245, 245)), ("orange", (240, 140, 20)), ("purple", (130, 40, 160))]
SHAPES = ["circle", "square", "triangle", "cross", "stripes"]
SIZES = [(32, 32), (48, 32), (32, 48), (64, 40), (40, 64), (56, 56), (72, 48), (48, 72)]
CREATORS = ["Anna Test", "B. Fixture", "Studio Seed", "Unknown maker"]


@dataclass(frozen=True)
class GeneratedSnapshot:
    path: Path          # the pinned Parquet file
    info: dict          # what pin.pin returned (name, content_hash, n_rows, ...)
    db: Path            # the store it was pinned from
    folder: Path        # the generated images and CSVs
    meta: dict          # file_id -> {"title", "creator", "date", "license", "source", "label_licence"}


def licence_of(i: int) -> str:
    if i in REJECTED:
        return REJECTED[i]
    return "Public Domain" if i % 5 == 0 else "CC0 1.0"


def draw(i: int, rng: random.Random) -> tuple[Image.Image, str]:
    (bg_name, bg), (fg_name, fg) = rng.sample(COLOURS, 2)
    shape = SHAPES[i % len(SHAPES)]
    w, h = SIZES[rng.randrange(len(SIZES))]
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    x0, y0 = rng.randrange(0, w // 3), rng.randrange(0, h // 3)
    x1, y1 = rng.randrange(2 * w // 3, w), rng.randrange(2 * h // 3, h)
    if shape == "circle":
        d.ellipse((x0, y0, x1, y1), fill=fg)
    elif shape == "square":
        d.rectangle((x0, y0, x1, y1), fill=fg)
    elif shape == "triangle":
        d.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=fg)
    elif shape == "cross":
        d.line((x0, y0, x1, y1), fill=fg, width=max(2, w // 8))
        d.line((x0, y1, x1, y0), fill=fg, width=max(2, w // 8))
    else:
        for x in range(0, w, 8):
            d.rectangle((x, 0, x + 3, h), fill=fg)
    # a little seeded noise so no two images share bytes and the shards are not trivially compressible
    for _ in range(w * h // 16):
        img.putpixel((rng.randrange(w), rng.randrange(h)), tuple(rng.randrange(256) for _ in range(3)))
    # "plus sign", not "cross": a red cross on white is the protected Red Cross emblem, which the rights screen
    # rejects (pdd/rights/screen.py PROTECTED)
    return img, f"{fg_name.capitalize()} {'plus sign' if shape == 'cross' else shape} on {bg_name}"


def write_folder(folder: Path) -> dict:
    """The images and one metadata CSV per source; returns file_id -> metadata."""
    rng = random.Random(SEED)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    meta = {}
    for source, (images, label_licence) in SOURCES.items():
        rows = []
        for i in images:
            img, title = draw(i, rng)
            img.save(folder / "img" / f"{i:04d}.png", format="PNG")
            row = {"file": f"img/{i:04d}.png", "id": f"{i:04d}", "title": f"{title} no. {i}",
                   "creator": CREATORS[i % len(CREATORS)], "date": str(1900 + 3 * i), "license": licence_of(i)}
            rows.append(row)
            meta[f"{source}:{row['id']}"] = {**row, "source": source, "label_licence": label_licence}
        if source == "mus":
            rows.append({"file": "img/0099.png", "id": "0099", "title": "Missing file", "creator": CREATORS[0],
                         "date": "1999", "license": "CC0 1.0"})
        with open(folder / f"{source}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return meta


def build(base: Path) -> GeneratedSnapshot:
    """Generate, import and pin under BASE; returns where everything is."""
    from pdd import snapshot
    from pdd.source import pin
    from pdd.source.importers import import_folder
    from pdd.source.store import Store

    folder, db, out = base / "folder", base / "generated.duckdb", base / "snapshots"
    meta = write_folder(folder)
    accepted = rejected = 0
    with Store(db) as store:
        for source, (_images, label_licence) in SOURCES.items():
            report = import_folder(store, folder, folder / f"{source}.csv", source_id=source, id_column="id",
                                   label_licence=label_licence)
            accepted, rejected = accepted + report.accepted, rejected + report.rejected
        info = pin.pin(store, NAME, out)
    path = out / f"{NAME}.parquet"
    kinds = Counter(r["licence_kind"] for r in snapshot.read_rows(path))
    if {"accepted": accepted, "rejected": rejected} != COUNTS["store"] or info["n_rows"] != COUNTS["rows"] \
            or kinds != COUNTS["licences"]:
        raise AssertionError(f"generated snapshot is not what snapshot_factory promises: {accepted} accepted, "
                             f"{rejected} rejected, {info['n_rows']} rows, licences {dict(kinds)}")
    return GeneratedSnapshot(path=path, info=info, db=db, folder=folder, meta=meta)
