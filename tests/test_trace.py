"""`pdd trace IMAGE`: on a training image it returns that image first (with its title, creator, licence and
source from the snapshot); on a val image (never trained on) it returns its nearest training images with a
similarity below the copy threshold; --html writes a self-contained page; bad input (not an image, no model,
no export) is one line and exit 2. Real parts: a snapshot of the demo's first rows, the real export, and a
CLIPModel folder (random weights: the test is about the plumbing, not the judge's quality)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO, TINY, update_params
from pdd import cli, snapshot

DEMO = REPO / "data/snapshots/openclipart-0.18.parquet"
ROWS = 200


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("trace"))


def make_world(root: Path):
    """params.yaml (tiny), a snapshot of ROWS demo files, its export and a CLIPModel folder, in ROOT."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from pdd.core import config
    from pdd.data.export import export
    from pdd.source.pin import write_parquet

    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    update_params(root, TINY)
    rows = pq.read_table(DEMO).slice(0, ROWS).to_pylist()
    imgs = {r["sha256"]: r["image"] for r in rows}
    meta = [{k: r[k] for k in snapshot.META_COLUMNS} for r in rows]
    snap = root / "snap.parquet"
    write_parquet(meta, snap, "trace-test", snapshot.content_hash(meta), lambda sha: imgs[sha])
    cfgs = config.load(root / "params.yaml")
    export(snap, root / "export", cfgs["export"], 20261122)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 100, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 4},
        projection_dim=32))
    model.save_pretrained(root / "judge")
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, image_mean=[0.9] * 3,
                       image_std=[0.2] * 3).save_pretrained(root / "judge")
    return root, {r["file_id"]: r for r in rows}


def trace(capsys, root, *argv):
    base = ["trace", "--params", root / "params.yaml", "--export", root / "export", "--snapshot", root / "snap.parquet",
            "--features", root / "judge"]
    rc = cli.main([str(a) for a in base + list(argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def split_ids(root, split):
    from pdd.core import shards

    return shards.read_split(root / "export", split, columns=["file_id"]).column("file_id").to_pylist()


def write_image(row, path: Path) -> Path:
    path.write_bytes(row["image"])
    return path


def test_a_training_image_comes_back_first_with_its_credits(world, tmp_path, capsys):
    root, rows = world
    fid = "openclipart:animals/birds/cigno_di_notte_nella_pa_01"
    assert fid in split_ids(root, "train")
    img = write_image(rows[fid], tmp_path / "query.webp")
    rc, out, _ = trace(capsys, root, img, "--k", "3", "--json")
    assert rc == 0
    rep = json.loads(out)
    for space in ("features", "pixel"):
        first = rep["spaces"][space]["nearest"][0]
        assert first["file_id"] == fid and first["similarity"] == pytest.approx(1.0, abs=1e-4), (space, first)
        assert first["title"] == "Cigno di notte nella palude" and first["creator"] == "Architetto Francesco Rollandin"
        assert first["licence"] == "pd" and "Open Clip Art" in first["source"]
        assert first["val_percentile"] == 100.0   # closer than every val image gets
        assert first["above_copy_threshold"] == (not rep["spaces"][space]["saturated"])
        assert len(rep["spaces"][space]["nearest"]) == 3
    # the text form says the same, with the context
    rc, out, _ = trace(capsys, root, img, "--k", "2")
    assert rc == 0 and fid in out and "Architetto Francesco Rollandin" in out and "% of val" in out
    assert "close is not copied" in out


def test_a_val_image_is_below_the_copy_threshold(world, tmp_path, capsys):
    root, rows = world
    train, val = set(split_ids(root, "train")), split_ids(root, "val")
    seen = []
    for fid in val[:4]:
        rc, out, _ = trace(capsys, root, write_image(rows[fid], tmp_path / "v.webp"), "--k", "4", "--json")
        assert rc == 0
        px = json.loads(out)["spaces"]["pixel"]
        assert all(n["file_id"] in train for n in px["nearest"]) and px["nearest"][0]["similarity"] < 1.0
        sims = [n["similarity"] for n in px["nearest"]]
        assert sims == sorted(sims, reverse=True)
        seen.append((px["nearest"][0]["val_percentile"], px["nearest"][0]["above_copy_threshold"]))
    # a val image is one of the calibration set: at most the top 1 % of them are above the threshold
    assert sum(above for _, above in seen) <= 1 and any(p < 99 and not above for p, above in seen), seen


def test_html_page_has_the_thumbnails_side_by_side(world, tmp_path, capsys):
    root, rows = world
    fid = split_ids(root, "train")[5]
    page = tmp_path / "trace.html"
    rc, _, err = trace(capsys, root, write_image(rows[fid], tmp_path / "q.webp"), "--k", "4", "--html", page)
    assert rc == 0 and f"wrote {page}" in err
    text = page.read_text()
    assert text.count("<figure>") == 8 and text.count("data:image/") == 9   # 2 spaces x 4, and the query
    assert "<script" not in text and "Close is not copied" in text


def test_bad_input_is_one_line(world, tmp_path, capsys):
    root, rows = world
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    img = write_image(rows[split_ids(root, "train")[0]], tmp_path / "q.webp")
    cases = [
        ((notes,), "not an image pdd can read"),
        ((tmp_path / "nope.png",), "cannot read it"),
        ((tmp_path,), "a folder, not an image file"),
    ]
    for argv, words in cases:
        rc, out, err = trace(capsys, root, *argv)
        assert rc == 2 and out == "" and err.count("\n") == 1 and words in err, (argv, err)
    rc = cli.main(["trace", str(img), "--params", str(root / "params.yaml"), "--export", str(root / "export"),
                   "--snapshot", str(root / "snap.parquet"), "--features", str(tmp_path / "no-judge")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no model there" in err and "models/clip" in err
    rc = cli.main(["trace", str(img), "--params", str(root / "params.yaml"), "--export", str(tmp_path / "no-export"),
                   "--snapshot", str(root / "snap.parquet"), "--features", str(root / "judge")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no export there" in err
