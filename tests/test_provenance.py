"""Provenance statements from real stage runs (the session's tiny `dvc repro` of the whole chain): beside every
manifest an in-toto Statement v1 with a SLSA v1 provenance predicate that the in-toto reference protos parse
strictly, made from the manifest alone, with a time only under SOURCE_DATE_EPOCH; and the engines know them as
outputs (DVC: uncached outs, Snakemake: rule outputs, git: committed like manifests). Two clean builds (DVC and
Snakemake) writing byte-identical statements: tests/test_generator.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, engine_env
from pdd.build import dag
from pdd.build.manifest import tree_hash
from pdd.build.provenance import (LIBRARY_DIGEST, PREDICATE_TYPE, STATEMENT_TYPE, TREE_DIGEST, chain_tree, statement,
                                  statement_bytes, stale_statements)
from pdd.core.hashing import hash_dir, hash_file

OUTS = tuple(v for s in dag.PIPELINE for v in s.outs.values())


def stage(root, name, **env) -> subprocess.CompletedProcess:
    """`python -m stages.NAME` in ROOT (that copy's code and git revision, as DVC runs it), with ENV added."""
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=root, env={**engine_env(), **env},
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(tiny_chain_dvc):
    return tiny_chain_dvc[0]


def load(root, out):
    return (json.loads((root / f"{out}.manifest.json").read_text()),
            json.loads((root / f"{out}.intoto.json").read_text()))


def test_every_stage_writes_a_slsa_statement_made_from_its_manifest(built):
    for out in OUTS:
        manifest, stmt = load(built, out)
        assert (built / f"{out}.intoto.json").read_bytes() == statement_bytes(statement(manifest))   # one source
        assert stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == PREDICATE_TYPE
        # subjects: every file of the output with its sha256, nothing else
        names = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
        files = sorted(p for p in (built / out).rglob("*") if p.is_file())
        assert names == {p.relative_to(built).as_posix(): hash_file(p) for p in files}
        assert chain_tree(stmt) == manifest["output"]["sha256"] == hash_dir(built / out)
        build, run = stmt["predicate"]["buildDefinition"], stmt["predicate"]["runDetails"]
        assert build["externalParameters"] == {"stage": manifest["stage"], "params": manifest["params"],
                                               "seed": manifest["seed"]}
        assert run["builder"]["version"]["pd-diffusion"] == manifest["builder"]["version"]
        assert run["byproducts"][0] == {"name": f"{out}.manifest.json", "mediaType": "application/json",
                                        "digest": {"sha256": hash_file(built / f"{out}.manifest.json")}}
        assert "metadata" not in run   # no time without SOURCE_DATE_EPOCH
        deps = build["resolvedDependencies"]
        by_name = {d.get("name"): d for d in deps}
        for rel, sha in manifest["code"]["files"].items():   # every source file that ran, by digest
            assert by_name[rel]["digest"] == {"sha256": sha}
        assert {"uri": f"git+https://github.com/pd-diffusion/pd-diffusion",
                "digest": {"gitCommit": manifest["code"]["revision"]}} in deps
        torch = by_name["torch"]
        assert torch["uri"] == f"pkg:pypi/torch@{manifest['versions']['torch']}" and len(torch["digest"][LIBRARY_DIGEST]) == 64
        assert by_name["python"]["uri"].startswith("pkg:generic/python@")


def test_dependencies_chain_by_digest(built):
    snap = "data/snapshots/openclipart-0.18.parquet"
    audit = load(built, "data/audit")[1]
    export = load(built, "data/export")[1]
    tok = load(built, "models/tokenizer")[1]
    deps = {d.get("name"): d for d in export["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps[snap]["digest"] == {"sha256": hash_file(built / snap)}
    assert deps[snap]["mediaType"] == "application/vnd.apache.parquet"
    assert deps["data/audit"]["digest"] == {TREE_DIGEST: chain_tree(audit)}   # the upstream statement's subjects
    tdeps = {d.get("name"): d for d in tok["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert tdeps["data/export"]["digest"] == {TREE_DIGEST: chain_tree(export)}
    checked = 0
    for out in OUTS:   # every stage's upstream outputs, by the digest their own statements' subjects give
        for dep in load(built, out)[1]["predicate"]["buildDefinition"]["resolvedDependencies"]:
            if TREE_DIGEST in dep.get("digest", {}):
                assert dep["digest"][TREE_DIGEST] == chain_tree(load(built, dep["name"])[1]), (out, dep["name"])
                checked += 1
    assert checked >= 20


def test_statements_parse_as_in_toto_slsa_provenance_v1(built):
    """The in-toto attestation reference protos, strictly: no field outside the Statement and the SLSA v1 schema."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    for out in OUTS:
        stmt = load(built, out)[1]
        pb = json_format.Parse(json.dumps(stmt), statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
        json_format.Parse(json.dumps(stmt["predicate"]), provenance_pb2.Provenance())


def test_source_date_epoch_is_the_only_time(built, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(built, root, symlinks=True)
    assert stage(root, "tokenizer", SOURCE_DATE_EPOCH="1767225600").returncode == 0
    stmt = json.loads((root / "models/tokenizer.intoto.json").read_text())
    assert stmt["predicate"]["runDetails"]["metadata"] == {"startedOn": "2026-01-01T00:00:00Z",
                                                            "finishedOn": "2026-01-01T00:00:00Z"}
    stmt["predicate"]["runDetails"].pop("metadata")
    assert stmt == load(built, "models/tokenizer")[1]
    before = (root / "models/tokenizer.intoto.json").read_bytes()
    bad = stage(root, "tokenizer", SOURCE_DATE_EPOCH="yesterday")
    assert bad.returncode == 2 and "SOURCE_DATE_EPOCH='yesterday'" in bad.stderr and bad.stderr.count("\n") == 1
    assert (root / "models/tokenizer.intoto.json").read_bytes() == before   # refused before anything ran


def test_a_statement_that_is_not_its_manifests_is_caught(built, tmp_path):
    root = tmp_path / "r"
    for out in OUTS:
        for suffix in (".manifest.json", ".intoto.json"):
            (root / f"{out}{suffix}").parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built / f"{out}{suffix}", root / f"{out}{suffix}")
    assert stale_statements(root) == []
    p = root / "models/tokenizer.intoto.json"
    p.write_bytes(p.read_bytes().replace(b'"seed": ', b'"seed": 1', 1))
    (root / "data/audit.intoto.json").unlink()
    assert [x.split(" ")[0] for x in stale_statements(root)] == ["data/audit.intoto.json", "models/tokenizer.intoto.json"]


def test_engines_and_git_know_the_statements():
    for s in dag.PIPELINE:
        for out in s.outs.values():
            assert f"{out}.intoto.json" in s.manifests.values()
    dvc = (REPO / "dvc.yaml").read_text()
    assert "- models/unet.intoto.json:\n        cache: false" in dvc
    assert "unet_provenance='models/unet.intoto.json'," in (REPO / "workflow/rules/unet.smk").read_text()
    for rel in ("models/unet.intoto.json", "data/export.intoto.json"):   # committed beside the manifests
        ignored = subprocess.run(["git", "check-ignore", "-q", rel], cwd=REPO)
        assert ignored.returncode == 1, f"{rel} is git-ignored"
    for rel in ("models/pipeline.sig", "models/pipeline.intoto.jsonl"):   # the user's signatures are not
        assert subprocess.run(["git", "check-ignore", "-q", rel], cwd=REPO).returncode == 0


def test_tree_hash_is_hash_dir(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.bin").write_bytes(b"\x00\x01")
    (tmp_path / "a" / "y").write_text("y")
    (tmp_path / "a" / "Z").write_text("z")
    files = {p.relative_to(tmp_path / "a").as_posix(): hash_file(p) for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert tree_hash(files) == hash_dir(tmp_path / "a")
