"""Print, for people, where the build's outputs are (the last step of `python3 tasks.py build`)."""
from __future__ import annotations

import json
from pathlib import Path

from pdd.build import dag


def main() -> int:
    print("\nBuild finished. Outputs (each with a <folder>.manifest.json beside it):")
    for s in dag.PIPELINE:
        for out in s.outs.values():
            state = "built" if Path(f"{out}.manifest.json").exists() else "missing"
            print(f"  {s.name:10s} {out:24s} {state}")
        for metric in s.metrics.values():
            if Path(metric).exists():
                print(f"  {'':10s} {metric:24s} {json.loads(Path(metric).read_text())}")
    samples = Path("data/samples")
    if samples.exists():
        print(f"\nSample images: {samples.resolve()}")
    else:
        print("\nSample images: none yet: the U-Net and sampling stages are not built in this version "
              f"(training images are in {Path('data/export').resolve()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
