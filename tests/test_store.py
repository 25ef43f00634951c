"""The store's batched write: record_batch stores a batch in a few statements, with exactly the result of
storing its records one after another (revision ids, revision numbers, labels, created flags), including a
file seen twice in one batch; a bad value rolls the whole batch back."""
from __future__ import annotations

import pytest

from pdd.rights.text import LicenceDecision
from pdd.source.store import FileRecord, Label, Store

PD = LicenceDecision(True, "pd", "public domain (test)", {"licence": "pd"})


def rec(ext: str, title: str = "a title", data: bytes | None = b"png-bytes", status: str = "accepted", **kw) -> FileRecord:
    labels = [Label("title", title, "cc0", "en", "test"), Label("caption", f"caption of {ext}", "cc0", None, "test")]
    return FileRecord("src", ext, title, status, "ok" if status == "accepted" else "rejected: test",
                      licence=PD if status == "accepted" else None, data=data + ext.encode() if data else None,
                      mime="image/png", width=4, height=4, labels=labels, **kw)


def batch():
    return [rec("a"), rec("b"), rec("a", "a new title"),   # a: new, then changed in the same batch
            rec("c"), rec("c"),                             # c: the same twice: one revision
            rec("d", status="rejected", data=None),
            rec("b", "b changed"), rec("b")]                # b: changed, then back to its first state


def state(store: Store) -> dict:
    return {t: store.con.execute(f"SELECT * EXCLUDE ({ex}) FROM {t} ORDER BY ALL").fetchall()
            for t, ex in (("files", "source_id"), ("revisions", "fetched_at"), ("labels", "source"))}


def test_a_batch_is_stored_as_its_records_one_after_another(tmp_path):
    with Store(tmp_path / "one/db.duckdb") as one, Store(tmp_path / "many/db.duckdb") as many:
        for s in (one, many):
            s.ensure_source("src", "folder")
            s.record_batch([rec("z")])                     # something stored before the batch
        singles = [one.record(r) for r in batch()]
        together = many.record_batch(batch())
        assert together == singles
        assert [created for _, created in together] == [True, True, True, True, False, True, True, True]
        assert state(many) == state(one)
        revs = many.query("SELECT file_id, rev_no, title FROM revisions ORDER BY revision_id")
        assert [(r["file_id"], r["rev_no"]) for r in revs] == [
            ("src:z", 1), ("src:a", 1), ("src:b", 1), ("src:a", 2), ("src:c", 1), ("src:d", 1), ("src:b", 2), ("src:b", 3)]
        # the same batch again changes nothing new except where it differs from the newest revision
        again = many.record_batch(batch())
        assert [c for _, c in again] == [True, False, True, False, False, False, True, True]


def test_labels_for_many_revisions_are_labels_of_each(tmp_path):
    with Store(tmp_path / "db.duckdb") as store:
        store.ensure_source("src", "folder")
        ids = [rid for rid, _ in store.record_batch(batch())]
        many = store.labels_for(ids + [10_000])
        assert many[10_000] == []
        for rid in ids:
            assert many[rid] == store.labels_of(rid)


def test_a_value_of_another_shape_is_kept_as_json_and_a_bad_integer_stores_nothing(tmp_path):
    with Store(tmp_path / "db.duckdb") as store:
        store.ensure_source("src", "folder")
        odd = rec("e", status="rejected", data=None)
        odd.mime = ["image/jpeg"]                          # what a hostile API may send
        store.record(odd)
        assert store.latest_revision("src:e")["mime"] == '["image/jpeg"]'
        bad = rec("f")
        bad.width = "wide"
        with pytest.raises(ValueError, match="width must be an integer, not 'wide'"):
            store.record_batch([rec("g"), bad])
        assert store.latest_revision("src:g") is None     # the whole batch rolled back
        assert store.query("SELECT count(*) AS n FROM files WHERE file_id IN ('src:f', 'src:g')")[0]["n"] == 0
