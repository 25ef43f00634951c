"""A forged snapshot (one image swapped, its sha256/size fixed and the content hash recomputed, so the
file agrees with itself) fails `pdd snapshot verify` and the audit: they also check the NAME.json
pinned beside the Parquet, and the store's record when a store is given (issue 9, rights 6)."""
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdd import cli, snapshot
from pdd.core.hashing import sha256_bytes
from pdd.core.errors import PddError
from pdd.rights import audit
from pdd.source import pin
from pdd.source.importers import import_folder
from pdd.source.store import Store
from helpers_images import jpeg


def pinned(tmp_path, n=3):
    folder = tmp_path / "m"
    folder.mkdir()
    with open(folder / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "title", "license"])
        for i in range(n):
            (folder / f"{i}.jpg").write_bytes(jpeg((i * 40, 50, 90)))
            w.writerow([f"{i}.jpg", f"T {i}", "CC0"])
    db = tmp_path / "db.duckdb"
    with Store(db) as store:
        import_folder(store, folder, folder / "meta.csv")
        pin.pin(store, "v1", tmp_path / "s")
    return tmp_path / "s" / "v1.parquet", db


def forge(path):
    """Swap row 0's image for another picture and make the file consistent with itself again."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    other = jpeg((255, 0, 0), size=(32, 32))
    rows[0].update(image=other, sha256=sha256_bytes(other), size=len(other))
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    meta["pdd.content_hash"] = snapshot.content_hash(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema.with_metadata(meta)), path)


def test_pinned_snapshot_verifies_against_its_records(tmp_path):
    path, db = pinned(tmp_path)
    assert snapshot.verify(path)[1] == []
    with Store(db, read_only=True) as store:
        assert snapshot.verify(path, store)[1] == []


def test_forged_snapshot_fails_verify_against_name_json(tmp_path):
    path, _db = pinned(tmp_path)
    forge(path)
    _digest, problems = snapshot.verify(path)
    assert any("recorded in v1.json" in p for p in problems), problems
    with pytest.raises(PddError, match="v1.json"):
        audit.audit_snapshot(path, ["pd", "cc0"], tmp_path / "no-exclusions.tsv")


def test_forged_snapshot_fails_verify_against_the_store(tmp_path):
    path, db = pinned(tmp_path)
    forge(path)
    (tmp_path / "s" / "v1.json").unlink()   # the forger removed the record beside it too
    assert snapshot.verify(path)[1] == []   # nothing left to compare with but the file itself
    with Store(db, read_only=True) as store:
        problems = snapshot.verify(path, store)[1]
    assert any("the store's record of 'v1'" in p for p in problems), problems


def test_cli_verify_names_the_mismatch_in_one_line(tmp_path, capsys):
    path, db = pinned(tmp_path)
    forge(path)
    rc = cli.main(["snapshot", "verify", "v1", "--out-dir", str(tmp_path / "s"), "--db", str(db)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "v1.json" in err and "the store's record" in err


def test_name_json_for_another_snapshot_is_a_mismatch(tmp_path):
    path, _db = pinned(tmp_path)
    info = json.loads((tmp_path / "s" / "v1.json").read_text())
    (tmp_path / "s" / "v1.json").write_text(json.dumps({**info, "name": "v2"}))
    assert any("records snapshot 'v2'" in p for p in snapshot.verify(path)[1])
    (tmp_path / "s" / "v1.json").write_text("{garbled")
    assert any("not readable JSON" in p for p in snapshot.verify(path)[1])
