"""Held out means held out (stage curate, pdd/data/curate.py): the split follows image content, copies never
straddle train and val, a file keeps its split when other files come and go, near-duplicates of train leave val,
and the per-cluster cap curates the training set (and can be turned off)."""
from __future__ import annotations

import types

import numpy as np
import pytest

from pdd.core.errors import PddError
from pdd.data import curate


def cfg(**kw):
    base = dict(resolution=16, hash_size=8, near_distance=4, val_near_train="drop", cap_per_cluster=0,
                cap_per_caption=0)
    return types.SimpleNamespace(**{**base, **kw})


def shapes(n: int, seed: int) -> np.ndarray:
    """n distinct 16 px images: a coloured rectangle at a random place on white."""
    rng = np.random.default_rng(seed)
    out = np.full((n, 16, 16, 3), 255, dtype=np.uint8)
    for i in range(n):
        y, x = rng.integers(0, 10, size=2)
        h, w = rng.integers(3, 7, size=2)
        out[i, y:y + h, x:x + w] = rng.integers(0, 200, size=3)
    return out


def table(images, cfg_, seed=7, ids=None, shas=None):
    n = len(images)
    ids = ids or [f"t:{i:04d}" for i in range(n)]
    shas = shas or [f"{i:064x}" for i in range(n)]
    return {r["file_id"]: r for r in curate.decide(ids, shas, images, cfg_, 0.3, seed).to_pylist()}


def test_byte_identical_images_under_other_names_never_straddle_the_split():
    imgs = shapes(200, 1)
    dup = np.concatenate([imgs, imgs])                      # every image twice, under another id
    rows = table(dup, cfg())
    for i in range(200):
        assert rows[f"t:{i:04d}"]["split"] == rows[f"t:{i + 200:04d}"]["split"]
    splits = [r["split"] for r in rows.values()]
    assert 0.15 < splits.count("val") / len(splits) < 0.45


def test_a_file_keeps_its_split_when_other_files_come_and_go():
    imgs = shapes(300, 2)
    ids = [f"t:{i:04d}" for i in range(300)]
    full = table(imgs, cfg(near_distance=-1), ids=ids)
    part = table(imgs[::3], cfg(near_distance=-1), ids=ids[::3], shas=[f"{i:064x}" for i in range(0, 300, 3)])
    assert all(part[f]["split"] == full[f]["split"] for f in part)
    other_seed = table(imgs, cfg(near_distance=-1), seed=8, ids=ids)
    assert any(other_seed[f]["split"] != full[f]["split"] for f in ids)


def test_a_val_near_duplicate_of_a_train_image_leaves_val_or_is_kept_and_counted():
    imgs = shapes(400, 3)
    rows = table(imgs, cfg(near_distance=-1))
    val = [i for i in range(400) if rows[f"t:{i:04d}"]["split"] == "val"]
    train = [i for i in range(400) if rows[f"t:{i:04d}"]["split"] == "train"]
    # a near copy of a train image (darkened: same difference hashes, another colour code, so another key),
    # picked so that its own key lands in val
    probe = None
    for t in train:
        near = (imgs[t].astype(int) - 40).clip(0, 255).astype(np.uint8)
        k, _ = curate.keys(near[None], 8)
        if k[0] != curate.keys(imgs[t][None], 8)[0][0] and curate.split_of_key(k[0], 7, 0.3) == "val":
            probe = near
            break
    assert probe is not None
    both = np.concatenate([imgs, probe[None]])
    dropped = table(both, cfg())
    assert dropped["t:0400"]["split"] == "val" and not dropped["t:0400"]["keep"]
    assert dropped["t:0400"]["reason"] == "val_near_train"
    kept = table(both, cfg(val_near_train="keep"))
    assert kept["t:0400"]["keep"] and kept["t:0400"]["reason"] == "kept"
    assert len(val) > 50


def test_the_cluster_cap_keeps_the_first_by_sha256_and_zero_keeps_all():
    one = shapes(1, 4)
    series = np.repeat(one, 30, axis=0)                     # 30 copies: one near-duplicate cluster
    imgs = np.concatenate([series, shapes(50, 5)])
    shas = [f"{(7 * i) % 80:064x}" for i in range(80)]
    capped = curate.decide([f"t:{i:04d}" for i in range(80)], shas, imgs, cfg(cap_per_cluster=3), 0.3, 7)
    rows = capped.to_pylist()
    cluster = [r for r in rows[:30]]
    if cluster[0]["split"] == "train":
        kept = [r for r in cluster if r["keep"]]
        assert len(kept) == 3 and sorted(r["sha256"] for r in cluster)[:3] == sorted(r["sha256"] for r in kept)
        assert all(r["reason"] == "cluster_cap" for r in cluster if not r["keep"])
    m = curate.counts(capped, 8, 4)
    assert m["near_duplicate_clusters"] >= 1 and m["largest_cluster"] >= 30 and m["keys_in_both_splits"] == 0
    off = curate.decide([f"t:{i:04d}" for i in range(80)], shas, imgs, cfg(cap_per_cluster=0, near_distance=-1), 0.3, 7)
    assert all(off.column("keep").to_pylist())


def test_the_cap_cannot_pass_a_capped_cluster_unnoticed():
    """The rule can fail: without the cap, the 30 copies are all kept (what the cap test relies on)."""
    series = np.repeat(shapes(1, 6), 30, axis=0)
    rows = curate.decide([f"t:{i:04d}" for i in range(30)], [f"{i:064x}" for i in range(30)], series,
                         cfg(cap_per_cluster=0, near_distance=-1), 0.3, 1).to_pylist()
    assert len({r["split"] for r in rows}) == 1 and all(r["keep"] for r in rows)


def test_a_missing_curation_is_one_clear_line(tmp_path):
    with pytest.raises(PddError, match="dvc repro curate"):
        curate.read(tmp_path)


def test_the_caption_cap_keeps_the_first_by_sha256_of_each_series_in_train_only():
    """A series (one caption on many different pictures) keeps curate.cap_per_caption train images, the first by
    sha256; val rows and other captions are untouched, and 0 keeps all."""
    imgs = shapes(120, 8)                                   # 120 distinct pictures
    ids = [f"t:{i:04d}" for i in range(120)]
    shas = [f"{(13 * i) % 120:064x}" for i in range(120)]
    caps = ["Part of a series, icons"] * 60 + [f"picture {i}" for i in range(60)]
    capped = curate.decide(ids, shas, imgs, cfg(cap_per_caption=5, near_distance=-1), 0.3, 7, caps)
    rows = capped.to_pylist()
    series_train = [r for r in rows[:60] if r["split"] == "train"]
    kept = [r for r in series_train if r["keep"]]
    assert len(series_train) > 5 and len(kept) == 5
    assert sorted(r["sha256"] for r in kept) == sorted(r["sha256"] for r in series_train)[:5]
    assert all(r["reason"] == "caption_cap" for r in series_train if not r["keep"])
    assert all(r["keep"] for r in rows[:60] if r["split"] == "val")
    assert all(r["keep"] for r in rows[60:])
    assert curate.counts(capped, 8, 4)["dropped"]["caption_cap"] == len(series_train) - 5
    off = curate.decide(ids, shas, imgs, cfg(cap_per_caption=0, near_distance=-1), 0.3, 7, caps)
    assert all(off.column("keep").to_pylist())


def test_the_caption_cap_refuses_to_guess_without_captions():
    with pytest.raises(PddError, match="cap_per_caption"):
        curate.decide(["t:0"], ["0" * 64], shapes(1, 9), cfg(cap_per_caption=2), 0.3, 7)
