"""Shared test fixtures: a clean copy of the repository to run the real engines in."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdd.core import params as params_mod
from pdd.core.config import deep_update  # noqa: F401  (tests import it from here)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
AIC = SHARED / "datasets" / "aic-paintings-267"  # reference material at run time only, never copied in
FIXTURES = SHARED / "fixtures" / "commons"
BIN = Path(sys.executable).parent
# fixed identity and dates: two copies of the same tree get the same commit hash
GIT_ENV = {"GIT_AUTHOR_NAME": "pdd test", "GIT_AUTHOR_EMAIL": "test@pdd.invalid", "GIT_COMMITTER_NAME": "pdd test",
           "GIT_COMMITTER_EMAIL": "test@pdd.invalid", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def engine_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update({"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"})
    env.update(GIT_ENV)
    return env


def sh(cmd, cwd, check=True, timeout=900, **kw) -> subprocess.CompletedProcess:
    """Run a command (list or shell string) with the venv on PATH; on failure show its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=engine_env(), shell=isinstance(cmd, str), capture_output=True,
                          text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def pdd_cli(args, cwd, check=False, timeout=900) -> subprocess.CompletedProcess:
    """`python -m pdd ARGS` in CWD with this checkout first on the path (a venv's editable install may
    point at another checkout; `pdd` on PATH would run that one's code)."""
    env = {**engine_env(), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pdd", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pdd {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def tracked_files(root: Path = REPO) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (root / p).is_file()]


_PRISTINE: list[Path] = []


def pristine_tree() -> Path:
    """The working tree as it was when the test session first asked for it, copied once, so every
    copy in one session is of the same code even while someone edits the checkout."""
    if not _PRISTINE:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="pdd-pristine-"))
        for rel in tracked_files():
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target)
        _PRISTINE.append(base)
    return _PRISTINE[0]


def make_copy(dest: Path, params_update: dict | None = None) -> Path:
    """A clean checkout of the working tree (no build outputs, no store) as its own git repo."""
    shutil.copytree(pristine_tree(), dest, symlinks=True)
    # the committed dvc.lock/metrics describe the repo's own build; a clean copy starts without them
    for rel in ("dvc.lock",):
        (dest / rel).unlink(missing_ok=True)
    shutil.rmtree(dest / "metrics", ignore_errors=True)
    if params_update:
        update_params(dest, params_update)
    sh(["git", "init", "-q", "-b", "main"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest


def update_params(root: Path, update: dict) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(deep_update(params, update), sort_keys=False))


# Tiny params so the real engines run in seconds on 2 cores: the smoke preset users run too
# (`pdd params set-args params-smoke.yaml | xargs dvc exp run`), read as pdd reads params (YAML 1.2).
TINY = params_mod.read(REPO / "params-smoke.yaml")


def tiny_cfgs(update: dict | None = None) -> dict:
    """Typed configs of the repository's params.yaml with TINY (and then `update`) applied."""
    import copy

    from pdd.core import config

    return config.load(REPO / "params.yaml", deep_update(copy.deepcopy(TINY), copy.deepcopy(update or {})))


def pytest_sessionfinish(session, exitstatus):
    for base in _PRISTINE:
        shutil.rmtree(base, ignore_errors=True)


# Figures a test measures (wall times, counts) and wants seen in CI's log, not only in a failure's output:
# report(line) keeps them; they are printed at the end of the run, under "figures measured by the tests".
_FIGURES: list[str] = []


def report(line: str) -> None:
    _FIGURES.append(line)


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tiny_chain_dvc(tmp_path_factory):
    """The tiny chain built once per test session by `dvc repro` in a clean copy: (root, dvc's output).
    Tests read it or copy it (shutil.copytree(root, dest, symlinks=True)) before changing anything."""
    root = make_copy(tmp_path_factory.mktemp("tiny-dvc") / "repo", TINY)
    return root, sh(["dvc", "repro"], root, timeout=1200)


@pytest.fixture(scope="session")
def tiny_chain_snakemake(tmp_path_factory):
    """The tiny chain to models/pipeline, built once per test session by `snakemake -c2` in a clean copy, for
    the tests that compare another clean build with it (dvc repro in test_generator, sbatch in test_slurm)."""
    root = make_copy(tmp_path_factory.mktemp("tiny-snakemake") / "repo", TINY)
    sh(["snakemake", "-c2", "models/pipeline"], root, timeout=1200)
    return root


@pytest.fixture(scope="session")
def generated_snapshot(tmp_path_factory):
    """A small real snapshot pinned at test time (tests/snapshot_factory.py): 57 generated images through
    the folder importer, with pd and cc0 files, CC0 and CC BY-SA labels, and rejected rows in the store."""
    import snapshot_factory

    return snapshot_factory.build(tmp_path_factory.mktemp("generated-snapshot"))


@pytest.fixture
def repo_copy(tmp_path):
    """A fresh copy of the repository with tiny params; run engines in it with sh(...)."""
    return make_copy(tmp_path / "repo", TINY)
