"""The memorization check: a model trained on one image repeated must copy it, and the stage must flag the
copies; its numbers are consistent with its per-sample table; the model card carries the summary."""
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


def repeated_snapshot(root: Path, name: str = "one-image-80", rows: int = 80) -> str:
    """A valid snapshot (passes the audit) of the demo's first ROWS files, every one with the first file's image
    (80 rows: 3 of them fall in val with the default seed, and the stages need a val split)."""
    from pdd.source.pin import write_parquet

    table = pq.read_table(DEMO)
    # "cigno di notte" (a square, dark, full-frame drawing), chosen by id: most clip art is a small shape on white,
    # where even a perfect copy says little in a 16 px pixel correlation
    ids = table.column("file_id").to_pylist()
    first = table.slice(ids.index("openclipart:animals/birds/cigno_di_notte_nella_pa_01"), 1).to_pylist()[0]
    meta = [{k: r[k] for k in snapshot.META_COLUMNS} for r in table.slice(0, rows).to_pylist()]
    for r in meta:
        r.update({k: first[k] for k in ("sha256", "size", "mime", "width", "height")})
    path = root / f"data/snapshots/{name}.parquet"
    write_parquet(meta, path, name, snapshot.content_hash(meta), lambda sha: first["image"])
    return path.relative_to(root).as_posix()


COPY_PARAMS = {"unet": {"mode": "pixel-unconditional", "in_channels": 3, "attention": [False, False],
                        "train": {"steps": 200, "eval_every": 100, "checkpoint_every": 100}},
               "sample": {"steps": 10, "quality": {"n_samples": 2}},
               "memorization": {"n_samples": 6, "threshold": 0.95, "pixel_size": 8, "show": 3}}


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    base = tmp_path_factory.mktemp("mem")
    root = make_copy(base / "repo", deep_update(copy.deepcopy(TINY), copy.deepcopy(COPY_PARAMS)))
    rel = repeated_snapshot(root)
    from conftest import update_params

    update_params(root, {"snapshot": {"name": "one-image-80", "path": rel}})
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "one image repeated"], root)
    sh(["dvc", "repro", "pipeline"], root, timeout=1800)
    return root


def test_one_image_repeated_is_flagged(copied):
    m = json.loads((copied / "metrics/memorization.json").read_text())
    assert m["n_samples"] == 6 and m["n_train"] > 30 and m["n_val"] >= 1
    # the model had nothing but the one image to learn: its samples are that image, in pixels too
    assert m["pixel"]["samples"]["min"] > 0.9, m["pixel"]
    assert m["flagged"] == 6, m
    assert (copied / "metrics/memorization_pairs.png").stat().st_size > 0
    card = (copied / "models/pipeline/README.md").read_text()
    assert "## Memorization check" in card and "**6 of 6 samples flagged**" in card
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
    above = [r for r in rows if float(r["clip_similarity"]) >= m["threshold"]]
    assert m["flagged"] == len(above) == sum(int(r["flagged"]) for r in rows) == len(m["flagged_samples"])
    assert m["clip"]["samples_at_or_above_threshold"] == m["flagged"]
    sims = sorted(float(r["clip_similarity"]) for r in rows)
    assert m["clip"]["samples"]["min"] == pytest.approx(sims[0], abs=1e-6)
    assert m["clip"]["samples"]["max"] == pytest.approx(sims[-1], abs=1e-6)
    for space in ("clip", "pixel"):
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
def test_analyse_flags_exact_copies_only():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (20, 16, 16, 3), generator=g, dtype=torch.uint8)
    val = torch.randint(0, 256, (5, 16, 16, 3), generator=g, dtype=torch.uint8)
    fresh = torch.randint(0, 256, (3, 16, 16, 3), generator=g, dtype=torch.uint8)
    samples = torch.cat([train[[4, 9]], fresh])

    def embed(x):   # a stand-in embedding: the pixels at 8 px
        return memorization.pixel_features(x, 8)

    found = memorization.analyse(samples, train, val, clip_embed=embed, threshold=0.99, pixel_size=4)
    rep, per = found.report, found.per_sample
    assert "_per_sample" not in rep and not any(k.startswith("_") for k in rep)
    assert per.flagged.tolist() == [True, True, False, False, False]
    assert per.clip_idx[:2].tolist() == [4, 9] and per.pixel_idx[:2].tolist() == [4, 9]
    assert rep["flagged"] == 2 and rep["clip"]["val_at_or_above_threshold"] == 0
    assert rep["clip"]["samples_above_val_max"] >= 2   # the copies at least
    assert memorization.shown_order(per.clip, per.flagged, 3)[:2] in ([0, 1], [1, 0])


def test_threshold_param_is_checked(tmp_path):
    from pdd.core import config
    from pdd.core.errors import PddError

    with pytest.raises(PddError, match="memorization"):
        config.load(Path(__file__).parents[1] / "params.yaml", {"memorization": {"threshold": 1.5}})
