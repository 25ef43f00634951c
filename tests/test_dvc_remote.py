"""Real (large) snapshots are tracked with DVC and pushed to a DVC remote; a fresh clone pulls one
and builds from it exactly as from the committed demo snapshot."""
import shutil

from pdd.build.hashing import hash_dir
from conftest import TINY, make_copy, sh, update_params


def test_dvc_tracked_snapshot_round_trips_through_a_remote(tmp_path):
    maintainer = make_copy(tmp_path / "maintainer", TINY)
    remote = tmp_path / "remote"
    # stand-in for a large snapshot: a copy of the demo under a new name, tracked by DVC instead of git
    shutil.copy(maintainer / "data/snapshots/demo-aic-267.parquet", maintainer / "data/snapshots/big-v1.parquet")
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
    update_params(clone, {"snapshot": {"name": "big-v1", "path": "data/snapshots/big-v1.parquet"}})
    missing = sh(["dvc", "repro", "export"], clone, check=False)
    assert missing.returncode != 0
    sh(["dvc", "pull", "data/snapshots/big-v1.parquet.dvc"], clone)
    sh(["dvc", "repro", "export"], clone)
    # same rows as the demo, so the same export bytes as a build from the git-committed demo
    demo = make_copy(tmp_path / "demo", TINY)
    sh(["dvc", "repro", "export"], demo)
    assert hash_dir(clone / "data/export") == hash_dir(demo / "data/export")
