"""Export (and so every stage after it) compiles only the very snapshot file that the audit passed
(issue 9, rights 5): a failed audit leaves the previous passing report in place, and a tampered file can
keep its declared content hash, so checking the declared hash alone let a rejected snapshot through."""
import json
import shutil

import pyarrow.parquet as pq
import pytest

from pdd.core.hashing import hash_file, write_json
from pdd.data import export
from pdd.core.errors import PddError
from pdd.rights import audit
from conftest import REPO, make_copy



def tamper_keeping_declared_hash(path):
    """Edit one row's licence and write the file back with its original metadata (declared hash)."""
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["licence_evidence"] = json.dumps({"field": "license", "license": "CC BY-SA 4.0"})
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


@pytest.fixture
def audited(tmp_path, generated_snapshot):
    snap = tmp_path / "snap.parquet"
    shutil.copy(generated_snapshot.path, snap)
    report = audit.audit_snapshot(snap, ["pd", "cc0"])
    write_json(tmp_path / "audit" / "report.json", report)
    return snap, report


def test_report_records_the_file_it_audited(tmp_path, audited):
    snap, report = audited
    assert report["parquet_sha256"] == hash_file(snap) and report["passed"] is True
    assert export.check_audit(tmp_path / "audit", snap)["content_hash"] == report["content_hash"]


def test_snapshot_rejected_by_the_audit_does_not_export_on_the_old_report(tmp_path, audited):
    snap, _report = audited
    tamper_keeping_declared_hash(snap)
    with pytest.raises(PddError):
        audit.audit_snapshot(snap, ["pd", "cc0"])   # the audit rejects it (and writes no new report)
    with pytest.raises(PddError, match="changed since it was audited") as err:
        export.check_audit(tmp_path / "audit", snap)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit,message", [
    ({"passed": False}, "did not pass"),
    ({"content_hash": "0" * 64}, "was made for content hash"),
    ({"parquet_sha256": None}, "another file"),   # a report from before the file hash was recorded
])
def test_report_must_have_passed_for_this_exact_file(tmp_path, audited, edit, message):
    snap, report = audited
    write_json(tmp_path / "audit" / "report.json", {**report, **edit})
    with pytest.raises(PddError, match=message):
        export.check_audit(tmp_path / "audit", snap)


def test_export_stage_refuses_after_a_failed_audit(tmp_path, monkeypatch):
    root = make_copy(tmp_path / "r", {"export": {"resolutions": [16]}, "curate": {"resolution": 16}})
    monkeypatch.chdir(root)
    from pdd.build.runner import run

    assert run("audit", []) == 0 and run("curate", []) == 0 and run("export", []) == 0
    manifest = json.loads((root / "data/export.manifest.json").read_text())
    import yaml

    snap = root / yaml.safe_load((root / "params.yaml").read_text())["snapshot"]["path"]
    assert manifest["audited_snapshot"]["parquet_sha256"] == hash_file(snap)
    before = manifest["output"]["sha256"]
    tamper_keeping_declared_hash(snap)
    assert run("audit", []) == 2        # rejected; data/audit/report.json is still the old, passing one
    assert run("export", []) == 2       # exited 0 before and exported the rejected snapshot
    assert json.loads((root / "data/export.manifest.json").read_text())["output"]["sha256"] == before
