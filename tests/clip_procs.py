"""Train the tiny CLIP on a prepared synthetic export, in 1 process or under torchrun / accelerate launch
with several, and write the loss history (tests/test_multiprocess.py).

    python tests/clip_procs.py ROOT OUT [--steps N] [--resume]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pdd.core import config  # noqa: E402
from pdd.train import clip  # noqa: E402


def cfg(steps: int):
    from conftest import tiny_cfgs

    import os

    batch = int(os.environ.get("PDD_TEST_CLIP_BATCH", "16"))
    return config.patch(tiny_cfgs()["clip"], {"train": {"steps": steps, "batch_size": batch, "eval_every": 0,
                                                          "checkpoint_every": 4, "threads": 1}})


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    from pdd.core.errors import PddError

    try:
        m = clip.train_clip(a.root / "export", a.root / "tok", a.out / "clip", cfg(a.steps), 1, ckpt_dir=a.out / "ck",
                            resume=a.resume, progress=False)
    except PddError as exc:
        print(f"clip_procs: error: {exc}", file=sys.stderr)
        return 2
    r = m.result
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        (a.out / "loss.json").write_text(json.dumps([loss for _, loss, *_ in r.train_history]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
