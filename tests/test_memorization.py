"""The memorization check separates copies from look-alikes. Forced copy: a model trained on a snapshot whose
every training image is one picture (the val images are others, so the calibration is not saturated) copies
it, and the stage flags every sample; a look-alike (the same image mirrored: same colours, same gist, other
pixels), close in the feature space, is not flagged; when val itself is made of copies of train, every space is
saturated and the stage flags nothing and says so. Its numbers are consistent with its per-sample table; the
model card carries the summary."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from conftest import TINY, deep_update, make_copy, sh
from pdd import snapshot
from pdd.train import memorization

DEMO = Path(__file__).resolve().parents[1] / "data/snapshots/openclipart-0.18.parquet"


def content_splits(rows: list[dict], params: dict) -> list[str]:
    """The split stage curate gives each row (a seeded hash of its image's perceptual key)."""
    import numpy as np

    from pdd.data import curate
    from pdd.data.export import render_row

    ex, cu = params["export"], params["curate"]
    res = cu["resolution"]
    px = np.stack([np.frombuffer(render_row(r, [res], ex["resample"], ex["fit"], ex["background"])[f"image_{res}"],
                                 dtype=np.uint8).reshape(res, res, 3) for r in rows])
    keys, _ = curate.keys(px, cu["hash_size"])
    return [curate.split_of_key(k, params["seed"], ex["val_fraction"]) for k in keys]


def forced_copy_snapshot(root: Path, name: str = "copy-one-120", rows: int = 120) -> str:
    """A valid snapshot (passes the audit) of the demo's first ROWS files, where every *training* row carries
    one image ("blue dragonfly": a square, dark, full-frame drawing; most clip art is a small shape on
    white, where even a perfect copy says little in a 16 px correlation); val rows keep their own images. The
    split is stage curate's (by content): rows whose own image goes to val keep it, the others carry the copy,
    whose own key goes to train."""
    import yaml

    from pdd.source.pin import write_parquet

    params = yaml.safe_load((root / "params.yaml").read_text())
    table = pq.read_table(DEMO)
    # "blue dragonfly" (a square, dark, full-frame drawing), chosen by id: most clip art is a small shape on white,
    # where even a perfect copy says little in a 16 px pixel correlation
    ids = table.column("file_id").to_pylist()
    first = table.slice(ids.index("openclipart:animals/bugs/blue_dragonfly_ghuul_ghu_01"), 1).to_pylist()[0]
    full = table.slice(0, rows).to_pylist()
    assert content_splits([first], params) == ["train"]
    images = {r["sha256"]: r["image"] for r in full}
    images[first["sha256"]] = first["image"]
    meta = [{k: r[k] for k in snapshot.META_COLUMNS} for r in full]
    n_val = 0
    for r, split in zip(meta, content_splits(full, params)):
        n_val += split == "val"
        if split != "val":
            r.update({k: first[k] for k in ("sha256", "size", "mime", "width", "height")})
    assert n_val >= 3, n_val
    path = root / f"data/snapshots/{name}.parquet"
    write_parquet(meta, path, name, snapshot.content_hash(meta), lambda sha: images[sha])
    return path.relative_to(root).as_posix()


COPY_PARAMS = {"unet": {"mode": "pixel-unconditional", "in_channels": 3, "attention": [False, False],
                        "train": {"steps": 200, "eval_every": 100, "checkpoint_every": 100}},
               "sample": {"steps": 10},
               "curate": {"cap_per_cluster": 0},   # keep every copy: the model must see nothing else
               "memorization": {"n_samples": 6, "pixel_size": 8, "show": 3}}


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    base = tmp_path_factory.mktemp("mem")
    root = make_copy(base / "repo", deep_update(copy.deepcopy(TINY), copy.deepcopy(COPY_PARAMS)))
    rel = forced_copy_snapshot(root)
    from conftest import update_params

    update_params(root, {"snapshot": {"name": "copy-one-120", "path": rel}})
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "one training image repeated"], root)
    sh(["dvc", "repro", "pipeline"], root, timeout=1800)
    return root


