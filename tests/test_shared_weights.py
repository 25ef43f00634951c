"""Shared weights, the README's path for a team: one clone builds and pushes to a DVC remote (a local folder
here), a fresh clone of the same commit gets every artifact with `dvc repro --pull` without running a stage,
and then both engines say there is nothing to do: `dvc status`, and `snakemake -n` after the documented
`dvc status -q && snakemake --touch` (Snakemake goes by file times, and a pull writes files in no DAG order)."""
import shutil

import pytest

from pdd.build import dag
from pdd.core.hashing import hash_dir, hash_file
from conftest import report, sh

pytestmark = pytest.mark.slow   # a tiny build of the whole chain (shared with the other slow tests), then ~30 s


def outputs(root) -> dict:
    outs = {}
    for stage in dag.PIPELINE:
        for rel in [*stage.outs.values(), *stage.manifests.values(), *stage.metrics.values()]:
            path = root / rel
            outs[rel] = hash_dir(path) if path.is_dir() else hash_file(path)
    return outs


def test_a_fresh_clone_pulls_every_artifact_and_both_engines_have_nothing_to_do(tiny_chain_dvc, tmp_path):
    built, _ = tiny_chain_dvc
    a, remote = tmp_path / "a", tmp_path / "remote"
    shutil.copytree(built, a, symlinks=True)
    # clone A: the team's remote in the committed DVC config, the build pushed, dvc.lock and manifests committed
    sh(["dvc", "remote", "add", "-d", "team", str(remote)], a)
    sh(["dvc", "push"], a)
    sh(["git", "add", "-A"], a)
    sh(["git", "commit", "-qm", "build"], a)
    expected = outputs(a)

    # clone B: a fresh clone of that commit, nothing built
    b = tmp_path / "b"
    sh(["git", "clone", "-q", str(a), str(b)], tmp_path)
    assert not (b / "models/pipeline").exists()
    pulled = sh(["dvc", "repro", "--pull"], b)
    assert "Running stage" not in pulled.stdout, pulled.stdout[-3000:]
    assert not (b / "models/.checkpoints").exists()          # nothing trained
    assert outputs(b) == expected                             # every artifact, manifests included
    assert sh(["dvc", "status", "-q"], b, check=False).returncode == 0
    assert "up to date" in sh(["dvc", "status"], b).stdout

    before = sh(["snakemake", "-n"], b).stdout                # by file times Snakemake would rerun jobs here
    report(f"shared weights: snakemake -n after dvc repro --pull, before --touch: "
           f"{'nothing to do' if 'Nothing to be done' in before else 'plans jobs'}")
    sh("dvc status -q && snakemake --touch -c1", b)           # the README's line: touch only what DVC verified
    assert "Nothing to be done" in sh(["snakemake", "-n"], b).stdout
    assert "up to date" in sh(["dvc", "status"], b).stdout
    assert outputs(b) == expected
    assert sh(["git", "status", "--porcelain"], b).stdout == ""


def test_the_touch_is_guarded_by_dvc_status(tiny_chain_dvc, tmp_path):
    """`dvc status -q` fails when an input changed, so the README's line touches nothing then, and Snakemake
    still plans the stage (and what follows): the touch never hides a real change."""
    built, _ = tiny_chain_dvc
    b = tmp_path / "b"
    shutil.copytree(built, b, symlinks=True)
    sh("dvc status -q && snakemake --touch -c1", b)
    assert "Nothing to be done" in sh(["snakemake", "-n"], b).stdout
    with open(b / "pdd/train/unet.py", "a", encoding="utf-8") as f:
        f.write("\n# a change to the unet stage's code\n")
    assert sh(["dvc", "status", "-q"], b, check=False).returncode == 1
    assert sh("dvc status -q && snakemake --touch -c1", b, check=False).returncode != 0
    plan = sh(["snakemake", "-n"], b).stdout
    assert "rule unet:" in plan and "rule pipeline:" in plan and "rule audit:" not in plan
