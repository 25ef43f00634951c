"""Issue 25, class 6: a FIFO (or a socket, device or folder) given as the metadata CSV, the exclusion list,
an image or the snapshot to pin from is never opened: one line naming the path and what it is, exit 2
(an image inside a folder import is rejected with that reason, as a corrupt image is). Every command
runs in a subprocess with a 30 s timeout: before the fix they hung on open()."""
from __future__ import annotations

import csv
import os
import socket
import stat
import subprocess
import sys

import duckdb
import pytest

from conftest import REPO, pdd_cli
from helpers_images import jpeg
from pdd.core import files

LIMIT = 30


def cli(tmp_path, *args):
    proc = pdd_cli([str(a) for a in args], cwd=tmp_path, timeout=LIMIT)
    return proc.returncode, proc.stdout, proc.stderr


def one_line(rc, err, *words):
    assert rc == 2 and err.count("\n") == 1 and err.startswith("pdd: error: ") and "Traceback" not in err, (rc, err)
    for w in words:
        assert w in err, err


def museum(tmp_path, rows=(("a.jpg", "A", "CC0"),)):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "a.jpg").write_bytes(jpeg())
    with open(folder / "meta.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "title", "license"], *rows])
    return folder


def fifo(path):
    os.mkfifo(path)
    return path


def test_metadata_fifo_is_refused_not_waited_on(tmp_path):
    folder = museum(tmp_path)
    rc, _, err = cli(tmp_path, "import-folder", folder, "--metadata", fifo(tmp_path / "meta.fifo"), "--db", tmp_path / "s.duckdb")
    one_line(rc, err, "meta.fifo", "the metadata CSV is a FIFO (named pipe)", "--metadata")


def test_metadata_socket_and_device_are_refused(tmp_path):
    folder = museum(tmp_path)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "meta.sock"))
    try:
        rc, _, err = cli(tmp_path, "import-folder", folder, "--metadata", tmp_path / "meta.sock", "--db", tmp_path / "s.duckdb")
        one_line(rc, err, "meta.sock", "is a socket")
    finally:
        sock.close()
    rc, _, err = cli(tmp_path, "import-folder", folder, "--metadata", "/dev/null", "--db", tmp_path / "s.duckdb")
    one_line(rc, err, "/dev/null", "is a character device")


def test_an_image_that_is_a_fifo_is_rejected_and_the_others_imported(tmp_path):
    folder = museum(tmp_path, rows=(("a.jpg", "A", "CC0"), ("b.jpg", "B", "CC0")))
    fifo(folder / "b.jpg")
    db = tmp_path / "s.duckdb"
    rc, out, err = cli(tmp_path, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", db)
    assert rc == 0, err
    con = duckdb.connect(str(db), read_only=True)
    rows = dict(con.execute("SELECT file_id, reason FROM current_revisions ORDER BY file_id").fetchall())
    con.close()
    assert rows["m:a.jpg"].startswith("accepted"), rows
    assert rows["m:b.jpg"] == "rejected: file 'b.jpg' is a FIFO (named pipe), not a regular file", rows


@pytest.fixture()
def store(tmp_path):
    folder = museum(tmp_path)
    db = tmp_path / "s.duckdb"
    rc, _, err = cli(tmp_path, "import-folder", folder, "--metadata", folder / "meta.csv", "--db", db)
    assert rc == 0, err
    return db


def tables(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("sources", "files", "revisions", "labels", "snapshots", "snapshot_rows")}
    finally:
        con.close()


def test_pin_with_a_fifo_exclusion_list_is_refused_and_writes_nothing(tmp_path, store):
    excl = fifo(tmp_path / "exclusions.tsv")
    before = tables(store)
    rc, _, err = cli(tmp_path, "snapshot", "pin", "s1", "--db", store, "--out-dir", tmp_path / "snaps", "--exclusions", excl)
    one_line(rc, err, "exclusions.tsv", "the exclusion list is a FIFO (named pipe)", "--exclusions")
    assert not (tmp_path / "snaps").exists() or not any((tmp_path / "snaps").iterdir())
    assert tables(store) == before and stat.S_ISFIFO(os.lstat(excl).st_mode)


def test_pin_from_a_fifo_and_exclude_into_a_fifo_are_refused(tmp_path, store):
    source = fifo(tmp_path / "old.parquet")
    rc, _, err = cli(tmp_path, "snapshot", "pin", "s2", "--from", source, "--db", store,
                     "--out-dir", tmp_path / "snaps", "--exclusions", tmp_path / "none.tsv")
    # the CLI's snapshot lookup says what it is (it said "not found" before)
    one_line(rc, err, "old.parquet is a FIFO (named pipe), not a snapshot file")
    os.mkfifo(tmp_path / "snaps-fifo")   # a bare name that is a FIFO here is that file too, not a pinned name
    rc, _, err = cli(tmp_path, "snapshot", "pin", "s2", "--from", "snaps-fifo", "--db", store,
                     "--out-dir", tmp_path / "snaps", "--exclusions", tmp_path / "none.tsv")
    one_line(rc, err, "snapshot snaps-fifo: snaps-fifo is a FIFO (named pipe)")
    # pin_from itself (the library call) refuses it before the Parquet reader would wait on the pipe
    script = ("from pdd.source import pin\nfrom pdd.core.errors import PddError\ntry:\n"
              f"    pin.pin_from({str(source)!r}, 's2', {str(tmp_path / 'snaps')!r})\n"
              "except PddError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=LIMIT)
    assert "old.parquet: the snapshot to pin from is a FIFO (named pipe)" in proc.stdout, proc.stdout + proc.stderr
    excl = fifo(tmp_path / "exclusions.tsv")
    rc, _, err = cli(tmp_path, "exclude", "m:a.jpg", "--reason", "takedown", "--db", store, "--exclusions", excl)
    one_line(rc, err, "exclusions.tsv", "is a FIFO (named pipe)")
    assert stat.S_ISFIFO(os.lstat(excl).st_mode)  # not replaced by a list that lost what the pipe would say


def test_an_exclusion_list_that_is_a_folder_or_a_device_is_refused(tmp_path, store):
    (tmp_path / "excl.d").mkdir()
    for excl, kind in ((tmp_path / "excl.d", "is a folder"), ("/dev/null", "is a character device")):
        rc, _, err = cli(tmp_path, "snapshot", "pin", "s3", "--db", store, "--out-dir", tmp_path / "snaps", "--exclusions", excl)
        one_line(rc, err, str(excl), kind)


def test_open_regular_does_not_block_on_a_fifo_and_reads_regular_files(tmp_path):
    path = fifo(tmp_path / "p")
    with pytest.raises(files.NotRegularFile, match="is a FIFO"):
        files.open_regular(path, "the thing")
    (tmp_path / "f").write_bytes(b"a\r\nb")
    assert files.read_regular(tmp_path / "f", "the thing") == b"a\r\nb"
    with files.open_regular(tmp_path / "f", "the thing", "r", encoding="utf-8") as fh:
        assert fh.read() == "a\nb"
    with pytest.raises(FileNotFoundError):
        files.read_regular(tmp_path / "missing", "the thing")
    assert files.not_regular(tmp_path / "missing") is None and files.not_regular(tmp_path) == "a folder"
