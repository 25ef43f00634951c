"""`pdd import-folder` under hostile CSVs (issue 9): repeated header names, ids that several rows
share, and source names that would make file ids collide are refused or rejected, never merged."""
import csv

import pytest

from pdd.core.errors import PddError
from pdd.source.importers import import_folder
from pdd.source.store import Store
from helpers_images import jpeg
from conftest import BIN, sh


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def museum(tmp_path, header, rows, images=("a.jpg", "b.jpg")):
    folder = tmp_path / "museum"
    folder.mkdir()
    for i, name in enumerate(images):
        (folder / name).write_bytes(jpeg((10 * i, 20, 30)))
    return folder, write_csv(folder / "metadata.csv", header, rows)


def revisions(store):
    return store.query("SELECT count(*) AS n FROM revisions")[0]["n"]


def test_repeated_header_name_refuses_the_file(tmp_path):
    folder, csv_path = museum(tmp_path, ["file", "license", "title", "license"], [["a.jpg", "CC BY-SA 4.0", "A", "CC0"]])
    with Store(tmp_path / "db.duckdb") as store:
        with pytest.raises(PddError) as err:
            import_folder(store, folder, csv_path)
        assert revisions(store) == 0
    msg = str(err.value)
    assert str(csv_path) in msg and "'license'" in msg and "more than once" in msg and "\n" not in msg


def test_repeated_header_name_is_a_one_line_cli_error(tmp_path):
    folder, csv_path = museum(tmp_path, ["file", "license", "title", "license"], [["a.jpg", "CC BY-SA 4.0", "A", "CC0"]])
    out = sh([str(BIN / "pdd"), "import-folder", str(folder), "--metadata", str(csv_path), "--db", str(tmp_path / "db.duckdb")],
             tmp_path, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "'license'" in out.stderr and str(csv_path) in out.stderr


def test_same_file_twice_with_different_licences_is_a_conflict(tmp_path):
    # the PD row last: before, the store kept it and the summary said "1 accepted, 1 rejected"
    folder, csv_path = museum(tmp_path, ["file", "title", "license"], [["a.jpg", "A", "CC BY-SA 4.0"], ["a.jpg", "A", "CC0"],
                                                                       ["b.jpg", "B", "CC0"]])
    with Store(tmp_path / "db.duckdb") as store:
        report = import_folder(store, folder, csv_path)
        row = store.latest_revision("museum:a.jpg")
    assert (report.accepted, report.rejected) == (1, 2)
    assert row["status"] == "rejected" and row["reason"] == "rejected: conflict: id appears 2 times in this import"
    assert "CC BY-SA 4.0" in row["provenance"] and row["sha256"] is None
    assert report.reasons == {"rejected: conflict: id appears 2 times in this import": 2}


def test_two_images_with_one_id_column_value_are_both_rejected(tmp_path):
    folder, csv_path = museum(tmp_path, ["file", "title", "license", "aic_id"],
                              [["a.jpg", "A", "CC0", "7"], ["b.jpg", "B", "CC0", "7"]])
    with Store(tmp_path / "db.duckdb") as store:
        report = import_folder(store, folder, csv_path, id_column="aic_id")
        rows = store.query("SELECT * FROM current_revisions")
    assert (report.accepted, report.rejected) == (0, 2)
    assert [(r["file_id"], r["status"]) for r in rows] == [("museum:7", "rejected")]
    assert "a.jpg" in rows[0]["provenance"] and "b.jpg" in rows[0]["provenance"]


def test_reimporting_an_unchanged_csv_adds_no_revisions(tmp_path):
    folder, csv_path = museum(tmp_path, ["file", "title", "license"],
                              [["a.jpg", "A", "CC0"], ["a.jpg", "A2", "Public domain"], ["b.jpg", "B", "CC0"],
                               ["c.jpg", "C", "CC BY 4.0"]])
    with Store(tmp_path / "db.duckdb") as store:
        first = import_folder(store, folder, csv_path)
        n = revisions(store)
        again = import_folder(store, folder, csv_path)
        assert revisions(store) == n == 3
    assert (first.accepted, first.rejected) == (again.accepted, again.rejected) == (1, 3)
    assert again.unchanged == 4


@pytest.mark.parametrize("source", ["a:b", "A", "", "-x", ".x", "a b", "a/b", "x" * 65, "é"])
def test_invalid_source_names_are_refused(tmp_path, source):
    folder, csv_path = museum(tmp_path, ["file", "title", "license"], [["a.jpg", "A", "CC0"]])
    with Store(tmp_path / "db.duckdb") as store:
        with pytest.raises(PddError, match="source name .* is not valid") as err:
            import_folder(store, folder, csv_path, source_id=source)
        assert revisions(store) == 0
    assert "\n" not in str(err.value)


def test_source_with_colon_cannot_collide_with_an_id_with_colon(tmp_path):
    """--source a:b + id c and --source a + id b:c would both be file a:b:c."""
    folder, csv_path = museum(tmp_path, ["file", "title", "license", "id"], [["a.jpg", "A", "CC0", "b:c"]], images=("a.jpg",))
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(jpeg((1, 2, 3)))
    other_csv = write_csv(other / "m.csv", ["file", "title", "license", "id"], [["x.jpg", "X", "CC BY 4.0", "c"]])
    with Store(tmp_path / "db.duckdb") as store:
        import_folder(store, folder, csv_path, source_id="a", id_column="id")
        with pytest.raises(PddError, match="no ':'"):
            import_folder(store, other, other_csv, source_id="a:b", id_column="id")
        assert store.latest_revision("a:b:c")["status"] == "accepted"
        assert revisions(store) == 1


def test_default_source_name_of_a_dot_folder_is_valid(tmp_path):
    folder = tmp_path / ".Hidden Museum"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg())
    csv_path = write_csv(folder / "m.csv", ["file", "title", "license"], [["a.jpg", "A", "CC0"]])
    with Store(tmp_path / "db.duckdb") as store:
        assert import_folder(store, folder, csv_path).accepted == 1
        assert store.latest_revision("hidden-museum:a.jpg")["status"] == "accepted"
