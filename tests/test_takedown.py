"""Issue 12, takedowns: `pdd exclude` -> the audit fails naming the id -> `pdd snapshot pin NEW --from OLD`
(the committed snapshot minus the exclusions, no store needed) -> point params.yaml at NEW -> `dvc repro`
rebuilds everything downstream of the snapshot without the file.

The fast tests use the generated snapshot (tests/snapshot_factory.py); the slow one runs the whole
DVC chain twice with tiny params on the committed demo snapshot in a fresh copy of the repository."""
import json
import shutil
import time

import duckdb
import pytest
import yaml

from pdd import exclusions, history, snapshot
from pdd.core.hashing import hash_file
from pdd.core.errors import PddError
from pdd.rights import audit
from pdd.source import pin
from pdd.source.store import Store
from conftest import TINY, make_copy, pdd_cli as pdd, sh, update_params

DEMO = "openclipart-0.18"
# every stage of dvc.yaml, in build order; all of them read the snapshot's rows, directly or through data/export
STAGES = ("audit", "curate", "export", "tokenizer", "clip", "judge", "vae", "latents", "unet", "sample", "quality",
          "memorization", "pipeline")


def ids_of(path) -> list[str]:
    return [r["file_id"] for r in snapshot.read_table(path, ["file_id"]).to_pylist()]


@pytest.fixture
def clone(tmp_path, generated_snapshot):
    """A folder laid out like a fresh clone: data/snapshots/NAME.parquet + NAME.json and an empty
    exclusion list, and no store."""
    root = tmp_path / "clone"
    (root / "data/snapshots").mkdir(parents=True)
    src = generated_snapshot.path
    for f in (src, src.with_suffix(".json")):
        shutil.copy(f, root / "data/snapshots" / f.name)
    (root / "data/exclusions.tsv").write_text("file_id\treason\tdate\n")
    return root, src.stem


def test_takedown_without_the_store(clone, generated_snapshot, tmp_path):
    root, name = clone
    old = root / f"data/snapshots/{name}.parquet"
    ids = ids_of(old)
    victim = ids[7]
    # no store here: the id is checked against the snapshots in data/snapshots
    bad = pdd(["exclude", "mus:nope", "--reason", "x"], root)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "mus:nope: not a file in the store (there is none at data/pdd.duckdb) or in a snapshot in data/snapshots" in bad.stderr
    pdd(["exclude", victim, "--reason", "takedown request #1", "--date", "2026-01-02"], root, check=True)
    assert (root / "data/exclusions.tsv").read_text() == f"file_id\treason\tdate\n{victim}\ttakedown request #1\t2026-01-02\n"

    # the audit (what stage `audit` runs) refuses the old snapshot, naming the id and the reason
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(old, ["pd", "cc0"], exclusions_path=root / "data/exclusions.tsv")
    assert f"{victim} (excluded on 2026-01-02: takedown request #1)" in str(err.value)

    out = pdd(["snapshot", "pin", "t1", "--from", name], root, check=True).stdout
    assert f"56 files (1 left out now: {victim})" in out
    new = root / "data/snapshots/t1.parquet"
    assert ids_of(new) == [i for i in ids if i != victim]
    assert audit.audit_snapshot(new, ["pd", "cc0"], exclusions_path=root / "data/exclusions.tsv")["rows"] == 56
    meta = snapshot.read_meta(new)
    src_hash = generated_snapshot.info["content_hash"]
    assert meta["pdd.derived_from"] == name and meta["pdd.derived_from_hash"] == src_hash and meta["pdd.excluded"] == "1"
    record = json.loads((root / "data/snapshots/t1.json").read_text())
    assert record["derived_from"] == {"name": name, "content_hash": src_hash, "excluded_ids": [victim]}
    assert record["excluded"] == 1 and record["parquet_sha256"] == hash_file(new) and record["n_rows"] == 56
    assert pdd(["snapshot", "verify", "t1"], root).returncode == 0
    shown = pdd(["snapshot", "show", "t1"], root, check=True).stdout
    assert f"derived from  {name} ({src_hash[:12]}) by `pdd snapshot pin --from`, leaving out {victim}" in shown
    d = pdd(["diff", name, "t1", "--stat"], root)
    assert d.returncode == 1 and "0 added, 1 removed, 0 changed, 56 unchanged" in d.stdout

    # byte-deterministic: the same source and list give the same bytes (elsewhere, and again in place)
    pdd(["snapshot", "pin", "t1", "--from", str(old), "--out-dir", str(tmp_path / "again")], root, check=True)
    assert (tmp_path / "again/t1.parquet").read_bytes() == new.read_bytes()
    assert (tmp_path / "again/t1.json").read_bytes() == (root / "data/snapshots/t1.json").read_bytes()
    assert pdd(["snapshot", "pin", "t1", "--from", name], root).returncode == 0

    # the same rows as a pin from the original store with the same exclusions: the same content hash
    db = tmp_path / "db.duckdb"
    shutil.copy(generated_snapshot.db, db)
    with Store(db, blob_dir=generated_snapshot.db.parent / "blobs") as store:
        from_store = pin.pin(store, "t1-store", tmp_path / "store-pin", exclusions.read(root / "data/exclusions.tsv"))
    assert from_store["content_hash"] == record["content_hash"] and from_store["excluded"] == 1

    # a second takedown, from the derived snapshot: `excluded` counts both, derived_from the one it came from
    pdd(["exclude", ids[3], "--reason", "opt-out", "--date", "2026-01-03"], root, check=True)
    pdd(["snapshot", "pin", "t2", "--from", "t1"], root, check=True)
    t2 = json.loads((root / "data/snapshots/t2.json").read_text())
    assert t2["excluded"] == 2 and t2["n_rows"] == 55 and t2["derived_from"]["excluded_ids"] == [ids[3]]
    assert history.info(root / "data/snapshots/t2.parquet")["excluded"] == 2


