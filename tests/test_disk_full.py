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
