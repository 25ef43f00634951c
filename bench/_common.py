"""What the training benches (bench/train_clip.py, train_vae.py, train_unet.py) share: the set-up (offline,
the repository on sys.path), the stage configs with eval and checkpoints off, the timed rate of a stage run,
the bare optimizer loop, the FLOP count and the printed comparison. Import it first: `import _common`."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from pdd.core import config, determinism  # noqa: E402

WARMUP = 5   # steps not timed, on both sides


def stage_configs(params: Path, section: str, steps: int):
    """(the section's config for `steps` steps, eval and checkpoints off, warm-up at most WARMUP, all configs);
    params.yaml compute (the stages' kernels) is applied for both sides."""
    cfgs = config.load(params)
    determinism.apply(cfgs["compute"])
    cfg = config.patch(cfgs[section], {"train": {"steps": steps, "eval_every": 0, "checkpoint_every": 0,
                                                 "schedule": {"warmup_steps": min(WARMUP, steps)}}})
    return cfg, cfgs


def parse(doc: str, name: str, argv, *more) -> argparse.Namespace | None:
    """--steps, --rounds and --params, then `more` ((flags, kwargs) pairs); None (after saying why on stderr)
    when params is missing or the steps do not exceed the warm-up."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help=f"optimizer steps per round (the first {WARMUP} are not timed)")
    p.add_argument("--rounds", type=int, default=3)
    for flags, kwargs in more:
        p.add_argument(*flags, **kwargs)
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    a = p.parse_args(argv)
    if not a.params.is_file():
        print(f"{name} bench: {a.params} not found", file=sys.stderr)
        return None
    if a.steps <= WARMUP:
        print(f"{name} bench: --steps must be more than the {WARMUP} warm-up steps", file=sys.stderr)
        return None
    return a


def stage_rate(trained) -> float:
    """Items/s of a train function's run (loop.Trained), its first WARMUP steps left out."""
    r = trained.result
    timed = r.step_seconds[WARMUP:]
    return len(timed) * r.items_per_step / sum(timed)


def bare_rate(model, cfg, loss, items: int, after_step=None) -> float:
    """Items/s of a plain loop: loss() -> backward, gradient clipping (train.max_grad_norm), AdamW with the
    stage's hyper-parameters, then after_step() (EMA); the first WARMUP steps are not timed."""
    o = cfg.train.optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    times = []
    for _ in range(cfg.train.steps):
        t0 = time.perf_counter()
        loss().backward()
        if cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()
        times.append(time.perf_counter() - t0)
    timed = times[WARMUP:]
    return len(timed) * items / sum(timed)


def flops_per_item(model, loss, items: int) -> float:
    """Training FLOPs (forward + backward of loss(), torch's FlopCounterMode) per item."""
    counter = FlopCounterMode(display=False)
    with counter:
        loss().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / items


def print_train(stage: list[float], bare: list[float], fpi: float) -> None:
    """The training comparison: FLOPs per image, both sides' best round, their ratio against the goal."""
    s, b = max(stage), max(bare)
    print(f"train FLOPs per image (fwd+bwd): {fpi / 1e6:.1f} MFLOP")
    print(f"stage loop: {s:8.1f} images/s  ({s * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in stage]}")
    print(f"bare loop:  {b:8.1f} images/s  ({b * fpi / 1e9:.2f} GFLOP/s)   rounds {[round(v, 1) for v in bare]}")
    ratio = s / b
    print(f"train ratio stage/bare: {ratio:.3f} (goal >= 0.95){'' if ratio >= 0.95 else '  BELOW GOAL'}")
    print(f"median-based ratio: {statistics.median(stage) / statistics.median(bare):.3f}")


def print_rates(title: str, rows: list[tuple[str, list[float], int]]) -> None:
    """A block of rates under a title: (label, rounds, digits) per line, each with its best round."""
    print(title)
    for label, rounds, digits in rows:
        print(f"  {label + ':':<28}{max(rounds):8.{digits}f} images/s   rounds {[round(v, digits) for v in rounds]}")
