"""The real engines on the demo snapshot with tiny params, in clean copies of the repository:
DVC builds audit+export, a second repro does nothing, a param change reruns exactly the stage
that reads it, Snakemake builds the same bytes, and two clean builds are identical."""
import json

import pytest

from pdd.core.hashing import hash_dir
from conftest import TINY, make_copy, sh, update_params

TARGETS = ("data/audit", "data/export")


def hashes(root) -> dict:
    return {t: hash_dir(root / t) for t in TARGETS}


@pytest.fixture(scope="module")
def dvc_build(tmp_path_factory):
    root = make_copy(tmp_path_factory.mktemp("dvc") / "repo", TINY)
    first = sh(["dvc", "repro", "export"], root)
    return root, first, hashes(root)


def test_dvc_repro_builds_audit_and_export(dvc_build):
    root, first, _ = dvc_build
    assert "Running stage 'audit'" in first.stdout and "Running stage 'export'" in first.stdout
    for t in TARGETS:
        m = json.loads((root / f"{t}.manifest.json").read_text())
        assert m["output"]["sha256"] == hash_dir(root / t)
    assert json.loads((root / "metrics/export.json").read_text())["resolutions"] == [16]
    assert "export:" in (root / "dvc.lock").read_text()


def test_second_repro_does_nothing(dvc_build):
    root, _, before = dvc_build
    again = sh(["dvc", "repro", "export"], root)
    assert "Running stage" not in again.stdout and "didn't change, skipping" in again.stdout
    assert hashes(root) == before


def test_snakemake_builds_identical_bytes(dvc_build, tmp_path):
    root, _, dvc_hashes = dvc_build
    smk = make_copy(tmp_path / "smk", TINY)
    sh(["snakemake", "-c2", *TARGETS], smk)
    assert hashes(smk) == dvc_hashes
    assert (smk / "logs/export.log").exists()
    again = sh(["snakemake", "-c2", *TARGETS], smk)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_two_clean_dvc_builds_are_identical(dvc_build, tmp_path):
    _, _, first = dvc_build
    other = make_copy(tmp_path / "again", TINY)
    sh(["dvc", "repro", "export"], other)
    assert hashes(other) == first


def test_changing_export_resolution_reruns_export_only(dvc_build):
    root, _, before = dvc_build
    update_params(root, {"export": {"resolutions": [24]}})
    out = sh(["dvc", "repro", "export"], root)
    assert "Stage 'audit' didn't change, skipping" in out.stdout
    assert "Running stage 'export'" in out.stdout
    after = hashes(root)
    assert after["data/audit"] == before["data/audit"] and after["data/export"] != before["data/export"]
    assert json.loads((root / "metrics/export.json").read_text())["resolutions"] == [24]


def test_snakemake_reruns_on_param_change_too(tmp_path):
    root = make_copy(tmp_path / "smk", TINY)
    sh(["snakemake", "-c2", "data/export"], root)
    audit_before = hash_dir(root / "data/audit")
    update_params(root, {"export": {"resolutions": [24]}})
    out = sh(["snakemake", "-c2", "data/export"], root)
    text = out.stdout + out.stderr
    assert "rule export:" in text and "rule audit:" not in text
    assert hash_dir(root / "data/audit") == audit_before


def test_a_tampered_snapshot_does_not_compile(tmp_path):
    import pyarrow.parquet as pq
    import pyarrow as pa

    import yaml

    root = make_copy(tmp_path / "r", TINY)
    rel = yaml.safe_load((root / "params.yaml").read_text())["snapshot"]["path"]
    assert rel == "data/snapshots/openclipart-0.18.parquet"  # the committed demo snapshot
    path = root / rel
    table = pq.read_table(path)
    kinds = table.column("licence_kind").to_pylist()
    kinds[5] = "cc-by-sa-4.0"
    pq.write_table(table.set_column(table.schema.get_field_index("licence_kind"), "licence_kind", pa.array(kinds)), path)
    out = sh(["dvc", "repro", "export"], root, check=False)
    assert out.returncode != 0
    assert "audit failed" in out.stderr and table.column("file_id")[5].as_py() in out.stderr
    assert not (root / "data/export").exists()


def artifact_hashes(lock_text: str, stages=None) -> dict:
    """stage -> {out path: md5} from a dvc.lock, leaving out the manifests and statements (they name git revisions and
    library versions: bookkeeping, not artifact bytes)."""
    from ruamel.yaml import YAML

    lock = YAML(typ="safe").load(lock_text)
    return {name: {o["path"]: o.get("md5") for o in st.get("outs", []) if not o["path"].endswith((".manifest.json", ".intoto.json"))}
            for name, st in lock["stages"].items() if stages is None or name in stages}


@pytest.mark.slow
def test_committed_dvc_lock_is_reproduced_by_a_fresh_clone(tmp_path):
    """`git clone && dvc repro` rebuilds every stage with the default params and must produce exactly
    the hashes committed in dvc.lock (the build is reproducible, and the lock is not stale).
    CPU float results (CLIP weights) can differ between CPU types; a mismatch says so."""
    from conftest import REPO

    head = sh(["git", "rev-parse", "--verify", "HEAD"], REPO, check=False)
    if head.returncode != 0:
        pytest.skip("not a git checkout with commits")
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], tmp_path)
    committed = artifact_hashes((clone / "dvc.lock").read_text())
    sh(["dvc", "repro"], clone, timeout=3600)
    diff = "" if artifact_hashes((clone / "dvc.lock").read_text()) == committed else sh(["git", "diff", "--", "dvc.lock"], clone).stdout
    assert diff == "", (
        "dvc.lock of HEAD is not what a fresh clone builds: if you changed code or params, run `dvc repro` and "
        "commit dvc.lock; if only models/clip differs on another CPU type, rebuild the lock on this machine\n" + diff[:3000])


def test_committed_dvc_lock_holds_for_the_data_stages_in_a_fresh_clone(tmp_path):
    """The cheap, CPU-type-independent part of the check above, on every CI run: a fresh clone's
    `dvc repro tokenizer` (audit, curate, export, tokenizer) leaves the committed dvc.lock unchanged."""
    from conftest import REPO

    head = sh(["git", "rev-parse", "--verify", "HEAD"], REPO, check=False)
    if head.returncode != 0:
        pytest.skip("not a git checkout with commits")
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], tmp_path)
    if sh(["git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "pdd", "stages"], REPO).stdout.strip():
        pytest.skip("the checkout has uncommitted changes to the build; the clone would test HEAD, not them")
    stages = ("audit", "curate", "export", "tokenizer")
    committed = artifact_hashes((clone / "dvc.lock").read_text(), stages)
    sh(["dvc", "repro", "tokenizer"], clone, timeout=900)
    rebuilt = artifact_hashes((clone / "dvc.lock").read_text(), stages)
    diff = "" if rebuilt == committed else sh(["git", "diff", "--", "dvc.lock"], clone).stdout
    assert diff == "", "dvc.lock of HEAD is stale for audit/export/tokenizer: run `dvc repro` and commit it\n" + diff[:3000]
