#!/usr/bin/env python3
"""The README's commands, needing nothing but Python 3.11 and git:

    python3 tasks.py build      # set up .venv (pinned deps), then `dvc repro` on the demo snapshot
    python3 tasks.py test       # set up .venv, then the test suite (what CI runs: .ci/run)
    python3 tasks.py test-all   # also the slow end-to-end and SLURM tests
    python3 tasks.py bench      # the benchmarks in bench/

Dependencies are pinned in one place, requirements.lock; .venv is rebuilt when it changes.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".pdd-installed"


def run(cmd: list[str], **kw) -> int:
    print("+ " + " ".join(map(str, cmd)), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, **kw)


def check(cmd: list[str], **kw) -> None:
    rc = run(cmd, **kw)
    if rc:
        sys.exit(f"tasks.py: `{' '.join(map(str, cmd))}` failed with exit code {rc}")


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(VENV)
    e.setdefault("DVC_NO_ANALYTICS", "1")
    e.setdefault("HF_HUB_OFFLINE", "1")  # never download weights or data sets: everything is trained here
    e.setdefault("TRANSFORMERS_OFFLINE", "1")
    return e


def setup() -> None:
    want = hashlib.sha256((ROOT / "requirements.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    if sys.version_info[:2] < (3, 11):
        sys.exit(f"tasks.py: Python 3.11 or newer is needed (this is {sys.version.split()[0]})")
    usable = (BIN / "python").exists() and subprocess.call(
        [BIN / "python", "-m", "pip", "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    if not usable:  # missing, or left half-made by an interrupted set-up: make it again
        if run([sys.executable, "-m", "venv", "--clear", VENV]) != 0:
            # Debian without python3-venv: make the venv without pip, then install pip into it
            check([sys.executable, "-m", "venv", "--clear", "--without-pip", VENV])
            check([sys.executable, "-m", "pip", "--python", BIN / "python", "install", "-q", "pip"])
    check([BIN / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", ROOT / "requirements.lock"])
    check([BIN / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation", "-e", ROOT])
    STAMP.write_text(want + "\n")


def build() -> int:
    setup()
    rc = run([BIN / "dvc", "repro"], env=env())
    if rc:
        return rc
    return run([BIN / "python", "-m", "pdd.build.report"], env=env())


def test(extra: list[str], everything: bool = False) -> int:
    setup()
    args = [BIN / "python", "-m", "pytest", *(["-m", ""] if everything else []), *extra]
    rc = run(args, env=env())
    return 0 if rc == 5 and extra else rc  # 5 = no tests collected for an explicit selection


def bench() -> int:
    setup()
    rc = 0
    for script in sorted((ROOT / "bench").glob("*.py")):
        rc |= run([BIN / "python", script], env=env())
    return rc


def main(argv: list[str]) -> int:
    cmd, rest = (argv[0], argv[1:]) if argv else ("build", [])
    if cmd == "setup":
        setup()
        return 0
    if cmd == "build":
        return build()
    if cmd == "test":
        return test(rest)
    if cmd == "test-all":
        return test(rest, everything=True)
    if cmd == "bench":
        return bench()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
