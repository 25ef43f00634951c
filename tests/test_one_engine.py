"""Issue 25, minor case: `dvc repro` and `snakemake` building one folder at once. Each engine removes a
stage's old outputs before running it, so the other's stages found their inputs gone ("input ... not
found", which sent people looking for a build step they had not run). A stage run under one engine while
the other is building the same folder is refused in one line naming the other run. Real dvc and snakemake."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import TINY, engine_env, make_copy, sh
from pdd.build import runner

# a Snakemake run that holds the folder for a while (a real snakemake process working here)
BUSY = "rule busy:\n    output: 'busy.txt'\n    shell: 'sleep 60 && touch busy.txt'\n"


def busy_snakemake(root):
    """A real snakemake run working in ROOT (started in its own session), once it holds the folder."""
    (root / "busy.smk").write_text(BUSY)
    snake = subprocess.Popen(["snakemake", "-s", "busy.smk", "-c1", "busy.txt"], cwd=root, env=engine_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (root / ".snakemake" / "locks").is_dir() or not any((root / ".snakemake" / "locks").iterdir()):
        assert snake.poll() is None and time.monotonic() < deadline, "snakemake did not start"
        time.sleep(0.2)
    return snake


def stop(snake):
    os.killpg(snake.pid, signal.SIGTERM)   # the session this test started: snakemake and its sleep
    try:
        snake.wait(timeout=60)
    except subprocess.TimeoutExpired:      # a SIGTERM that lands while snakemake is still starting can go unheeded
        os.killpg(snake.pid, signal.SIGKILL)
        snake.wait(timeout=60)


def test_another_engine_in_this_folder_is_found(tmp_path, monkeypatch):
    """The check the runner makes: a snakemake process working in this folder is found and named, for a
    stage under DVC (here: as if); one working elsewhere, or a run of the stage's own engine, is not."""
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    snake = busy_snakemake(tmp_path / "here")
    try:
        monkeypatch.chdir(tmp_path / "here")
        assert runner.other_engines_here({os.getppid(): "dvc"}) == [(snake.pid, "snakemake")]
        assert runner.other_engines_here({os.getppid(): "snakemake"}) == []
        monkeypatch.chdir(tmp_path / "elsewhere")
        assert runner.other_engines_here({os.getppid(): "dvc"}) == []
    finally:
        stop(snake)


@pytest.mark.slow   # a copy of the repository, a real snakemake and two real `dvc repro` (~30 s)
def test_dvc_stage_is_refused_while_snakemake_builds_the_folder(tmp_path):
    root = make_copy(tmp_path / "ref", TINY)
    snake = busy_snakemake(root)
    try:
        proc = sh(["dvc", "repro", "audit"], root, check=False, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        line = next(ln for ln in out.splitlines() if ln.startswith("pdd: error:"))
        assert f"stage audit: a snakemake run (pid {snake.pid}) is building this folder" in line, out
        assert "while this dvc run is" in line and "wait for it to finish" in line, line
        assert not (root / "data/audit").exists()
    finally:
        stop(snake)
    # the folder is free again: the same command builds
    sh(["dvc", "repro", "audit"], root, timeout=300)
    assert (root / "data/audit/report.json").is_file()
