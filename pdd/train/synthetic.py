"""A small captioned shapes-and-colours set in the export shard format, for tests and benches.

Each image is one coloured shape (circle, square, triangle) in one quadrant of a dark,
noisy background, captioned e.g. "a red circle at the top left". Train rows are drawn at
random (size and position jittered); val holds every (colour, shape, place) combination
once, so val captions are unique and recall@1 has a chance level of 1/len(val).
Pure function of its arguments: the same call writes byte-identical shards.

    python -m pdd.train.synthetic OUT_DIR [--train N] [--resolution R ...]
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from pdd.core import shards
from pdd.core.determinism import derive_seed

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40),
           "magenta": (210, 50, 210), "cyan": (40, 210, 220)}
SHAPES = ("circle", "square", "triangle")
PLACES = {"top left": (0.27, 0.27), "top right": (0.27, 0.73), "bottom left": (0.73, 0.27), "bottom right": (0.73, 0.73)}


def draw(resolution: int, colour: str, shape: str, place: str, rng: np.random.Generator, jitter: bool) -> np.ndarray:
    r = resolution
    img = rng.integers(0, 40, size=(r, r, 3)).astype(np.int32)           # dark noisy background
    cy, cx = PLACES[place]
    size = 0.19 * (rng.uniform(0.85, 1.15) if jitter else 1.0)
    if jitter:
        cy, cx = cy + rng.uniform(-0.05, 0.05), cx + rng.uniform(-0.05, 0.05)
    yy, xx = (np.mgrid[0:r, 0:r] + 0.5) / r
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        mask = dy * dy + dx * dx <= size * size
    elif shape == "square":
        mask = (np.abs(dy) <= size * 0.85) & (np.abs(dx) <= size * 0.85)
    else:  # triangle, apex up
        mask = (dy <= size) & (dy >= -size) & (np.abs(dx) <= (dy + size) / 2)
    img[mask] = np.array(COLOURS[colour]) + rng.integers(-20, 21, size=(int(mask.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def caption(colour: str, shape: str, place: str) -> str:
    return f"a {colour} {shape} at the {place}"


def combos() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, SHAPES, PLACES))


def iter_rows(split: str, n: int, resolutions: list[int], seed: int):
    """The rows one by one, in file_id order (the index is zero-padded to one width), so an export of any
    size is written without holding it in memory."""
    rng = np.random.default_rng(derive_seed(seed, "synthetic", split))
    all_combos = combos()
    width = max(6, len(str(n - 1)))
    for i in range(n):
        if split == "val":
            colour, shape, place = all_combos[i % len(all_combos)]
        else:
            colour, shape, place = all_combos[int(rng.integers(len(all_combos)))]
        state = rng.bit_generator.state
        row = {"file_id": f"synthetic:{split}:{i:0{width}d}", "caption": caption(colour, shape, place)}
        for res in resolutions:
            rng.bit_generator.state = state                               # same picture at every resolution
            row[shards.image_column(res)] = draw(res, colour, shape, place, rng, jitter=split == "train").tobytes()
        row["sha256"] = f"{derive_seed(seed, row['file_id']):064x}"
        yield row


def make_rows(split: str, n: int, resolutions: list[int], seed: int) -> list[dict]:
    return list(iter_rows(split, n, resolutions, seed))


def make_synthetic(out_dir: str | Path, *, n_train: int = 1024, n_val: int | None = None, resolutions=(16,),
                   seed: int = 0, caption_fn=None) -> dict:
    """Write a synthetic export (index.json + shards) into out_dir; returns the index.
    caption_fn(row) may rewrite captions (tests use it for bad input)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolutions = sorted(resolutions)
    n_val = len(combos()) if n_val is None else n_val
    index = {"format": shards.FORMAT, "resolutions": resolutions, "layout": shards.LAYOUT,
             "caption_template": "synthetic shapes", "counts": {}, "shards": {}}
    for split, n in (("train", n_train), ("val", n_val)):
        rows = iter_rows(split, n, resolutions, seed)
        if caption_fn:
            rows = ({**r, "caption": caption_fn(r)} for r in rows)
        index["shards"][split] = shards.write_split(rows, out_dir, split, resolutions, 4096)
        index["counts"][split] = n
    shards.write_index(out_dir, index)
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdd.train.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=1024)
    p.add_argument("--val", type=int, default=None)
    p.add_argument("--resolution", type=int, action="append")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    index = make_synthetic(a.out_dir, n_train=a.train, n_val=a.val, resolutions=a.resolution or [16], seed=a.seed)
    print(f"synthetic: {index['counts']} rows at {index['resolutions']} px -> {a.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