def test_pin_from_refuses_what_it_must(clone, tmp_path):
    root, name = clone
    snaps = root / "data/snapshots"
    # a used name with other content
    pdd(["exclude", ids_of(snaps / f"{name}.parquet")[0], "--reason", "x", "--date", "2026-01-02"], root, check=True)
    same_name = pdd(["snapshot", "pin", name, "--from", name], root)
    assert same_name.returncode == 2 and "already exists with other content" in same_name.stderr
    # a tampered source
    bad = tmp_path / "bad.parquet"
    table = snapshot.read_table(snaps / f"{name}.parquet")
    titles = table.column("title").to_pylist()
    titles[2] = "forged"
    import pyarrow.parquet as pq

    pq.write_table(table.set_column(table.schema.get_field_index("title"), "title", __import__("pyarrow").array(titles)), bad)
    forged = pdd(["snapshot", "pin", "x1", "--from", str(bad)], root)
    assert forged.returncode == 2 and "cannot pin from it" in forged.stderr and forged.stderr.count("\n") == 1
    missing = pdd(["snapshot", "pin", "x2", "--from", "no-such-snapshot"], root)
    assert missing.returncode == 2 and "no-such-snapshot" in missing.stderr and missing.stderr.count("\n") == 1
    assert not (snaps / "x1.parquet").exists() and not list(snaps.glob(".*tmp*"))
    # every row excluded
    (root / "all.tsv").write_text("".join(f"{i}\tx\t2026-01-01\n" for i in ids_of(snaps / f"{name}.parquet")))
    everything = pdd(["snapshot", "pin", "x3", "--from", name, "--exclusions", "all.tsv"], root)
    assert everything.returncode == 2 and "every row" in everything.stderr


def lock_hashes(root) -> dict:
    """stage -> {out: md5} from dvc.lock, without the manifests (bookkeeping, not artifacts)."""
    from ruamel.yaml import YAML

    lock = YAML(typ="safe").load((root / "dvc.lock").read_text())
    return {name: {o["path"]: o.get("md5") for o in st.get("outs", []) if not o["path"].endswith((".manifest.json", ".intoto.json"))}
            for name, st in lock["stages"].items()}


def export_ids(root, split=None) -> list[str]:
    con = duckdb.connect()
    glob = str(root / "data/export" / f"{split or '*'}-*.parquet")
    return [r[0] for r in con.execute(f"SELECT file_id FROM read_parquet('{glob}') ORDER BY file_id").fetchall()]


@pytest.mark.slow
def test_removing_one_demo_image_rebuilds_everything_downstream(tmp_path):
    """On the committed demo snapshot, in a fresh copy with tiny params: build all; take one training
    image down; the audit fails naming it; re-pin without the store; `dvc repro` reruns every stage
    and every artifact changes; the image is gone from the export; the card counts the exclusion."""
    timings = {}
    t = time.monotonic()
    root = make_copy(tmp_path / "repo", TINY)
    sh(["dvc", "repro"], root, timeout=1800)
    timings["first build"] = time.monotonic() - t
    before = lock_hashes(root)
    old_ids = export_ids(root)
    victim = export_ids(root, "train")[0]   # a training image: every trained part saw it

    t = time.monotonic()
    pdd(["exclude", victim, "--reason", "takedown request #1", "--date", "2026-01-02"], root, check=True)
    failed = sh(["dvc", "repro", "audit"], root, check=False)
    assert failed.returncode != 0
    assert f"{victim} (excluded on 2026-01-02: takedown request #1)" in failed.stdout + failed.stderr
    new_name = f"{DEMO}-takedown1"
    pdd(["snapshot", "pin", new_name, "--from", DEMO], root, check=True)
    update_params(root, {"snapshot": {"name": new_name, "path": f"data/snapshots/{new_name}.parquet"}})
    timings["exclude + failed audit + re-pin"] = time.monotonic() - t

    t = time.monotonic()
    rebuilt = sh(["dvc", "repro"], root, timeout=1800)
    timings["rebuild"] = time.monotonic() - t
    for stage in STAGES:
        assert f"Running stage '{stage}'" in rebuilt.stdout, stage
    after = lock_hashes(root)
    for stage in STAGES:
        for out, md5 in after[stage].items():
            # (the tokenizer too: its merge counts and caption statistics move with the victim's caption)
            assert md5 != before[stage][out], f"{stage}: {out} did not change without {victim}"
    print("\ntimings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))

    new_ids = export_ids(root)
    assert victim in old_ids and victim not in new_ids and len(new_ids) == len(old_ids) - 1
    card = (root / "models/pipeline/README.md").read_text()
    assert "Exclusions (takedowns) applied: 1." in card
    prov = json.loads((root / "models/pipeline/provenance.json").read_text())
    assert prov["snapshot"]["name"] == new_name and prov["snapshot"]["rows"] == 6789 and prov["exclusions"] == 1
    report = json.loads((root / "data/audit/report.json").read_text())
    assert report["rows"] == 6789 and report["snapshot"].endswith(f"{new_name}.parquet")
    assert yaml.safe_load((root / "params.yaml").read_text())["snapshot"]["name"] == new_name
