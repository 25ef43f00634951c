"""Issue 25, minor cases: a crafted snapshot that agrees with itself (its content hash recomputed, the
NAME.json beside it removed) but whose columns have other types, whose licence evidence nests thousands
of levels deep or is no JSON object, whose rows share one file_id, or whose ids hold terminal escapes.
Each is one line naming the snapshot and what is wrong (exit 2 in the CLI), and the audit fails closed."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdd import cli, snapshot
from pdd.core.errors import PddError
from pdd.rights import audit
from test_snapshot_forgery import pinned

ALLOWED = ["pd", "cc0"]


def craft(tmp_path, change, schema_change=None):
    """The pinned 3-row snapshot with CHANGE(rows) applied (and SCHEMA_CHANGE(schema)), made consistent
    with itself again: content hash recomputed, no pin record beside it."""
    path, _db = pinned(tmp_path)
    table = pq.read_table(path)
    rows, schema = table.to_pylist(), table.schema
    change(rows)
    if schema_change:
        schema = schema_change(schema)
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    try:
        meta["pdd.content_hash"] = snapshot.content_hash(rows)
    except TypeError:   # a column that is no longer JSON-able as the format has it
        pass
    path.with_suffix(".json").unlink()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.with_metadata(meta)), path)
    return path


def retype(name, typ, convert):
    def change(rows):
        for i, r in enumerate(rows):
            r[name] = convert(i, r[name])
    return change, (lambda s: s.set(s.get_field_index(name), pa.field(name, typ)))


WRONG_TYPES = {
    "size as text": ("size", *retype("size", pa.string(), lambda i, v: str(v))),
    "file_id as a number": ("file_id", *retype("file_id", pa.int64(), lambda i, v: i)),
    "image as text": ("image", *retype("image", pa.string(), lambda i, v: "x")),
    "evidence as a list": ("licence_evidence", *retype("licence_evidence", pa.list_(pa.string()), lambda i, v: [v])),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrong_column_types_are_one_line_naming_the_column(tmp_path, capsys, case):
    column, change, schema_change = WRONG_TYPES[case]
    path = craft(tmp_path, change, schema_change)
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ALLOWED, tmp_path / "none.tsv")
    assert str(path) in str(err.value) and f"column {column!r}" in str(err.value)
    for args in (["snapshot", "verify", str(path)], ["snapshot", "show", str(path)],
                 ["diff", str(path), str(path)], ["snapshot", "textconv", str(path)]):
        assert cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"column {column!r}" in err and str(path) in err, (args, err)


def test_a_column_twice_is_refused(tmp_path):
    path, _db = pinned(tmp_path)
    table = pq.read_table(path)
    doubled = table.append_column("size", table.column("size"))
    pq.write_table(doubled, path)
    with pytest.raises(PddError, match="column 'size' appears 2 times"):
        snapshot.open_snapshot(path)


def nest(depth: int):
    def change(rows):
        for r in rows:   # keeps the accepting evidence and adds a deeply nested key beside it
            r["licence_evidence"] = r["licence_evidence"][:-1] + ',"x":' + '{"a":' * depth + "1" + "}" * depth + "}"
    return change


@pytest.mark.parametrize("depth", [40, 5000, 200000])
def test_deeply_nested_evidence_fails_the_audit_in_one_line(tmp_path, depth):
    """Depth 5000 was a RecursionError in json.loads; 40 parsed, and nothing bounded what walked it."""
    path = craft(tmp_path, nest(depth))
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ALLOWED, tmp_path / "none.tsv")
    msg = str(err.value)
    assert "3 problem(s)" in msg and "licence evidence nested more than 32 levels deep" in msg and "\n" not in msg


def test_evidence_that_is_no_json_object_fails_the_audit(tmp_path):
    def change(rows):
        rows[0]["licence_evidence"] = "[1]"
        rows[1]["licence_evidence"] = '"CC0"'
    msg = str(pytest.raises(PddError, audit.audit_snapshot, craft(tmp_path, change), ALLOWED, tmp_path / "none.tsv").value)
    assert "2 problem(s)" in msg and "licence evidence is a JSON list, not an object" in msg
    assert "licence evidence is a JSON str, not an object" in msg


def test_evidence_a_few_levels_deep_still_passes(tmp_path):
    path = craft(tmp_path, nest(20))
    assert audit.audit_snapshot(path, ALLOWED, tmp_path / "none.tsv")["passed"]


def test_rows_sharing_one_file_id_fail_the_audit_naming_it(tmp_path):
    def change(rows):
        for r in rows:
            r["file_id"] = rows[0]["file_id"]
    path = craft(tmp_path, change)
    fid = pq.read_table(path).column("file_id")[0].as_py()
    with pytest.raises(PddError) as err:
        audit.audit_snapshot(path, ALLOWED, tmp_path / "none.tsv")
    assert f"{fid} (file_id on 3 rows (a snapshot has one row per file))" in str(err.value)


def test_a_second_row_cannot_hide_the_first_rows_problem(tmp_path):
    """Row 0 rejected, row 1 fine, both with row 1's id: the rejected row is reported (before, the later
    row's empty list of problems replaced it, and the audit passed)."""
    def change(rows):
        rows[0]["licence_status"] = "rejected"
        rows[0]["file_id"] = rows[1]["file_id"]
    msg = str(pytest.raises(PddError, audit.audit_snapshot, craft(tmp_path, change), ALLOWED, tmp_path / "none.tsv").value)
    assert "status 'rejected'" in msg and "file_id on 2 rows" in msg


