"""The model card's provenance: licence counts equal a direct count on the snapshot, and caption text under a
licence that requires attribution (CC BY-SA) is listed in ATTRIBUTION.tsv, with whom and where to credit."""
from __future__ import annotations

import copy
import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO
from pdd import card, snapshot
from pdd.core import config
from pdd.core import params as params_mod
from pdd.data import export

DEMO = REPO / "data/snapshots/openclipart-0.18.parquet"
BYSA = {"field": "description", "lang": "en", "text": "A mill by a river at dusk", "licence": "cc-by-sa",
        "source": "commons-extmetadata"}


def small_snapshot(tmp_path, rows=30, add_to=(3,)) -> tuple[Path, list[str]]:
    """The demo's first ROWS files, re-pinned (a valid content hash), with a CC BY-SA description added to
    the rows at ADD_TO."""
    from pdd.source.pin import write_parquet

    table = pq.read_table(DEMO).slice(0, rows).to_pylist()
    images = {r["sha256"]: r["image"] for r in table}
    meta = [{k: r[k] for k in snapshot.META_COLUMNS} for r in table]
    for i in add_to:
        labels = json.loads(meta[i]["labels"]) + [BYSA]
        meta[i]["labels"] = json.dumps(sorted(labels, key=lambda lb: json.dumps(lb, sort_keys=True)), sort_keys=True,
                                       separators=(",", ":"))
        prov = json.loads(meta[i]["provenance"])
        prov.update({"descriptionurl": f"https://commons.wikimedia.org/wiki/File:Mill_{i}.jpg", "pageid": 1000 + i})
        meta[i]["provenance"] = json.dumps(prov, sort_keys=True, separators=(",", ":"))
    path = tmp_path / "with-bysa.parquet"
    write_parquet(meta, path, "with-bysa", snapshot.content_hash(meta), images.__getitem__)
    return path, [meta[i]["file_id"] for i in add_to]


def build_card(tmp_path, snap: Path, label_licences) -> tuple[dict, Path]:
    params = params_mod.load(REPO / "params.yaml")
    params["export"]["caption"].update({"template": "{title}, {description}", "label_licences": list(label_licences)})
    params["export"]["resolutions"] = [16]
    params["export"]["val_fraction"] = 0.3   # 30 rows: at 0.1 the val split comes out empty, which export refuses
    ex_cfg = config.section(params, "export")
    export.export(snap, tmp_path / "export", ex_cfg, seed=params["seed"])
    out = tmp_path / "pipeline"
    out.mkdir()
    deps = {"snapshot": snap, "export": tmp_path / "export", "exclusions": REPO / "data/exclusions.tsv",
            "quality": tmp_path / "none.json", "memorization": tmp_path / "none.json"}
    card.write(out, copy.deepcopy(params), deps, "StableDiffusionPipeline")
    return json.loads((out / "provenance.json").read_text()), out


def test_licence_counts_equal_a_direct_count_and_bysa_text_is_attributed(tmp_path):
    snap, ids = small_snapshot(tmp_path)
    assert not snapshot.verify(snap)[1]    # a valid pin: the audit would accept it
    prov, out = build_card(tmp_path, snap, ["pd", "cc0", "cc-by-sa"])
    table = pq.read_table(snap, columns=["licence_kind", "source_id", "labels"]).to_pylist()
    assert prov["snapshot"]["licences"] == dict(Counter(r["licence_kind"] for r in table))
    assert prov["snapshot"]["sources"] == dict(Counter(r["source_id"] for r in table))
    assert prov["snapshot"]["label_licences"] == dict(Counter(lb["licence"] for r in table for lb in json.loads(r["labels"])))
    assert prov["snapshot"]["label_licences"]["cc-by-sa"] == 1
    assert sum(prov["exported"].values()) == len(table) == prov["snapshot"]["rows"]
    with open(out / "ATTRIBUTION.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == prov["exported"]["train"] == prov["attribution"]["rows"]
    credited = [r for r in rows if r["caption_credit"]]
    assert [r["file_id"] for r in credited] == ids   # row 3 is in the train split: its caption text is credited
    assert credited[0]["caption_credit"] == f"description (cc-by-sa) by {credited[0]['creator']}, " \
                                            "https://commons.wikimedia.org/wiki/File:Mill_3.jpg"
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "\nlicense: other\n" in readme.split("\n---\n")[0]
    assert "**Attribution required:**" in readme
    assert prov["attribution"]["caption_credits"] == {"images": 1, "labels": 1, "licences": {"cc-by-sa": 1}}


def test_bysa_label_not_allowed_for_captions_needs_no_attribution(tmp_path):
    snap, _ = small_snapshot(tmp_path)
    prov, out = build_card(tmp_path, snap, ["pd", "cc0"])
    with open(out / "ATTRIBUTION.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == prov["exported"]["train"] and not any(r["caption_credit"] for r in rows)
    assert prov["attribution"]["caption_credits"]["labels"] == 0
    readme = (out / "README.md").read_text()
    assert "\nlicense: cc0-1.0\n" in readme.split("\n---\n")[0] and "No caption text requires attribution" in readme


@pytest.mark.parametrize("licence,needs", [("cc-by", True), ("cc-by-sa", True), ("cc-by-4.0", True), ("cc0", False),
                                           ("pd", False)])
def test_which_licences_need_attribution(licence, needs):
    assert card.needs_attribution(licence) is needs
