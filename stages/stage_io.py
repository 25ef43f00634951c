"""What every DAG stage's thin main() shares: read --params, prepare a clean output dir."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from stages import params as params_mod
from stages.manifest import manifest_path


def parse_args(stage: str, argv: list[str] | None, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"pdd {stage}", description=f"Build stage `{stage}` (reads its params.yaml section).")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def load_params(path: str) -> dict:
    return params_mod.load(path)


def fresh_dir(path: str | Path) -> Path:
    """An empty output folder: stale files from an older build must never leak into a new one."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    manifest_path(path).unlink(missing_ok=True)  # no manifest may outlive the output it describes
    path.mkdir(parents=True)
    return path


def run_main(main, argv: list[str] | None = None) -> int:
    """Run a stage main(); a PddError becomes one line on stderr and exit code 2 (nothing half-written is kept)."""
    import sys

    from stages.errors import PddError

    try:
        return main(argv) or 0
    except PddError as exc:
        print(f"pdd: error: {exc}", file=sys.stderr)
        return 2