def test_audit_failure_line_prints_ids_escaped(tmp_path):
    def change(rows):
        rows[0]["licence_status"] = "rejected"
        rows[0]["file_id"] = "m:\x1b[2K\rRIGHTS OK\nsummary: 0 problems"
    msg = str(pytest.raises(PddError, audit.audit_snapshot, craft(tmp_path, change), ALLOWED, tmp_path / "none.tsv").value)
    assert "\x1b" not in msg and "\r" not in msg and "\n" not in msg
    assert r"m:\x1b[2K\rRIGHTS OK\nsummary: 0 problems (status 'rejected')" in msg


def test_blame_git_skips_an_old_commit_naming_a_path_outside_the_repo(tmp_path):
    """One old commit's params.yaml names ../outside.parquet (or an absolute path): that commit is reported
    as skipped and the rest of the history is read (before: `git cat-file` refused the whole batch)."""
    from conftest import pdd_cli, sh
    import json
    import shutil

    (tmp_path / "p").mkdir()
    snap, _db = pinned(tmp_path / "p")
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(["git", "init", "-q", "-b", "main"], repo)
    for path in ("../outside.parquet", str(snap), "data/snapshots/snap.parquet"):
        (repo / "params.yaml").write_text(f"snapshot:\n  name: snap\n  path: {path}\n")
        if not path.startswith(("..", "/")):
            (repo / "data/snapshots").mkdir(parents=True)
            shutil.copy(snap, repo / path)
        sh(f"git add -A && git commit -q -m 'snapshot at {path}'", repo)
    proc = pdd_cli(["snapshot", "blame", "m:0.jpg", "--git", "--json"], repo, timeout=120)
    assert proc.returncode == 0, proc.stderr
    b = json.loads(proc.stdout)
    assert [e["event"] for e in b["events"]] == ["entered"] and b["present_at_end"]
    assert [u["why"] for u in b["unavailable"]] == [
        "params.yaml names snapshot.path '../outside.parquet', outside the repository",
        f"params.yaml names snapshot.path {str(snap)!r}, outside the repository"]
    diff = pdd_cli(["diff", "HEAD~2", "HEAD"], repo, timeout=120)
    assert diff.returncode == 2 and diff.stderr.count("\n") == 1
    assert "names snapshot.path '../outside.parquet', outside the repository" in diff.stderr
