"""audit refuses a snapshot that may not be compiled; export is a pure, byte-stable function."""
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pdd import snapshot
from pdd.core import shards
from pdd.data import curate, export
from pdd.rights import audit
from pdd.core.errors import PddError
from pdd.core.hashing import hash_dir
from conftest import REPO
from pdd.core import config

DEMO = REPO / "data/snapshots/openclipart-0.18.parquet"  # the committed demo snapshot (params.yaml names it)
CFG = config.ExportCfg(resolutions=(16, 24), resample="lanczos", fit="crop", background=(255, 255, 255), val_fraction=0.2,
                       caption=config.CaptionCfg("{title}, {creator}, {date}", ("pd", "cc0"), "a painting"),
                       shard_rows=100, threads=2)


def tamper(tmp_path, snap, change) -> str:
    """Rewrite a pinned snapshot with change(rows) applied, keeping its pinned metadata (as an attacker would)."""
    table = pq.read_table(snap)
    rows = table.to_pylist()
    change(rows)
    out = tmp_path / "tampered.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out)
    return out


def test_demo_snapshot_passes_audit():
    report = audit.audit_snapshot(DEMO, ["pd", "cc0"])
    assert report["rows"] == 6350 and report["licences"] == {"pd": 6350}


def test_generated_snapshot_passes_audit(generated_snapshot):
    report = audit.audit_snapshot(generated_snapshot.path, ["pd", "cc0"])
    assert report["rows"] == 57 and report["licences"] == {"cc0": 45, "pd": 12}


def test_audit_names_rows_without_an_accepted_licence(tmp_path, generated_snapshot):
    def change(rows):
        rows[3]["licence_kind"] = "cc-by-sa"
        rows[7]["licence_status"] = "rejected"
    path = tamper(tmp_path, generated_snapshot.path, change)
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ["pd", "cc0"])
    rows = snapshot.read_rows(generated_snapshot.path)
    msg = str(err.value)
    assert rows[3]["file_id"] in msg and rows[7]["file_id"] in msg and "cc-by-sa" in msg
    assert "differs from the pinned" in msg  # the content hash no longer matches either


def test_audit_respects_allowed_licences_param(generated_snapshot):
    with pytest.raises(PddError, match="45 problem"):   # every cc0 row
        audit.audit_snapshot(generated_snapshot.path, ["pd"])
    with pytest.raises(PddError, match="12 problem"):   # every pd row
        audit.audit_snapshot(generated_snapshot.path, ["cc0"])


def test_export_is_byte_identical_across_runs(tmp_path, generated_snapshot):
    a = export.export(generated_snapshot.path, tmp_path / "a", CFG, seed=7)
    export.export(generated_snapshot.path, tmp_path / "b", config.replace(CFG, threads=1), seed=7)
    assert hash_dir(tmp_path / "a") == hash_dir(tmp_path / "b")
    assert a["counts"]["train"] + a["counts"]["val"] == 57 and 4 <= a["counts"]["val"] <= 20


def test_export_content(tmp_path, generated_snapshot):
    export.export(generated_snapshot.path, tmp_path, CFG, seed=7)
    train = shards.read_split(tmp_path, "train")
    ids = train.column("file_id").to_pylist()
    assert ids == sorted(ids)
    imgs = shards.images_array(train, 24)
    assert imgs.shape == (len(ids), 24, 24, 3) and imgs.dtype == np.uint8 and imgs.std() > 10
    cap = dict(zip(ids, train.column("caption").to_pylist()))
    meta = generated_snapshot.meta
    assert cap["mus:0003"] == "Yellow plus sign on green no. 3, Unknown maker, 1909"
    # CC0 labels make the caption; CC BY-SA labels may not, so those rows get the fallback
    assert {m["label_licence"] for fid, m in meta.items() if fid in cap} == {"cc0", "cc-by-sa"}
    for fid, caption in cap.items():
        m = meta[fid]
        assert caption == (f"{m['title']}, {m['creator']}, {m['date']}" if m["label_licence"] == "cc0" else "a painting")


def test_split_depends_on_seed_and_content_key_only():
    keys = [f"{i:032x}-000000" for i in range(2000)]
    a = [curate.split_of_key(k, 1, 0.1) for k in keys]
    assert a == [curate.split_of_key(k, 1, 0.1) for k in keys]
    assert 150 < a.count("val") < 250
    assert a != [curate.split_of_key(k, 2, 0.1) for k in keys]


