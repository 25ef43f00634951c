"""Bench: the training core's two data paths side by side, in one run: images/s of fetching training batches
(in the loop's seeded order, to uint8 tensors) and the peak RSS of each path, each in its own process.

* preloaded: the whole split read into memory, then batches gathered by index;
* streaming: row groups read on demand with a shuffle window that fits the memory budget.

On the demo export (data/export, if built) and on a generated 20,000-row export at 64 px (~245 MB of pixels).

    python bench/loader.py [--rows 20000] [--budget-mb 64] [--batches 300]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(export_dir: str, res: int, mode: str, budget_mb: float, batches: int, batch_size: int) -> dict:
    import numpy as np
    import torch

    from pdd.core import shards
    from pdd.train import data, loop

    torch.set_num_threads(1)

    def prepare(table):
        return {"images": torch.from_numpy(np.array(shards.images_array(table, res), copy=True))}

    t0 = time.perf_counter()
    src = data.open_split(export_dir, "train", [shards.image_column(res)], prepare, budget_mb=budget_mb,
                          batch_size=batch_size, streaming=(mode == "streaming"),
                          window=None if mode == "streaming" else None)
    load_s = time.perf_counter() - t0
    sampler = loop.EpochBatches(src, batch_size, 1, "bench", 0, batches)
    n, t0 = 0, time.perf_counter()
    for idx in sampler:
        n += len(src.fetch(idx)["images"])
    fetch_s = time.perf_counter() - t0
    return {"mode": mode, "rows": src.n, "window_blocks": src.window, "blocks": len(src.blocks),
            "images_per_s": n / (fetch_s + load_s), "images_per_s_after_load": n / fetch_s, "load_s": load_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(export_dir: Path, res: int, budget_mb: float, batches: int, batch_size: int) -> list[dict]:
    out = []
    for mode in ("preloaded", "streaming"):
        proc = subprocess.run([sys.executable, __file__, "--child", str(export_dir), str(res), mode, str(budget_mb),
                               str(batches), str(batch_size)], capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def show(title: str, rows: list[dict]) -> None:
    print(title)
    for r in rows:
        print(f"  {r['mode']:10s} {r['images_per_s']:9.0f} images/s (incl. loading; {r['images_per_s_after_load']:9.0f} after) "
              f" peak RSS {r['peak_rss_mb']:7.0f} MB  window {r['window_blocks']}/{r['blocks']} row groups")
    pre, st = rows
    print(f"  streaming/preloaded: {st['images_per_s'] / pre['images_per_s']:.2f}x images/s, "
          f"{st['peak_rss_mb'] / pre['peak_rss_mb']:.2f}x peak RSS")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _, export_dir, res, mode, budget, batches, bs = argv
        print(json.dumps(child(export_dir, int(res), mode, float(budget), int(batches), int(bs))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--budget-mb", type=float, default=64)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args(argv)
    demo = ROOT / "data/export"
    if (demo / "index.json").exists():
        res = json.loads((demo / "index.json").read_text())["resolutions"][0]
        show(f"demo export ({demo}, {res} px), budget {a.budget_mb / 8:.0f} MB for streaming:",
             measure(demo, res, a.budget_mb / 8, a.batches, min(a.batch_size, 32)))
    else:
        print("demo export: not built (run `dvc repro export`); skipped")
    from pdd.train import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthetic.make_synthetic(Path(tmp) / "export", n_train=a.rows, n_val=8, resolutions=[64])
        print(f"generated {a.rows} rows at 64 px in {time.perf_counter() - t0:.0f} s")
        show(f"generated export ({a.rows} rows, 64 px), budget {a.budget_mb:.0f} MB for streaming:",
             measure(Path(tmp) / "export", 64, a.budget_mb, a.batches, a.batch_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
