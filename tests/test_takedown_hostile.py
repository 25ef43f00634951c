"""Issue 25, class 2: a takedown can be bypassed. Ids are validated where they enter (one rule,
pdd/core/ids.py, for the folder, Open Clip Art and Commons sources) and where they are written
(`pdd exclude`); data/exclusions.tsv is parsed strictly (an editor's BOM, CRLF or stray whitespace is
read correctly, anything else is refused naming file and line); an entry that matches nothing is a
warning in `pin` and in the audit; ids are printed escaped by `diff`, `snapshot show`, `blame` and
the model card. Every list below is pinned with: the victim is gone, or the command refused."""
import csv
import os
import shutil
import types

import pytest

from pdd import card, exclusions, snapshot
from pdd.core.errors import PddError
from pdd.core.ids import check_id, id_problem, printable
from pdd.rights import audit
from pdd.rights.text import classify_licence_text
from pdd.source import pin
from pdd.source.commons.records import build_record
from pdd.source.importers import import_folder
from pdd.source.openclipart import import_openclipart
from pdd.source.store import FileRecord, Store
from conftest import pdd_cli as pdd
from helpers_images import jpeg
from test_openclipart import png_bytes, svg, write_tree

HOSTILE = ["a\nb", "a\tb", "a\rb", "a\x00b", "a\x1b[2Kb", "a\x7fb", "a\x85b", "a\x9b31mb", "a\u2028b", "a\u2029b",
           "a\u200bb", "a\u202eb", "a\x0cb", "a\x1cb", " lead", "trail ", "trail\u00a0", "a\udcffb"]


