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
                m = json.loads(Path(metric).read_text())
                brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()
                         if isinstance(v, (int, float, str)) or (isinstance(v, list) and len(v) <= 4 and
                                                                 all(isinstance(x, (int, float, str)) for x in v))}
                print(f"  {'':10s} {metric:24s} {brief}")
    pipe, samples, grid = Path("models/pipeline"), Path("models/samples"), Path("metrics/sample_grid.png")
    if (pipe / "model_index.json").exists():
        print(f"\nPipeline (a diffusers folder): {pipe.resolve()}")
        print(f'  load it:  DiffusionPipeline.from_pretrained("{pipe}")  (no project code needed)')
    else:
        print("\nPipeline: not built (run `dvc repro` to build it)")
    if samples.exists():
        print(f"Sample images: {samples.resolve()}  (grid: {grid.resolve()})")
    else:
        print("Sample images: none yet (the sample stage has not run)")
    table = Path("models/quality/table.md")
    if table.exists():
        print(f"\nHow good they are (stage quality, every figure beside real images and chance; "
              f"{Path('metrics/quality_grid.png').resolve()}):\n")
        print(table.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
