"""audit decides every row again from its stored evidence: a snapshot whose licence columns were
edited and re-hashed (so its content hash checks out) still does not compile."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdd import snapshot
from pdd.source import pin
from pdd.rights import audit
from pdd.core.errors import PddError
from pdd.source.commons.mirror import Catalogue, MirrorServer
from pdd.source.store import Store
from conftest import FIXTURES
from scrape_helpers import scrape



def rehash(rows: list[dict], out, schema) -> str:
    """What a careless (or dishonest) tool would do: edit rows and pin them again, hash and all."""
    digest = snapshot.content_hash(rows)
    table = pa.Table.from_pylist(rows, schema=schema.with_metadata({"pdd.format": snapshot.SNAPSHOT_FORMAT,
                                                                    "pdd.snapshot": "x", "pdd.content_hash": digest}))
    pq.write_table(table, out)
    return out


def test_rehashed_snapshot_with_an_edited_licence_kind_fails(tmp_path, generated_snapshot):
    table = pq.read_table(generated_snapshot.path)
    rows = table.to_pylist()
    assert rows[10]["licence_kind"] == "cc0" and rows[0]["licence_kind"] == "pd"
    rows[10]["licence_kind"] = "pd"  # the evidence says CC0
    rows[0]["licence_kind"] = "cc0"  # the evidence says public domain
    path = rehash(rows, tmp_path / "t.parquet", table.schema)
    assert snapshot.verify(path)[1] == []  # the hash alone no longer catches it
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ["pd", "cc0"])
    assert f"{rows[10]['file_id']} (evidence says cc0, row says pd)" in str(err.value)
    assert f"{rows[0]['file_id']} (evidence says pd, row says cc0)" in str(err.value)


def test_rehashed_snapshot_whose_evidence_is_not_free_fails(tmp_path, generated_snapshot):
    table = pq.read_table(generated_snapshot.path)
    rows = table.to_pylist()
    ev = json.loads(rows[0]["licence_evidence"])
    ev[ev["field"]] = "CC BY-SA 4.0"
    rows[0]["licence_evidence"] = json.dumps(ev)
    rows[1]["licence_evidence"] = json.dumps({"note": "trust me"})
    path = rehash(rows, tmp_path / "t.parquet", table.schema)
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ["pd", "cc0"])
    msg = str(err.value)
    assert f"{rows[0]['file_id']} (evidence does not support acceptance" in msg
    assert f"{rows[1]['file_id']} (licence evidence of an unknown kind)" in msg


@pytest.mark.skipif(not (FIXTURES / "index.json").exists(), reason="needs ../shared/fixtures/commons")
def test_scraped_commons_snapshot_passes_and_its_tampered_twin_fails(tmp_path):
    with MirrorServer(Catalogue.from_fixture(FIXTURES)) as srv:
        scrape(srv.api_url, tmp_path / "pdd.duckdb")
    with Store(tmp_path / "pdd.duckdb") as store:
        # a portrait whose title names its sitter: the likeness screen rejects it (data/rights_review.tsv could accept it)
        portrait = store.query("SELECT reason FROM current_revisions WHERE file_id = 'commons:66123457'")[0]["reason"]
        assert portrait.startswith("rejected: likeness: 'person named: anna roos' in title")
        pin.pin(store, "fixture", tmp_path)
    path = tmp_path / "fixture.parquet"
    report = audit.audit_snapshot(path, ["pd", "cc0"])
    assert report["rows"] == 7 and report["licences"] == {"cc0": 1, "pd": 6}
    table = pq.read_table(path)
    rows = table.to_pylist()
    ev = json.loads(rows[0]["licence_evidence"])
    ev["extmetadata"]["AttributionRequired"] = "true"
    rows[0]["licence_evidence"] = json.dumps(ev)
    with pytest.raises(PddError, match="AttributionRequired"):
        audit.audit_snapshot(rehash(rows, tmp_path / "t.parquet", table.schema), ["pd", "cc0"])
