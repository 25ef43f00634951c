"""`pdd verify`: a fresh tiny build of the demo verifies green; one byte changed in an export shard (on disk,
or recorded in dvc.lock with `dvc commit`) turns it red, naming the export stage and no other."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import TINY, make_copy, sh


def verify(root: Path, *stages: str):
    return sh([sys.executable, "-m", "pdd", "verify", *stages], root, check=False, timeout=1800)


def rows_of(stdout: str) -> list[list[str]]:
    """The table's rows: [stage, output, record, expected, got, same]."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("stage "))
    out = []
    for ln in lines[start + 1:]:
        parts = ln.split()
        if len(parts) >= 6 and parts[-1] in ("yes", "NO"):
            out.append([parts[0], parts[1], " ".join(parts[2:-3]), *parts[-3:]])
    return out


@pytest.mark.slow   # two tiny builds of the whole chain (~8 min on 2 cores); CI runs the export check below, and
# tests/test_generator.py's two identical clean builds cover the whole chain's reproducibility
def test_verify_is_green_on_a_fresh_tiny_build(tmp_path):
    root = make_copy(tmp_path / "ref", TINY)
    sh(["dvc", "repro"], root, timeout=1800)
    proc = verify(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = rows_of(proc.stdout)
    from pdd.build import dag

    assert {r[0] for r in rows} == {s.name for s in dag.PIPELINE}
    assert all(r[-1] == "yes" for r in rows)
    assert {r[2] for r in rows} == {"dvc.lock", "manifest", "files here"}
    assert "verified: all" in proc.stdout


def test_one_byte_in_an_export_shard_is_named(tmp_path):
    root = make_copy(tmp_path / "ref", TINY)
    sh(["dvc", "repro", "export"], root, timeout=1200)
    ok = verify(root, "export")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert {r[0] for r in rows_of(ok.stdout)} == {"audit", "curate", "export"}

    shard = root / "data/export" / json.loads((root / "data/export/index.json").read_text())["shards"]["train"][0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = verify(root, "export")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    rows = rows_of(bad.stdout)
    assert [r[:3] for r in rows if r[-1] == "NO"] == [["export", "data/export", "files here"]]
    assert all(r[-1] == "yes" for r in rows if r[0] in ("audit", "curate"))
    assert "DIFFERENT: export" in bad.stdout and "the file here was modified after the build" in bad.stdout

    # the changed shard recorded as if it had been built (dvc commit), the local copy gone: the record is red
    sh(["dvc", "commit", "-f", "export"], root)
    shutil.rmtree(root / "data/export")
    rec = verify(root, "export")
    assert rec.returncode == 1
    assert [r[:3] for r in rows_of(rec.stdout) if r[-1] == "NO"] == [["export", "data/export", "dvc.lock"]]
    assert "export: must reproduce on any machine" in rec.stdout


def test_unknown_stage_is_one_line(tmp_path):
    root = make_copy(tmp_path / "ref", TINY)
    proc = verify(root, "nosuch")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("pdd: error: unknown stage 'nosuch'")


def test_a_missing_snapshot_is_one_line(tmp_path):
    root = make_copy(tmp_path / "ref", {**TINY, "snapshot": {"name": "gone", "path": "data/snapshots/gone.parquet"}})
    proc = verify(root, "audit")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "gone.parquet" in err, err


def test_report_says_why_a_stage_is_red():
    from pdd.build.verify import Row, report

    rows = [Row("export", "data/export", "files here", "a" * 64, "b" * 64), Row("unet", "models/unet", "dvc.lock", "c" * 64, "d" * 64),
            Row("sample", "models/samples", "no record", None, "e" * 64), Row("audit", "data/audit", "manifest", "f" * 64, "f" * 64)]
    text = report(rows)
    assert "DIFFERENT: export, unet, sample" in text
    assert "export: must reproduce on any machine" in text
    assert "unet: float training/sampling" in text
    assert "sample: nothing to compare with" in text
    assert "verified: all 1 checks of 1 stage(s)" in report(rows[-1:])


def test_a_flipped_byte_on_the_same_machine_is_not_blamed_on_the_hardware():
    """Issue 25: a byte flipped in models/unet after the build. The rebuild matches dvc.lock and the manifest
    (the hashes recorded at build time); only the files here differ. Before, the report said the float
    stage is bit-identical only on the same machine type; the hardware is not what changed."""
    from pdd.build.verify import Row, report

    rows = [Row("unet", "models/unet", "dvc.lock", "a" * 64, "a" * 64),
            Row("unet", "models/unet", "manifest", "b" * 64, "b" * 64),
            Row("unet", "models/unet", "files here", "c" * 64, "b" * 64)]
    text = report(rows)
    assert "DIFFERENT: unet" in text and "float training" not in text and "machine type" not in text
    assert ("unet: models/unet here differs from what its recorded inputs produce, and the rebuild matches the hashes "
            "recorded when it was built (dvc.lock, manifest): the file here was modified after the build") in text


def test_the_hardware_is_named_only_when_the_platform_differs(tmp_path):
    from pdd.build.verify import Row, manifest_platform, platform_difference, report

    def manifest(folder, torch):
        out = tmp_path / folder / "models" / "unet"
        out.parent.mkdir(parents=True)
        out.with_name("unet.manifest.json").write_text(json.dumps(
            {"versions": {"torch": torch, "python": "3.11.7"}, "determinism": {"device": "cpu", "deterministic": True}}))
        return manifest_platform(out)

    here, same, other = manifest("a", "2.13.0+cpu"), manifest("b", "2.13.0+cpu"), manifest("c", "2.13.0+cu128")
    assert platform_difference(same, here) == "" and platform_difference(None, here) is None
    assert platform_difference(other, here) == "torch 2.13.0+cpu here, 2.13.0+cu128 recorded"
    rebuilt = [Row("unet", "models/unet", "dvc.lock", "a" * 64, "d" * 64, platform_difference(same, here)),
               Row("unet", "models/unet", "files here", "a" * 64, "d" * 64, platform_difference(same, here))]
    text = report(rebuilt)
    assert "float training" not in text and "on the platform the record names" in text
    elsewhere = [Row(r.stage, r.output, r.record, r.expected, r.got, platform_difference(other, here)) for r in rebuilt]
    assert "float training/sampling" in report(elsewhere) and "torch 2.13.0+cpu here, 2.13.0+cu128 recorded" in report(elsewhere)