def test_a_model_trained_to_copy_one_image_is_flagged(copied):
    m = json.loads((copied / "metrics/memorization.json").read_text())
    assert m["n_samples"] == 6 and m["n_train"] > 30 and m["n_val"] >= 3
    # the model had nothing but the one image to learn: its samples are that image, in pixels too
    assert m["pixel"]["samples"]["min"] > 0.9, m["pixel"]
    # val (other images) calibrates a pixel threshold well below the copies
    assert not m["pixel"]["saturated"] and "pixel" in m["flag_spaces"] and m["can_separate"]
    assert m["pixel"]["threshold"] < m["pixel"]["samples"]["min"]
    assert m["flagged"] == 6 and m["rate_percent"] == 100.0, m
    assert m["anchor"]["rate_percent"] == 1.88
    assert (copied / "metrics/memorization_pairs.png").stat().st_size > 0
    card = (copied / "models/pipeline/README.md").read_text()
    assert "## Memorization check" in card and "**6 of 6 samples flagged**" in card and "1.88 %" in card
    assert json.loads((copied / "models/pipeline/provenance.json").read_text())["memorization"]["flagged"] == 6
    # every training image is listed in ATTRIBUTION.tsv; pd/cc0 captions only: no caption credit
    lines = (copied / "models/pipeline/ATTRIBUTION.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["file_id", "title", "creator", "source", "location", "licence", "licence_uri",
                                    "snapshot_sha256", "caption_credit"]
    assert len(lines) - 1 == m["n_train"] and all(line.endswith("\t") for line in lines[1:])


def test_memorization_numbers_are_consistent(copied):
    m = json.loads((copied / "metrics/memorization.json").read_text())
    with open(copied / "models/memorization/neighbours.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == m["n_samples"] == m["clip"]["samples"]["n"]
    def above(r, space):
        return float(r[f"{space}_similarity"]) > m[space]["threshold"]
    flagged = [r for r in rows if all(above(r, s) for s in m["flag_spaces"])]
    assert m["flagged"] == len(flagged) == sum(int(r["flagged"]) for r in rows) == len(m["flagged_samples"])
    for space in ("clip", "pixel", "phash"):
        assert m[space]["samples_above_threshold"] == sum(above(r, space) for r in rows)
    sims = sorted(float(r["clip_similarity"]) for r in rows)
    assert m["clip"]["samples"]["min"] == pytest.approx(sims[0], abs=1e-6)
    assert m["clip"]["samples"]["max"] == pytest.approx(sims[-1], abs=1e-6)
    for space in ("clip", "pixel", "phash"):
        for who in ("samples", "val"):
            d = m[space][who]
            assert d["min"] <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"]
    assert m["clip"]["val"]["n"] == m["n_val"]
    assert len(m["shown"]) == 3 and all((copied / "models/memorization" / s).is_file() for s in m["shown"])


def test_stage_runs_again_to_the_same_bytes(copied, tmp_path):
    import shutil

    from pdd.core.hashing import hash_path

    before = (hash_path(copied / "models/memorization"), hash_path(copied / "metrics/memorization.json"))
    repo = tmp_path / "r"
    shutil.copytree(copied, repo, symlinks=True)
    shutil.rmtree(repo / "models/memorization")
    sh(["python", "-m", "stages.memorization"], repo)
    assert (hash_path(repo / "models/memorization"), hash_path(repo / "metrics/memorization.json")) == before


# ---- the library, without a build ---------------------------------------------------------------
def demo_images(n: int, size: int = 16) -> torch.Tensor:
    """The demo snapshot's first N images, flattened on white, at SIZE px (uint8 [N,S,S,3])."""
    import io

    import numpy as np
    from PIL import Image

    out = []
    for r in pq.read_table(DEMO, columns=["image"]).slice(0, n).to_pylist():
        im = Image.open(io.BytesIO(r["image"])).convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im).convert("RGB").resize((size, size), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(im).copy()))
    return torch.stack(out)


