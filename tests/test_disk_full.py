"""Issue 25, minor case: a disk that fills up while `pdd snapshot pin` writes is one line (exit 2), the
temp file is removed and the store is left as it was. The disk is made full by a write that fails with
ENOSPC, in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import duckdb

from conftest import REPO, pdd_cli
from test_nonregular_files import museum

FULL = """import errno, sys
import pyarrow.parquet as pq
def full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
pq.ParquetWriter.write_table = full
from pdd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def tables(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("files", "revisions", "snapshots", "snapshot_rows")}
    finally:
        con.close()


def test_pin_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    folder = museum(tmp_path)
    db = tmp_path / "s.duckdb"
    assert pdd_cli(["import-folder", str(folder), "--metadata", str(folder / "meta.csv"), "--db", str(db)], cwd=tmp_path, timeout=60).returncode == 0
    before = tables(db)
    snaps = tmp_path / "snaps"
    proc = subprocess.run([sys.executable, "-c", FULL, "snapshot", "pin", "s1", "--db", str(db), "--out-dir", str(snaps),
                           "--exclusions", str(tmp_path / "none.tsv")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    err = proc.stderr
    assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and "s1.parquet" in err, err
    assert list(snaps.iterdir()) == []  # no .s1.parquet.tmp-PID left behind
    assert tables(db) == before


FSYNC_FULL = """import errno, os, sys
def full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")
os.fsync = full
from pdd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def blobs_and_tables(db):
    blobs = db.parent / "blobs"
    return sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else [], tables(db)


def test_import_on_a_full_disk_is_one_line_and_leaves_no_temp_blob(tmp_path):
    """The blob write fails (fsync reports ENOSPC, as it may on a full disk): before, a traceback and a
    .SHA.tmp-PID file left in data/blobs; now one line, and the store and its blobs are as they were."""
    from helpers_images import jpeg

    folder = museum(tmp_path)
    db = tmp_path / "s.duckdb"
    assert pdd_cli(["import-folder", str(folder), "--metadata", str(folder / "meta.csv"), "--db", str(db)], cwd=tmp_path, timeout=60).returncode == 0
    before = blobs_and_tables(db)
    (folder / "b.jpg").write_bytes(jpeg((10, 200, 30)))
    (folder / "meta.csv").write_text("file,title,license\na.jpg,A,CC0\nb.jpg,B,CC0\n")
    proc = subprocess.run([sys.executable, "-c", FSYNC_FULL, "import-folder", str(folder), "--metadata", str(folder / "meta.csv"),
                           "--db", str(db)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    err = proc.stderr
    assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and "blobs" in err and "free space in" in err, err
    assert blobs_and_tables(db) == before   # no temp blob, no half-recorded revision


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    import errno

    import pytest

    from pdd.core import hashing
    from pdd.core.errors import PddError

    target = tmp_path / "report.json"
    hashing.write_json(target, {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(hashing.os, "fsync", full)
    with pytest.raises(PddError, match=r"report.json: cannot write it \(No space left on device\); it was left as it was: free space in"):
        hashing.write_json(target, {"new": True})
    assert target.read_text() == '{\n  "old": true\n}\n' and [p.name for p in tmp_path.iterdir()] == ["report.json"]


EXPORT_FULL = """import errno, sys
import pyarrow.parquet as pq
def full(self, *args, **kwargs):
    raise OSError("IOError: error writing bytes to file. Detail: [errno 28] No space left on device")  # as Arrow says it
pq.ParquetWriter.write_table = full
from pdd.build.runner import run
sys.exit(run("export"))
"""


def test_export_on_a_full_disk_is_one_line_and_keeps_the_previous_export(tmp_path):
    from conftest import TINY, make_copy, sh

    root = make_copy(tmp_path / "ref", TINY)
    sh([sys.executable, "-m", "stages.audit"], root, timeout=300)
    sh([sys.executable, "-m", "stages.curate"], root, timeout=300)
    previous = root / "data/export"
    previous.mkdir(parents=True)
    (previous / "index.json").write_text("the previous export\n")
    proc = subprocess.run([sys.executable, "-c", EXPORT_FULL], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=600)
    err = proc.stderr
    assert proc.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "export: the disk is full" in err and "No space left on device" in err and "previous output is kept" in err, err
    assert [p.name for p in previous.iterdir()] == ["index.json"] and (previous / "index.json").read_text() == "the previous export\n"
    assert sorted(p.name for p in (root / "data").iterdir() if ".tmp-" in p.name) == []   # no temp folder left
