"""Nothing pinned is overwritten and a killed pin cleans up after itself (issue 9, "Never lose or
overwrite what is pinned"); snapshot names are validated (one-line errors, `NAME.parquet` accepted)."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from pdd import cli, snapshot
from pdd.core.hashing import hash_file
from pdd.core.errors import PddError
from pdd.source import pin
from pdd.source.importers import import_folder
from pdd.source.store import Store
from helpers_images import jpeg
from conftest import REPO

DEMO = REPO / "data/snapshots"


def store_with(tmp_path, n=3, shade=0):
    folder = tmp_path / f"m{shade}"
    folder.mkdir()
    with open(folder / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "title", "license"])
        for i in range(n):
            (folder / f"{i}.jpg").write_bytes(jpeg((i * 40, shade, 90)))
            w.writerow([f"{i}.jpg", f"T {i}", "CC0"])
    db = tmp_path / f"db{shade}.duckdb"
    with Store(db) as store:
        import_folder(store, folder, folder / "meta.csv")
    return db


def test_pin_refuses_to_overwrite_a_committed_snapshot_the_store_does_not_know(tmp_path):
    """A rebuild command whose store holds other rows pinned over the committed demo file."""
    out = tmp_path / "snapshots"
    out.mkdir()
    for f in ("openclipart-0.18.parquet", "openclipart-0.18.json"):
        shutil.copy(DEMO / f, out / f)
    before = {f.name: hash_file(f) for f in out.iterdir()}
    with Store(store_with(tmp_path)) as store:
        with pytest.raises(PddError, match="already exists with other content") as err:
            pin.pin(store, "openclipart-0.18", out)
        assert store.query("SELECT count(*) AS n FROM snapshots")[0]["n"] == 0
    assert "\n" not in str(err.value)
    assert {f.name: hash_file(f) for f in out.iterdir()} == before   # untouched, no temp file left


@pytest.mark.parametrize("which", ["parquet", "json"])
def test_either_file_alone_with_other_content_refuses(tmp_path, which):
    a, b = store_with(tmp_path, shade=0), store_with(tmp_path, shade=200)
    with Store(a) as store:
        pin.pin(store, "v1", tmp_path / "one")
    (tmp_path / "two").mkdir()
    shutil.copy(tmp_path / "one" / f"v1.{which}", tmp_path / "two" / f"v1.{which}")
    with Store(b) as store, pytest.raises(PddError, match=f"v1.{which} already exists with other content"):
        pin.pin(store, "v1", tmp_path / "two")
    assert [p.name for p in (tmp_path / "two").iterdir()] == [f"v1.{which}"]


def test_same_hash_but_other_bytes_is_not_overwritten(tmp_path):
    with Store(store_with(tmp_path)) as store:
        info = pin.pin(store, "v1", tmp_path / "s")
        path = tmp_path / "s" / "v1.parquet"
        import pyarrow.parquet as pq
        pq.write_table(pq.read_table(path), path)   # same rows and metadata, other writer settings
        assert snapshot.read_meta(path)["pdd.content_hash"] == info["content_hash"]
        before = hash_file(path)
        with pytest.raises(PddError, match="already exists with other content"):
            pin.pin(store, "v1", tmp_path / "s")
        assert hash_file(path) == before


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pdd.source import pin
    from pdd.source.store import Store
    db, out, when = sys.argv[1], sys.argv[2], sys.argv[3]
    store = Store(db)
    if when == "writing":      # killed while the Parquet is being written
        real = store.read_blob
        def read_blob(sha):
            os.kill(os.getpid(), signal.SIGKILL)
        store.read_blob = read_blob
    else:                      # killed after the files, before the store records the pin
        def transaction():
            os.kill(os.getpid(), signal.SIGKILL)
        store.transaction = transaction
    pin.pin(store, "v1", out)
""")


def killed_pin(db, out, when):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(db), str(out), when], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def test_three_killed_pins_leave_temp_files_the_next_pin_removes(tmp_path):
    db, out = store_with(tmp_path), tmp_path / "s"
    for _ in range(3):
        killed_pin(db, out, "writing")
    # each pin removes the temp files of the killed ones before it (three kills used to leave three)
    assert len(list(out.glob(".v1.parquet.tmp-*"))) == 1 and not (out / "v1.parquet").exists()
    live = out / f".other.parquet.tmp-{os.getpid()}"   # a live process's temp file stays
    live.write_bytes(b"x")
    with Store(db) as store:
        pin.pin(store, "v1", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(["v1.parquet", "v1.json", live.name])
    assert snapshot.verify(out / "v1.parquet")[1] == []


def test_pin_killed_before_recording_is_completed_by_pinning_again(tmp_path):
    db, out = store_with(tmp_path), tmp_path / "s"
    killed_pin(db, out, "recording")
    assert (out / "v1.parquet").exists() and not list(out.glob(".*tmp*"))
    with Store(db) as store:
        assert store.query("SELECT count(*) AS n FROM snapshots")[0]["n"] == 0
        before = hash_file(out / "v1.parquet")
        info = pin.pin(store, "v1", out)
        assert store.query("SELECT content_hash FROM snapshots WHERE name = 'v1'")[0]["content_hash"] == info["content_hash"]
    assert hash_file(out / "v1.parquet") == before


@pytest.mark.parametrize("name", ["x" * 101, "x" * 300, "_x", ".x", "a/b", "a b", "", "é"])
def test_invalid_snapshot_names_are_one_line_errors(tmp_path, capsys, name):
    db = store_with(tmp_path)
    for action in ("pin", "show", "verify"):
        rc = cli.main(["snapshot", action, name, "--db", str(db), "--out-dir", str(tmp_path / "s")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, (action, err)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_name_with_parquet_suffix_is_the_name(tmp_path, capsys):
    db = store_with(tmp_path)
    out = tmp_path / "s"
    assert cli.main(["snapshot", "pin", "v1.parquet", "--db", str(db), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "v1.json", "v1.parquet"]   # README.md: the dataset card
    capsys.readouterr()
    for action in ("show", "verify"):
        assert cli.main(["snapshot", action, "v1.parquet", "--db", str(db), "--out-dir", str(out)]) == 0, capsys.readouterr().err
    assert snapshot.resolve("v1.parquet", out) == out / "v1.parquet"


def test_out_dir_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    db = store_with(tmp_path)
    (tmp_path / "file").write_text("x")
    rc = cli.main(["snapshot", "pin", "v1", "--db", str(db), "--out-dir", str(tmp_path / "file")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not a folder" in err