def colour_histogram(x: torch.Tensor) -> torch.Tensor:
    """A stand-in feature space that sees the gist (colours), not the layout: unit 4x4x4 colour histograms."""
    q = (x.long() // 64).reshape(len(x), -1, 3)
    idx = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    h = torch.zeros(len(x), 64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
    return h / h.norm(dim=1, keepdim=True)


def test_a_copy_is_flagged_and_a_look_alike_is_not():
    """Real clip art: 300 train, 200 val. Samples: a training image with a little noise (what a copying model
    draws) and the same image mirrored (a look-alike: the same colours and gist, other pixels)."""
    images = demo_images(500)
    train, val = images[:300], images[300:]
    x = train.float()
    # the training image least like its own mirror (and not mostly white): its mirror is a look-alike, no copy
    flat = train.reshape(300, -1).float()
    mirror_corr = torch.nn.functional.cosine_similarity(flat - flat.mean(1, keepdim=True),
                                                        train.flip(2).reshape(300, -1).float()
                                                        - flat.mean(1, keepdim=True), dim=1)
    k = int(torch.where(flat.mean(1) < 200, mirror_corr, torch.tensor(2.0)).argmin())
    g = torch.Generator().manual_seed(0)
    copy_ = (x[k] + torch.randn(x[k].shape, generator=g) * 3).round().clamp(0, 255).to(torch.uint8)
    look_alike = train[k].flip(1)
    samples = torch.stack([copy_, look_alike])
    found = memorization.analyse(samples, train, val, clip_embed=colour_histogram, pixel_size=8)
    rep, per = found.report, found.per_sample
    assert rep["can_separate"] and "pixel" in rep["flag_spaces"], rep
    assert per.flagged.tolist() == [True, False], (rep, per)
    assert per.pixel_idx[0] == k and per.clip_idx[1] == k  # the look-alike's nearest in the feature space is the image
    # in the feature space the look-alike is as close as the copy: a fixed CLIP-only threshold (the old 0.95
    # rule) flags both; the calibrated rule needs the pixels too
    assert float(per.clip[1]) >= 0.95 and float(per.clip[0]) >= 0.95
    assert rep["clip_only"] == 1   # counted as a look-alike
    assert rep["rate_percent"] == 50.0 and rep["anchor"]["rate_percent"] == 1.88


def test_saturated_spaces_flag_nothing():
    """When val images are copies of training images (near-duplicate series), p99 of val is 1: nothing can be
    told apart, nothing is flagged, and the report says so."""
    images = demo_images(60)
    train = images[:50]
    val = torch.cat([train[:20], images[50:52]])
    samples = train[[3, 7]]
    found = memorization.analyse(samples, train, val, clip_embed=lambda t: memorization.pixel_features(t, 8),
                                 pixel_size=8)
    rep = found.report
    assert rep["clip"]["saturated"] and rep["pixel"]["saturated"] and rep["phash"]["saturated"]
    assert rep["flag_spaces"] == [] and not rep["can_separate"] and rep["flagged"] == 0
    assert "cannot separate" in memorization.summary(rep)


def test_phash_is_one_for_the_same_image_and_counts_bits():
    images = demo_images(4)
    f = memorization.phash_features(images)
    assert f.shape == (4, 64)
    same = memorization.hash_similarity(f @ f.T).diagonal()
    assert torch.allclose(same, torch.ones(4))
    bits = (f > 0)
    ham = (bits[0] != bits[1]).sum().item()
    assert memorization.hash_similarity(f[0] @ f[1]).item() == pytest.approx(1 - ham / 64, abs=1e-6)


def test_calibration_params_are_checked(tmp_path):
    from pdd.core import config
    from pdd.core.errors import PddError

    ok = config.load(Path(__file__).parents[1] / "params.yaml", {"memorization": {"percentile": 95, "hash_size": 16}})
    assert (ok["memorization"].percentile, ok["memorization"].hash_size) == (95, 16)
    for bad in ({"percentile": 150}, {"saturated_above": 1.5}, {"hash_size": 2}):
        with pytest.raises(PddError, match="memorization"):
            config.load(Path(__file__).parents[1] / "params.yaml", {"memorization": bad})
