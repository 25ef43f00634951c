"""Personal data never becomes training text or card text, every training image is attributed, and the model
card is a valid Hub card. Real export of a re-pinned slice of the demo snapshot, real card, real
`datasets.load_dataset` of ATTRIBUTION.tsv and `huggingface_hub.ModelCard.load` of README.md."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO
from pdd import card, snapshot
from pdd.core import config, pii, shards
from pdd.core import params as params_mod
from pdd.data import export, personal

DEMO = REPO / "data/snapshots/openclipart-0.18.parquet"
MAIL, PHONE, URL = "jane.doe@example.org", "+39 055 123 4567", "http://www.jane-doe.example.com/art"


def edited_snapshot(tmp_path, rows=30) -> tuple[Path, dict]:
    """The demo's first ROWS files re-pinned, with personal data in every row's title and a Perl placeholder
    creator in every third row."""
    from pdd.source.pin import write_parquet

    table = pq.read_table(DEMO).slice(0, rows).to_pylist()
    images = {r["sha256"]: r["image"] for r in table}
    meta = [{k: r[k] for k in snapshot.META_COLUMNS} for r in table]
    for i, m in enumerate(meta):
        labels = json.loads(m["labels"])
        for lb in labels:
            if lb["field"] == "title":
                lb["text"] = f"{lb['text']} (mail {MAIL}, tel {PHONE}, see {URL})"
            if lb["field"] == "creator" and i % 3 == 1:
                lb["text"] = "HASH(0x8a0cf9c)"
        m["labels"] = json.dumps(sorted(labels, key=lambda lb: json.dumps(lb, sort_keys=True)), sort_keys=True,
                                 separators=(",", ":"))
        m["title"] = f"{m['title']} {MAIL}"
    path = tmp_path / "personal.parquet"
    write_parquet(meta, path, "personal", snapshot.content_hash(meta), images.__getitem__)
    return path, {m["file_id"]: m for m in meta}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("personal")
    snap, meta = edited_snapshot(tmp_path)
    params = params_mod.load(REPO / "params.yaml")
    params["export"]["resolutions"] = [16]
    params["export"]["val_fraction"] = 0.3
    export.export(snap, tmp_path / "export", config.section(params, "export"), seed=params["seed"])
    out = tmp_path / "pipeline"
    out.mkdir()
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"\x89PNG\r\n\x1a\n")   # copied as it is
    deps = {"snapshot": snap, "export": tmp_path / "export", "exclusions": REPO / "data/exclusions.tsv",
            "sample_metrics": tmp_path / "none.json", "memorization": tmp_path / "none.json", "sample_grid": grid}
    card.write(out, copy.deepcopy(params), deps, "StableDiffusionPipeline")
    return snap, meta, tmp_path / "export", out, params


def test_captions_carry_no_email_phone_or_url_and_the_removal_is_counted(built):
    snap, meta, export_dir, _, params = built
    captions = []
    for split in shards.SPLITS:
        captions += shards.read_split(export_dir, split, columns=["caption"]).column("caption").to_pylist()
    assert len(captions) == len(meta)   # every row stays
    for cap in captions:
        assert "@" not in cap and "055" not in cap and "http" not in cap and "example" not in cap, cap
    cfg = params["export"]["caption"]
    rows = snapshot.read_rows(snap)
    assert personal.removals(rows, cfg["label_licences"], cfg["template"]) == \
        {"rows": len(meta), "email": len(meta), "phone": len(meta), "url": len(meta)}


def test_every_training_image_is_attributed_and_datasets_reads_the_file(built):
    import datasets

    snap, meta, export_dir, out, _ = built
    train = shards.read_split(export_dir, "train", columns=["file_id"]).column("file_id").to_pylist()
    ds = datasets.load_dataset("csv", data_files=str(out / "ATTRIBUTION.tsv"), delimiter="\t", split="train",
                               keep_default_na=False)
    assert ds.column_names == list(card.ATTRIBUTION_COLUMNS)
    assert ds.num_rows == len(train) and sorted(ds["file_id"]) == sorted(train)
    by_id = {r["file_id"]: r for r in ds}
    for fid, r in by_id.items():
        assert r["snapshot_sha256"] == meta[fid]["sha256"] and r["licence_uri"].startswith("http")
        assert r["location"].startswith("usr/share/openclipart/png/") and r["source"].startswith("Open Clip Art Library 0.18")
        assert r["creator"] and "@" not in r["creator"] and "HASH(" not in r["creator"]
        assert MAIL not in r["title"] and "@" not in r["title"]
    placeholders = [fid for i, fid in enumerate(meta) if i % 3 == 1 and fid in by_id]
    assert placeholders and all(by_id[fid]["creator"] == "unknown" for fid in placeholders)


def test_the_card_is_a_valid_hub_card_without_personal_data(built):
    from huggingface_hub import ModelCard

    snap, meta, export_dir, out, _ = built
    text = (out / "README.md").read_text(encoding="utf-8")
    assert not pii.EMAIL.search(text) and MAIL not in text and "055 123" not in text and "jane-doe" not in text
    data = ModelCard.load(out / "README.md").data.to_dict()
    assert "base_model" not in data and "datasets" not in data   # no empty list, no fake Hub dataset id
    assert data["library_name"] == "diffusers" and data["pipeline_tag"] == "text-to-image"
    assert data["pdd_snapshot"]["name"] == "personal" and data["pdd_snapshot"]["images"] == len(meta)
    assert (out / "sample_grid.png").is_file() and "](sample_grid.png)" in text
    for section in ("## How to use", "## Intended use", "## What it can do, honestly", "## Training data",
                    "## Training\n", "## Limitations"):
        assert section in text, section
    assert "Creative Commons Public Domain Dedication (retired)" in text and "CC0 1.0" not in text
    assert "| unet | 2500 | 32 | adamw lr 0.002 |" in text
    assert f"{len(meta)} e-mail addresses, {len(meta)} phone numbers and {len(meta)} URLs" in text


@pytest.mark.parametrize("text,clean,counts", [
    ("Telefono (email: frollandin@email.it)", "Telefono", {"email": 1}),
    ("renardjb at free dot fr", "", {"email": 1}),
    ("icon, icons, snu@autistici.org, hash", "icon, icons, hash", {"email": 1}),
    ("Paint Brush, http://www.bcostea.ro, tool", "Paint Brush, tool", {"url": 1}),
    ("call +49 (0)30 1234567 today", "call today", {"phone": 1}),
    ("Iraqi flag 1959-1963", "Iraqi flag 1959-1963", {}),          # a year range, not a phone number
    ("drawn 2006-01-02 at 1024x768", "drawn 2006-01-02 at 1024x768", {}),
    ("Apple, food/fruit, apple, fruit", "Apple, food/fruit, apple, fruit", {}),
])
def test_personal_data_patterns(text, clean, counts):
    assert pii.scrub(text) == (clean, counts)
