"""The committed build records describe the committed code, so that a clean build of this commit (a fresh
clone's `dvc repro`) rewrites no tracked file and leaves `git status` clean:

- every manifest beside a stage output records the sha256 of each project file the stage ran; those
  must be the files as committed (edit a file a stage runs, bookkeeping included, and the stage must be
  rerun: `dvc repro -f -s STAGE` refreshes its manifest without changing its output);
- every code dependency in dvc.lock has the md5 of the committed file (else `dvc status` is not clean);
- beside every manifest is the provenance statement that manifest gives (pdd/build/provenance.py), so the
  statements a clean build writes are the committed ones.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from conftest import REPO
from pdd.build.provenance import stale_statements

MANIFESTS = sorted([*REPO.glob("data/*.manifest.json"), *REPO.glob("models/*.manifest.json")])


def stale_manifest_records(root) -> list[str]:
    problems = []
    for m in sorted([*root.glob("data/*.manifest.json"), *root.glob("models/*.manifest.json")]):
        data = json.loads(m.read_text(encoding="utf-8"))
        stage = data.get("stage", m.name.split(".")[0])
        for rel, sha in sorted(data.get("code", {}).get("files", {}).items()):
            path = root / rel
            now = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            if now != sha:
                problems.append(f"{m.relative_to(root)} records {rel} {'(now missing)' if now is None else 'at another version'}: "
                                f"rerun the stage (dvc repro -f -s {stage}) and commit its manifest")
    return problems


def stale_lock_code_deps(root) -> list[str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    problems = []
    for stage, entry in lock["stages"].items():
        for dep in entry.get("deps", []):
            rel = dep["path"]
            if not rel.endswith(".py"):
                continue
            path = root / rel
            now = hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else None
            if now != dep.get("md5"):
                problems.append(f"dvc.lock: {stage} depends on {rel} at another version: dvc repro {stage}")
    return problems


@pytest.mark.skipif(not MANIFESTS, reason="no committed manifests")
def test_committed_manifests_record_the_committed_code():
    assert stale_manifest_records(REPO) == []


@pytest.mark.skipif(not MANIFESTS, reason="no committed manifests")
def test_committed_statements_are_the_committed_manifests():
    assert stale_statements(REPO) == []


def test_committed_lock_records_the_committed_code():
    assert stale_lock_code_deps(REPO) == []


def test_a_stale_record_is_caught(tmp_path):
    """Both checks can fail: a copy of the records with one code file edited."""
    for rel in ["dvc.lock", *(p.relative_to(REPO).as_posix() for p in MANIFESTS)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((REPO / rel).read_bytes())
    lock = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))
    code = sorted({d["path"] for e in lock["stages"].values() for d in e.get("deps", []) if d["path"].endswith(".py")})
    for rel in code:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((REPO / rel).read_bytes())
    for m in MANIFESTS:
        for rel in json.loads(m.read_text(encoding="utf-8")).get("code", {}).get("files", {}):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes((REPO / rel).read_bytes())
    assert stale_lock_code_deps(tmp_path) == [] and stale_manifest_records(tmp_path) == []
    edited = tmp_path / "pdd/train/loop.py"
    edited.write_bytes(edited.read_bytes() + b"# edited\n")
    assert any("pdd/train/loop.py" in p for p in stale_lock_code_deps(tmp_path))
    if MANIFESTS:
        assert any("pdd/train/loop.py" in p and "dvc repro -f -s" in p for p in stale_manifest_records(tmp_path))