def test_captions_only_use_labels_with_allowed_licences():
    labels = [{"field": "title", "lang": "en", "text": "Mill", "licence": "cc0", "source": "sdc"},
              {"field": "creator", "lang": None, "text": "Someone", "licence": "cc-by-sa", "source": "desc"},
              {"field": "title", "lang": "nl", "text": "Molen", "licence": "cc0", "source": "sdc"}]
    assert export.build_caption(labels, "{title}, {creator}", ["cc0"], "x") == "Mill"
    assert export.build_caption(labels, "{title}, {creator}", ["cc0", "cc-by-sa"], "x") == "Mill, Someone"
    assert export.build_caption([], "{title}", ["cc0"], "a painting") == "a painting"


def test_export_strips_metadata_and_applies_orientation(tmp_path):
    from pdd.core import images

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6   # orientation: rotate 90 CW on display
    exif[0x010E] = "secret description"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = images.decode_rgb(buf.getvalue())
    assert out.size == (20, 40) and not out.info and out.getexif() == {}
    assert out.getpixel((10, 35))[2] > 200  # blue ends up at the bottom after rotating


def test_export_main_writes_manifest(tmp_path, monkeypatch):
    from conftest import make_copy
    root = make_copy(tmp_path / "r", {"export": {"resolutions": [16]}, "curate": {"resolution": 16}})
    monkeypatch.chdir(root)
    from pdd.build.runner import run

    assert run("audit", []) == 0 and run("curate", []) == 0 and run("export", []) == 0
    m = json.loads((root / "data/export.manifest.json").read_text())
    assert m["output"]["sha256"] == hash_dir(root / "data/export")
    snap = yaml.safe_load((root / "params.yaml").read_text())["snapshot"]["path"]
    assert snap == "data/snapshots/openclipart-0.18.parquet"
    assert set(m["inputs"]) == {snap, "data/audit", "data/curate"}
    assert set(m) >= {"stage", "output", "inputs", "params", "seed", "code", "versions", "nondeterminism"}
    assert m["params"]["export"]["resolutions"] == [16] and "stages/export.py" in m["code"]["files"]
    assert m["versions"]["pillow"] and m["code"]["revision"] != "unknown"


def test_export_refuses_an_empty_split(tmp_path, generated_snapshot):
    """A snapshot too small for its val_fraction used to export an empty val split, and clip then reported
    recall "nan" and vae failed on a missing grid: one clear error at export instead."""
    with pytest.raises(PddError) as err:
        export.export(generated_snapshot.path, tmp_path, config.replace(CFG, val_fraction=0.001), seed=7)
    msg = str(err.value)
    assert "the val split" in msg and "is empty (57 rows" in msg and "export.val_fraction" in msg
    assert "\n" not in msg


def test_junk_in_labels_is_cleaned_where_captions_are_built():
    labels = [{"field": "title", "lang": "en", "text": "Tom &amp;amp; Jerry &lt;3", "licence": "pd"},
              {"field": "creator", "lang": "en", "text": "HASH(0x8a0cf9c)", "licence": "pd"},
              {"field": "keywords", "lang": "en", "text": "hash(0x8a3ecd4), <b>cat</b>", "licence": "pd"}]
    cap = export.build_caption(labels, "{title}, {creator}, {keywords}", ["pd"], "fallback")
    assert cap == "Tom & Jerry <3, cat"      # the placeholder creator is dropped with its comma


def test_the_caption_cap_follows_the_captions_the_export_writes(tmp_path, generated_snapshot):
    """Stage curate builds each row's caption as the export does, so curate.cap_per_caption=1 leaves one train row
    of the fallback caption the CC BY-SA rows share; with the cap off (0) the same export has several."""
    base = config.section(config.declared(), "curate")
    counts = {}
    for cap in (0, 1):
        out = tmp_path / f"cap{cap}"
        table = export.curation(generated_snapshot.path, config.replace(base, resolution=16, cap_per_caption=cap),
                                CFG, 7)
        (out / "curate").mkdir(parents=True)
        curate.write(table, out / "curate")
        export.export(generated_snapshot.path, out / "export", CFG, seed=7, curate_dir=out / "curate")
        captions = shards.read_split(out / "export", "train").column("caption").to_pylist()
        counts[cap] = captions.count("a painting")
        if cap:
            assert len(captions) == len(set(captions))
            assert sum(r == "caption_cap" for r in table.column("reason").to_pylist()) == counts[0] - 1
    assert counts[0] > 1 and counts[1] == 1
