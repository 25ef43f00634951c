"""The same targets through Snakemake's SLURM executor on a real single-node SLURM
(../shared/tools/slurm). Skipped, with the reason, where that cluster cannot be started."""
import os
import shutil
import subprocess

import pytest

from pdd.build.hashing import hash_dir
from conftest import SHARED, TINY, make_copy, sh

SLURM_TOOLS = SHARED / "tools" / "slurm"


@pytest.fixture(scope="module")
def slurm():
    if not (SLURM_TOOLS / "start-slurm.sh").exists():
        pytest.skip("no ../shared/tools/slurm here")
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM needs root")
    proc = subprocess.run(["bash", str(SLURM_TOOLS / "start-slurm.sh")], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"local SLURM did not start: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    yield
    # leave it running if it was already up before this session; stopping is cheap to redo
    if os.environ.get("PDD_KEEP_SLURM") != "1":
        subprocess.run(["bash", str(SLURM_TOOLS / "stop-slurm.sh")], capture_output=True, timeout=120)


@pytest.mark.slurm
def test_snakemake_on_slurm_builds_the_same_bytes(slurm, tmp_path):
    local = make_copy(tmp_path / "local", TINY)
    sh(["snakemake", "-c2", "data/export"], local)
    cluster = make_copy(tmp_path / "cluster", TINY)
    out = sh(["timeout", "-k", "10", "400", "snakemake", "--profile", "workflow/profiles/slurm", "data/export"], cluster,
             timeout=420)
    log = out.stdout + out.stderr
    assert "steps (100%) done" in log and "slurm" in log.lower(), log[-2000:]
    for target in ("data/audit", "data/export"):
        assert hash_dir(cluster / target) == hash_dir(local / target)
    assert shutil.which("sbatch")
