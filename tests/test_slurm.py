"""The same targets through Snakemake's SLURM executor on a real single-node SLURM, started by the
project's own tools/local_slurm.py. Skipped, with the reason, where that cluster cannot be started."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from pdd.core.hashing import hash_dir
from conftest import REPO, TINY, make_copy, report, sh

LOCAL_SLURM = REPO / "tools" / "local_slurm.py"


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM needs root")
    was_up = "slurmctld running" in subprocess.run([sys.executable, LOCAL_SLURM, "status"], capture_output=True, text=True).stdout
    proc = subprocess.run([sys.executable, LOCAL_SLURM, "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"local SLURM did not start: {proc.stderr.strip()}")
    yield
    if not was_up and os.environ.get("PDD_KEEP_SLURM") != "1":
        subprocess.run([sys.executable, LOCAL_SLURM, "stop"], capture_output=True, timeout=120)


@pytest.mark.slurm
def test_snakemake_on_slurm_builds_the_whole_chain_with_the_same_bytes(slurm, tiny_chain_snakemake, tmp_path):
    """Every stage to models/pipeline as its own sbatch job gives the bytes of a local `snakemake -c2`
    (the session's build, which test_generator also finds identical to `dvc repro`'s)."""
    from pdd.build.dag import PIPELINE

    local = tiny_chain_snakemake
    cluster = make_copy(tmp_path / "cluster", TINY)
    t0 = time.monotonic()
    out = sh(["timeout", "-k", "10", "1200", "snakemake", "--profile", "workflow/profiles/slurm", "models/pipeline"],
             cluster, timeout=1230)
    report(f"SLURM: sbatch build of the tiny chain to models/pipeline, {len(PIPELINE)} stages: "
           f"{time.monotonic() - t0:.0f} s wall")
    log = out.stdout + out.stderr
    assert "steps (100%) done" in log and "sbatch" in log.lower() or "slurm" in log.lower(), log[-2000:]
    for stage in PIPELINE:
        for target in stage.outs.values():
            assert hash_dir(cluster / target) == hash_dir(local / target), target
    assert shutil.which("sbatch")


@pytest.mark.slurm
def test_a_failing_stage_fails_the_slurm_run_and_shows_the_job_log(slurm, tmp_path):
    # the demo's rows are public domain ("pd"): an audit that allows only cc0 must fail the build
    cluster = make_copy(tmp_path / "cluster", {**TINY, "audit": {"allowed_licences": ["cc0"]}})
    out = sh(["timeout", "-k", "10", "600", "snakemake", "--profile", "workflow/profiles/slurm", "data/export"],
             cluster, check=False, timeout=630)
    log = out.stdout + out.stderr
    assert out.returncode != 0
    assert "not in ['cc0']" in log, log[-3000:]   # the failed job's log, shown by snakemake
    assert not (cluster / "data/export").exists()
