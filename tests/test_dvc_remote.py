"""Real (large) snapshots are tracked with DVC and pushed to a DVC remote; a fresh clone pulls one
and builds from it exactly as from the same snapshot committed in git (as the demo snapshot is)."""
import shutil

from pdd.core.hashing import hash_dir
from conftest import TINY, make_copy, sh, update_params


BIG = {"snapshot": {"name": "big-v1", "path": "data/snapshots/big-v1.parquet"}}


def test_dvc_tracked_snapshot_round_trips_through_a_remote(tmp_path, generated_snapshot):
    maintainer = make_copy(tmp_path / "maintainer", TINY)
    remote = tmp_path / "remote"
    # stand-in for a large snapshot: a small pinned one (tests/snapshot_factory.py), tracked by DVC instead of git
    shutil.copy(generated_snapshot.path, maintainer / "data/snapshots/big-v1.parquet")
    sh(["dvc", "add", "data/snapshots/big-v1.parquet"], maintainer)
    sh(["dvc", "remote", "add", "-d", "store", str(remote)], maintainer)
    sh(["dvc", "push"], maintainer)
    assert (maintainer / "data/snapshots/big-v1.parquet.dvc").exists()
    assert ".parquet" not in "".join(p.name for p in remote.rglob("*") if p.is_file())  # content-addressed
    sh(["git", "add", "-A"], maintainer)
    sh(["git", "commit", "-qm", "track big-v1 with DVC"], maintainer)

    # a newcomer clones (git only: the snapshot's bytes are not in git) and pulls it
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(maintainer), str(clone)], tmp_path)
    assert not (clone / "data/snapshots/big-v1.parquet").exists()
    update_params(clone, BIG)
    missing = sh(["dvc", "repro", "export"], clone, check=False)
    assert missing.returncode != 0
    sh(["dvc", "pull", "data/snapshots/big-v1.parquet.dvc"], clone)
    sh(["dvc", "repro", "export"], clone)
    assert (clone / "data/snapshots/big-v1.parquet").read_bytes() == generated_snapshot.path.read_bytes()
    # the same snapshot committed in git (as the demo snapshot is) builds the same export bytes
    in_git = make_copy(tmp_path / "in-git", {**TINY, **BIG})
    shutil.copy(generated_snapshot.path, in_git / "data/snapshots/big-v1.parquet")
    sh(["git", "add", "data/snapshots/big-v1.parquet", "params.yaml"], in_git)
    sh(["git", "commit", "-qm", "commit big-v1 in git"], in_git)
    sh(["dvc", "repro", "export"], in_git)
    assert sh(["git", "cat-file", "-e", "HEAD:data/snapshots/big-v1.parquet"], in_git, check=False).returncode == 0
    assert hash_dir(clone / "data/export") == hash_dir(in_git / "data/export")
    assert len(list((clone / "data/export").rglob("*.parquet"))) > 0