def store_copy(generated_snapshot, dest):
    """A writable copy of the generated store (database and blobs) in DEST."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(generated_snapshot.db, dest / "s.duckdb")
    shutil.copytree(generated_snapshot.db.parent / "blobs", dest / "blobs")
    return dest / "s.duckdb"


def store_files(db) -> list[tuple]:
    with Store(db, read_only=True) as s:
        return [tuple(r.values()) for r in s.query("SELECT file_id, external_id FROM files ORDER BY file_id")]


@pytest.mark.parametrize("bad", HOSTILE, ids=ascii)
def test_the_one_rule(bad):
    assert id_problem(bad) and id_problem("openclipart:animals/birds/duck") is None
    with pytest.raises(PddError) as err:
        check_id(bad, "id")
    assert "\n" not in str(err.value) and repr(bad) in str(err.value)
    assert printable(bad).isprintable() and printable("mus:0001 ü") == "mus:0001 ü"


def _csv(folder, rows):
    path = folder / "meta.csv"
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "id", "license"])
        w.writerows(rows)
    return path


@pytest.mark.parametrize("bad", ["x\nmus:good", "x\tr\t2026-01-01", "x\x1b[2K", "x\u2028y", "x\x00"], ids=ascii)
def test_folder_import_refuses_a_bad_id_and_keeps_the_store(tmp_path, bad):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg((10, 20, 30)))
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        import_folder(store, folder, _csv(folder, [["a.jpg", "good", "CC0"]]), source_id="mus", id_column="id")
    before = store_files(db)
    with Store(db) as store, pytest.raises(PddError) as err:
        import_folder(store, folder, _csv(folder, [["a.jpg", "good", "CC0"], ["a.jpg", bad, "CC0"]]),
                      source_id="mus", id_column="id")
    msg = str(err.value)
    assert "\n" not in msg and ("meta.csv" in msg) and (repr(bad) in msg or "CSV" in msg)
    assert store_files(db) == before == [("mus:good", "good")]


@pytest.mark.parametrize("key", ["animals/du\nck", "animals/du\x1b[31mck", "animals/duck\t", "animals/du\x85ck"], ids=ascii)
def test_openclipart_import_refuses_a_bad_id_and_keeps_the_store(tmp_path, key):
    good = write_tree(tmp_path / "good", {"animals/birds/duck": (svg(), png_bytes())})
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        import_openclipart(store, good, workers=1)
    before = store_files(db)
    bad = write_tree(tmp_path / "bad", {"animals/birds/duck": (svg(), png_bytes()), key: (svg(), png_bytes())})
    with Store(db) as store, pytest.raises(PddError) as err:
        import_openclipart(store, bad, workers=1)
    assert "\n" not in str(err.value) and repr(key) in str(err.value) and "rename" in str(err.value)
    assert store_files(db) == before


def test_commons_pageid_goes_through_the_same_rule():
    client = types.SimpleNamespace(api_url="http://127.0.0.1:1/w/api.php")
    with pytest.raises(PddError) as err:
        build_record(client, {"pageid": "1\n2", "title": "File:x.jpg"}, None, None)
    assert repr("1\n2") in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def clone(tmp_path, generated_snapshot):
    root = tmp_path / "clone"
    (root / "data/snapshots").mkdir(parents=True)
    for f in (generated_snapshot.path, generated_snapshot.path.with_suffix(".json")):
        shutil.copy(f, root / "data/snapshots" / f.name)
    (root / "data/exclusions.tsv").write_text("file_id\treason\tdate\n")
    ids = [r["file_id"] for r in snapshot.read_table(generated_snapshot.path, ["file_id"]).to_pylist()]
    return root, generated_snapshot.path.stem, ids


def test_exclude_refuses_an_id_it_cannot_write(clone, tmp_path, generated_snapshot):
    root, _name, ids = clone
    db = store_copy(generated_snapshot, tmp_path)
    hostile = f"x\t-\t2026-01-01\n{ids[7]}"  # stored by an importer of before this rule
    with Store(db) as store:
        store.record(FileRecord(source_id="mus", external_id=hostile, title="t", status="rejected", reason="rejected: x"))
    before = (root / "data/exclusions.tsv").read_bytes()
    for db_arg in (str(db), "data/none.duckdb"):
        r = pdd(["exclude", f"mus:{hostile}", "--reason", "takedown", "--db", db_arg], root)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert repr(f"mus:{hostile}") in r.stderr
    assert (root / "data/exclusions.tsv").read_bytes() == before
    bad_date = pdd(["exclude", ids[7], "--reason", "takedown", "--date", "2026-13-45"], root)
    assert bad_date.returncode == 2 and "not a calendar date" in bad_date.stderr
    assert (root / "data/exclusions.tsv").read_bytes() == before


# hand-edited lists that exclude the victim V: "gone" = read correctly, "refused" = one line naming file:line
LISTS = {
    "bom, no header": (b"\xef\xbb\xbf{V}\tlegal\t2026-01-02\n", "gone"),
    "bom and header": (b"\xef\xbb\xbffile_id\treason\tdate\n{V}\tlegal\t2026-01-02\n", "gone"),
    "crlf": (b"file_id\treason\tdate\r\n{V}\tlegal\t2026-01-02\r\n", "gone"),
    "cr only": (b"file_id\treason\tdate\r{V}\tlegal\t2026-01-02\r", "gone"),
    "leading space": (b"file_id\treason\tdate\n  {V}\tlegal\t2026-01-02\n", "gone"),
    "space before tab": (b"{V} \tlegal \t 2026-01-02\n", "gone"),
    "trailing tab": (b"{V}\tlegal\t2026-01-02\t\n", "gone"),
    "nbsp after id": ("{V}\u00a0\tlegal\t2026-01-02\n".encode(), "gone"),
    "header with spaces": (b"file_id reason date\n{V}\tlegal\t2026-01-02\n", "refused"),
    "header tab/space mix": (b"file_id\treason date\n{V}\tlegal\t2026-01-02\n", "refused"),
    "tabs turned to spaces": (b"{V} legal 2026-01-02\n", "refused"),
    "zero-width space in id": ("{V}\u200b\tlegal\t2026-01-02\n".encode(), "refused"),
    "escape in reason": (b"{V}\tle\x1b[2Kgal\t2026-01-02\n", "refused"),
    "latin-1": (b"{V}\tl\xe9gal\t2026-01-02\n", "refused"),
    "utf-16": ("file_id\treason\tdate\n{V}\tlegal\t2026-01-02\n".encode("utf-16"), "refused"),
    "bad date": (b"{V}\tlegal\t2026-13-45\n", "refused"),
    "not a date": (b"{V}\tlegal\tyesterday\n", "refused"),
    "directory": (None, "refused"),
    "fifo": (None, "refused"),
}


@pytest.mark.parametrize("case", list(LISTS))
def test_pinning_with_a_hand_edited_list_removes_the_id_or_refuses(clone, case):
    root, name, ids = clone
    victim = ids[7]
    data, expected = LISTS[case]
    lst = root / "data/exclusions.tsv"
    lst.unlink()
    if case == "directory":
        lst.mkdir()
    elif case == "fifo":
        os.mkfifo(lst)
    else:
        lst.write_bytes(data.replace(b"{V}", victim.encode()) if b"{V}" in data
                        else data.decode("utf-16").replace("{V}", victim).encode("utf-16"))
    r = pdd(["snapshot", "pin", "t1", "--from", name], root, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    out = root / "data/snapshots/t1.parquet"
    if expected == "gone":
        assert r.returncode == 0, r.stderr
        assert victim not in [x["file_id"] for x in snapshot.read_table(out, ["file_id"]).to_pylist()]
        assert f"1 left out now: {victim}" in r.stdout and "warning" not in r.stderr
    else:
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert str(lst.relative_to(root)) in r.stderr and not out.exists()
        # the audit refuses the same list the same way (it can never pass on a list it cannot read)
        with pytest.raises(PddError):
            audit.audit_snapshot(root / f"data/snapshots/{name}.parquet", ["pd", "cc0"], exclusions_path=lst)


def test_an_entry_that_matches_nothing_is_a_warning_in_pin_and_audit(clone, capsys):
    root, name, ids = clone
    lst = root / "data/exclusions.tsv"
    lst.write_text(f"file_id\treason\tdate\n{ids[7]}\tlegal\t2026-01-02\nmus:00O7\ttypo\t2026-01-02\n")
    r = pdd(["snapshot", "pin", "t1", "--from", name], root, check=True)
    assert "pdd: warning: 1 exclusion(s) match no file of" in r.stderr and "mus:00O7" in r.stderr
    assert r.stderr.count("\n") == 1
    report = audit.audit_snapshot(root / "data/snapshots/t1.parquet", ["pd", "cc0"], exclusions_path=lst)
    err = capsys.readouterr().err
    assert report["passed"] and "mus:00O7" in err and ids[7] in err  # t1 has neither: both named
    audit.audit_snapshot(root / "data/snapshots/t1.parquet", ["pd", "cc0"], exclusions_path=root / "none.tsv")
    assert capsys.readouterr().err == ""


def test_store_pin_warns_too(tmp_path, generated_snapshot, capsys):
    db = store_copy(generated_snapshot, tmp_path)
    with Store(db) as store:
        pin.pin(store, "w1", tmp_path / "snaps", exclusions.read(_list(tmp_path, "mus:0001\tx\t2026-01-02\nmus:nope\tx\t2026-01-02\n")))
    err = capsys.readouterr().err
    assert "mus:nope" in err and "mus:0001" not in err


def _list(tmp_path, body):
    p = tmp_path / "ex.tsv"
    p.write_text("file_id\treason\tdate\n" + body)
    return p


HIDDEN = "zz\x1b[2K\rRIGHTS REGRESSION\nforged 0 added"


@pytest.fixture
def hostile_snapshot(tmp_path, generated_snapshot):
    """The generated store plus one accepted row whose id an importer of before this rule let in."""
    db = store_copy(generated_snapshot, tmp_path)
    with Store(db) as store:
        store.record(FileRecord(source_id="mus", external_id=HIDDEN, title="t", status="accepted",
                                reason="accepted: cc0", licence=classify_licence_text("CC0 1.0"),
                                data=jpeg((1, 2, 3)), mime="image/jpeg", width=32, height=32))
        pin.pin(store, "hostile", tmp_path / "data/snapshots")
    shutil.copy(generated_snapshot.path, tmp_path / "data/snapshots")
    shutil.copy(generated_snapshot.path.with_suffix(".json"), tmp_path / "data/snapshots")
    return tmp_path, db


def _clean_output(text: str):
    assert "\x1b" not in text and "\r" not in text and "\x85" not in text
    assert not any(line.startswith(("RIGHTS", "forged")) for line in text.splitlines())


def test_diff_show_blame_print_ids_escaped(hostile_snapshot, generated_snapshot):
    root, db = hostile_snapshot
    fid = f"mus:{HIDDEN}"
    d = pdd(["diff", generated_snapshot.path.stem, "hostile"], root)
    assert d.returncode == 1 and f"+ {printable(fid)}" in d.stdout
    _clean_output(d.stdout)
    b = pdd(["snapshot", "blame", fid, "--db", str(db)], root, check=True)
    assert b.stdout.startswith(f"file {printable(fid)}\n")
    _clean_output(b.stdout)
    (root / "ex.tsv").write_text("")
    s = pdd(["snapshot", "show", "hostile", "--db", str(db)], root, check=True)
    _clean_output(s.stdout)
    # the takedown of such an id: refused with one line, the list untouched
    r = pdd(["exclude", fid, "--reason", "x", "--db", str(db), "--exclusions", "ex.tsv"], root)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and (root / "ex.tsv").read_text() == ""


def test_card_code_spans_cannot_be_broken_out_of():
    assert card._code("openclipart:shapes/stars/star_51pt04step") == "`openclipart:shapes/stars/star_51pt04step`"
    assert card._code("samples/0038.png") == "`samples/0038.png`"
    assert card._code("a`b") == "``a`b``" and card._code("`x") == "`` `x ``" and card._code("a``b") == "```a``b```"
    assert card._code("a\x1b[2Kb\nc") == "`a\\x1b[2Kb\\nc`"
