"""Snapshots are immutable, content-hashed and byte-stable; `pdd diff` shows what changed."""
import csv
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdd import snapshot
from pdd.source import pin
from pdd.core.errors import PddError
from pdd.source.importers import import_folder
from pdd.source.store import Store
from helpers_images import jpeg
from conftest import BIN, REPO, sh, tracked_files


def museum(tmp_path, n, licence="CC0", title="T"):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    with open(folder / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "title", "license"])
        for i in range(n):
            (folder / f"{i}.jpg").write_bytes(jpeg((i * 20 % 256, 50, 90)))
            w.writerow([f"{i}.jpg", f"{title} {i}", licence])
    return folder


def test_pin_twice_is_byte_identical_and_names_are_immutable(tmp_path):
    folder = museum(tmp_path, 4)
    with Store(tmp_path / "db.duckdb") as store:
        import_folder(store, folder, folder / "meta.csv")
        a = pin.pin(store, "v1", tmp_path / "s")
        bytes_a = (tmp_path / "s" / "v1.parquet").read_bytes()
        b = pin.pin(store, "v1", tmp_path / "s")
        assert (tmp_path / "s" / "v1.parquet").read_bytes() == bytes_a and a == b
        (folder / "9.jpg").write_bytes(jpeg((1, 1, 1)))
        with open(folder / "meta.csv", "a") as fh:
            fh.write("9.jpg,new,CC0\n")
        import_folder(store, folder, folder / "meta.csv")
        with pytest.raises(PddError, match="already pinned with other content"):
            pin.pin(store, "v1", tmp_path / "s")
        c = pin.pin(store, "v2", tmp_path / "s")
    assert c["content_hash"] != a["content_hash"] and c["n_rows"] == 5


def test_same_rows_in_a_fresh_store_give_the_same_bytes(tmp_path):
    folder = museum(tmp_path, 3)
    hashes = []
    for i in range(2):
        with Store(tmp_path / f"db{i}.duckdb") as store:
            import_folder(store, folder, folder / "meta.csv")
            pin.pin(store, "v", tmp_path / f"s{i}")
        hashes.append((tmp_path / f"s{i}" / "v.parquet").read_bytes())
    assert hashes[0] == hashes[1]


def test_diff_shows_added_removed_changed(tmp_path):
    folder = museum(tmp_path, 3)
    with Store(tmp_path / "db.duckdb") as store:
        import_folder(store, folder, folder / "meta.csv")
        pin.pin(store, "v1", tmp_path / "s")
        rows = list(csv.reader(open(folder / "meta.csv")))
        rows[1][1] = "Renamed"                 # 0.jpg: title changed
        rows[2][2] = "CC BY 4.0"               # 1.jpg: now rejected -> leaves the snapshot
        (folder / "5.jpg").write_bytes(jpeg((9, 9, 9)))
        rows.append(["5.jpg", "added", "CC0"])
        with open(folder / "meta.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        import_folder(store, folder, folder / "meta.csv")
        pin.pin(store, "v2", tmp_path / "s")
    d = snapshot.diff(tmp_path / "s" / "v1.parquet", tmp_path / "s" / "v2.parquet")
    assert d["added"] == ["m:5.jpg"] and d["removed"] == ["m:1.jpg"] and d["unchanged"] == 1
    assert d["changed"] == [{"file_id": "m:0.jpg", "fields": ["title", "provenance", "labels"]}]
    proc = sh([str(BIN / "pdd"), "diff", "v1", "v2", "--out-dir", str(tmp_path / "s")], tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr  # different, like `git diff --exit-code`
    out = proc.stdout
    assert "+ m:5.jpg" in out and "- m:1.jpg" in out and "~ m:0.jpg" in out and "1 added, 1 removed, 1 changed, 1 unchanged" in out


def test_verify_detects_tampering(tmp_path, generated_snapshot):
    src = generated_snapshot.path
    digest, problems = snapshot.verify(src)
    assert problems == [] and digest == snapshot.read_meta(src)["pdd.content_hash"] == generated_snapshot.info["content_hash"]
    table = pq.read_table(src)
    images = table.column("image").to_pylist()
    images[0] = images[1]
    bad = table.set_column(table.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    pq.write_table(bad, tmp_path / "bad.parquet")
    _, problems = snapshot.verify(tmp_path / "bad.parquet")
    assert any("image bytes do not match" in p for p in problems)


def test_demo_snapshot_is_committed_and_self_contained():
    """The embedded demo (the Open Clip Art Library 0.18) verifies, matches its JSON card and carries its
    evidence in every row; its rebuild from the Debian packages is tests/test_openclipart.py."""
    path = REPO / "data/snapshots/openclipart-0.18.parquet"
    info = json.loads((REPO / "data/snapshots/openclipart-0.18.json").read_text())
    digest, problems = snapshot.verify(path)
    assert problems == [] and digest == info["content_hash"]
    s = snapshot.summary(path)
    assert s["rows"] == 6350 == info["n_rows"] and s["content_hash"] == info["content_hash"]
    assert info["parquet_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    rows = snapshot.read_rows(path)
    assert all(max(r["width"], r["height"]) <= 64 for r in rows)
    assert all(r["licence_kind"] == "pd" and json.loads(r["licence_evidence"]) for r in rows)
    prov = json.loads(rows[0]["provenance"])
    assert {"source", "png", "png_sha256", "pdd_processing"} <= prov.keys()
    assert not any(r["file_id"].startswith("aic:") for r in rows)
    # the painting snapshot taken from another repository is gone for good
    assert not [p for p in tracked_files() if "demo-aic-267" in p or "aic-paintings" in p]
