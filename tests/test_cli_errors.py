"""Bad command-line input is a one-line error, never a traceback (issue 9, "No traceback")."""
import csv

import pytest

from pdd import cli
from helpers_images import jpeg


def museum(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg())
    with open(folder / "meta.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "title", "license"], ["a.jpg", "A", "CC0"]])
    return folder


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line(rc, err):
    assert rc == 2 and err.count("\n") == 1 and err.startswith("pdd: error: ") and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["CC0", "PD", "public domain", "cc-by-nc"])
def test_label_licence_is_validated(tmp_path, capsys, value):
    folder = museum(tmp_path)
    rc, _out, err = run(capsys, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", tmp_path / "db.duckdb",
                        "--label-licence", value)
    one_line(rc, err)
    assert "--label-licence" in err


def test_label_licence_known_value_imports(tmp_path, capsys):
    folder = museum(tmp_path)
    rc, out, _err = run(capsys, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", tmp_path / "db.duckdb",
                        "--label-licence", "cc0")
    assert rc == 0 and "1 accepted" in out


def test_metadata_naming_a_folder(tmp_path, capsys):
    folder = museum(tmp_path)
    rc, _out, err = run(capsys, "import-folder", folder, "--metadata", folder, "--db", tmp_path / "db.duckdb")
    one_line(rc, err)
    assert "is a folder" in err


@pytest.mark.parametrize("db", ["file/db.duckdb", "folder"])
def test_db_that_cannot_be_a_database(tmp_path, capsys, db):
    folder = museum(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    rc, _out, err = run(capsys, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", tmp_path / db)
    one_line(rc, err)


def test_db_that_is_not_a_duckdb_file(tmp_path, capsys):
    folder = museum(tmp_path)
    (tmp_path / "junk.duckdb").write_bytes(b"not a database at all" * 100)
    rc, _out, err = run(capsys, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", tmp_path / "junk.duckdb")
    one_line(rc, err)


def test_stray_parquet_in_the_snapshots_folder_is_skipped_with_a_warning(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = museum(tmp_path)
    db, snaps = tmp_path / "db.duckdb", tmp_path / "s"
    assert run(capsys, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", db)[0] == 0
    assert run(capsys, "snapshot", "pin", "v1", "--db", db, "--out-dir", snaps)[0] == 0
    pq.write_table(pa.table({"x": [1, 2]}), snaps / "stray.parquet")
    (snaps / "garbage.parquet").write_bytes(b"PAR1 nope")
    rc, out, err = run(capsys, "snapshot", "list", "--db", db, "--out-dir", snaps)
    assert rc == 0 and out.startswith("v1 ") and out.count("\n") == 1
    assert "stray.parquet skipped" in err and "garbage.parquet skipped" in err and "Traceback" not in err
