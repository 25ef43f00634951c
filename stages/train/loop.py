"""The one training loop every model stage shares (CLIP now; VAE and U-Net later).

A stage hands it a `Task` (model, a batch getter over preloaded data, a loss, an
optional evaluation) and its params section; the loop does the rest with `accelerate`:
device placement, mixed precision, gradient accumulation and multi-process sharding
all come from the Accelerator (launch with `accelerate launch -m stages.train.clip` for
several processes); there is no hand-written device or DDP code here.

Determinism: the caller seeds everything before building the model
(`stages.determinism.seed_everything`); the data order is a pure function of
(seed, name, epoch) -- a fresh seeded generator per epoch, so any step can be
reached again without replaying the ones before it; checkpoints hold the model,
optimizer, scheduler, every RNG state (accelerate's save_state) and the metric
history. `resume=True` continues from the newest complete checkpoint and ends with
bit-identical weights and metrics to an uninterrupted run on the same machine.

Tests interrupt a run for real with PDD_TRAIN_KILL_AFTER_STEP=N: the process
SIGKILLs itself right after optimizer step N (and its checkpoint, if one is due).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from stages.determinism import derive_seed, torch_generator
from stages.errors import PddError
from stages.hashing import write_atomic

KILL_ENV = "PDD_TRAIN_KILL_AFTER_STEP"
PROGRESS = "progress.json"


@dataclass
class Task:
    name: str                                         # e.g. "clip": names the data-order seed and the progress bar
    model: torch.nn.Module
    n_train: int
    get_batch: Callable[[torch.Tensor], dict]         # train row indices -> batch of CPU tensors
    loss: Callable[[torch.nn.Module, dict], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], dict] | None = None   # -> flat dict of floats (val metrics)
    items: str = "images"                             # what one batch row is, for the rate shown


@dataclass
class Result:
    model: torch.nn.Module                            # unwrapped, on the accelerator's device
    steps: int
    train_history: list = field(default_factory=list)   # [step, loss, lr]
    val_history: list = field(default_factory=list)     # {"step": s, **evaluate()}
    train_seconds: float = 0.0                        # time in the step loop (not eval/checkpoints), this process run
    items_per_s: float = 0.0
    resumed_from: int = 0
    step_seconds: list = field(default_factory=list)   # wall time of each optimizer step run here (for benches)
    items_per_step: int = 0


class EpochBatches(BatchSampler):
    """Batches of row indices for micro-steps start..total-1. Epoch e's order is a randperm from a
    generator seeded with derive_seed(seed, name, 'epoch', e): reproducible from any start."""

    def __init__(self, n: int, batch_size: int, seed: int, name: str, start: int, total: int):
        self.n, self.batch_size, self.seed, self.name = n, batch_size, seed, name
        self.start, self.total = start, total
        self.drop_last = True
        self.sampler = None
        self.per_epoch = n // batch_size

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, self.name, "epoch", str(epoch)))
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self):
        epoch, perm = None, None
        for m in range(self.start, self.total):
            e, pos = divmod(m, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield perm[pos * self.batch_size:(pos + 1) * self.batch_size]


class _Batches(Dataset):
    """Whole batches from preloaded tensors: the DataLoader calls __getitems__(indices) once per batch,
    so there is no per-row fetch or collation."""

    def __init__(self, get_batch, n):
        self.get_batch, self.n = get_batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return self.get_batch(torch.as_tensor([idx]))

    def __getitems__(self, indices):
        return self.get_batch(torch.as_tensor(indices))


def _as_is(batch):
    return batch


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: not biases, norms, embeddings' scalars or CLIP's logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (an interrupted save has no progress.json)."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.glob("step-*") if (p / PROGRESS).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def check_config(cfg: dict, n_train: int, where: str) -> None:
    if n_train < cfg["batch_size"]:
        raise PddError(f"{where}: batch_size={cfg['batch_size']} is larger than the {n_train} train rows; "
                       "lower it or export more data")


def train(task: Task, cfg: dict, seed: int, ckpt_dir: str | Path, *, resume: bool = False, fingerprint: str = "",
          progress: bool = True, accelerator=None) -> Result:
    """Train task.model for cfg['steps'] optimizer steps. cfg keys: steps, batch_size, grad_accum, lr,
    weight_decay, warmup_steps, max_grad_norm, mixed_precision, eval_every, checkpoint_every."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    check_config(cfg, task.n_train, task.name)
    ckpt_dir = Path(ckpt_dir)
    accelerator = accelerator or Accelerator(mixed_precision=cfg["mixed_precision"],
                                             gradient_accumulation_steps=cfg["grad_accum"])
    total, accum = cfg["steps"], cfg["grad_accum"]
    per_step = cfg["batch_size"] * accum * accelerator.num_processes

    state = {"step": 0, "train": [], "val": [], "fingerprint": fingerprint}
    found = checkpoints(ckpt_dir)
    if resume and found:
        state = json.loads((found[-1] / PROGRESS).read_text(encoding="utf-8"))
        if state["fingerprint"] != fingerprint:
            raise PddError(f"{found[-1]} was made from other inputs or params; rerun without --resume")
    elif accelerator.is_main_process and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # a fresh run never mixes with an old one's checkpoints
    accelerator.wait_for_everyone()
    start = state["step"]

    model = task.model
    optimizer = torch.optim.AdamW(param_groups(model, cfg["weight_decay"]), lr=cfg["lr"], betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg["warmup_steps"], total))
    sampler = EpochBatches(task.n_train, cfg["batch_size"], seed, task.name, start * accum * accelerator.num_processes,
                           total * accum * accelerator.num_processes)
    # its own generator: the DataLoader's per-iterator seed draw must not touch the global RNG
    loader = DataLoader(_Batches(task.get_batch, task.n_train), batch_sampler=sampler, collate_fn=_as_is, num_workers=0,
                        generator=torch_generator(seed, task.name, "loader"))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    if start:
        accelerator.load_state(str(found[-1]))  # model, optimizer, scheduler and every RNG
        if accelerator.is_main_process:
            print(f"{task.name}: resumed from {found[-1]} (step {start} of {total})", file=sys.stderr)

    kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = tqdm(total=total, initial=start, desc=task.name, unit="step", dynamic_ncols=True, mininterval=0.5,
               disable=not (progress and accelerator.is_local_main_process), file=sys.stderr)
    step, loss_sum, train_s, t0, timed_steps, step_seconds = start, None, 0.0, time.perf_counter(), 0, []
    model.train()
    for batch in loader:
        with accelerator.accumulate(model):
            loss = task.loss(model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg["max_grad_norm"]:
                accelerator.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        if not accelerator.sync_gradients:
            continue
        if not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        step += 1
        mean_loss = accelerator.gather(loss_sum.reshape(1) / accum).float().mean().item()
        loss_sum = None
        state["train"].append([step, mean_loss, scheduler.get_last_lr()[0]])
        now = time.perf_counter()
        train_s += now - t0
        step_seconds.append(now - t0)
        timed_steps += 1
        bar.update(1)
        bar.set_postfix_str(f"loss={mean_loss:.4f} {task.items}/s={timed_steps * per_step / train_s:.1f}", refresh=False)

        if task.evaluate and cfg["eval_every"] and (step % cfg["eval_every"] == 0 or step == total):
            state["val"].append({"step": step, **_evaluate(task, model, accelerator)})
        if cfg["checkpoint_every"] and step % cfg["checkpoint_every"] == 0 and step < total:
            _save(accelerator, ckpt_dir, step, state)
        if kill_after and step == kill_after:
            bar.close()
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
    bar.close()
    accelerator.wait_for_everyone()
    if step != total:
        raise PddError(f"{task.name}: training stopped at step {step} of {total}")
    unwrapped = accelerator.unwrap_model(model)
    return Result(unwrapped, step, state["train"], state["val"], train_s,
                  (timed_steps * per_step / train_s) if train_s else 0.0, start, step_seconds, per_step)


def _evaluate(task: Task, model, accelerator) -> dict:
    model.eval()
    with torch.no_grad(), accelerator.autocast():
        out = task.evaluate(accelerator.unwrap_model(model))
    model.train()
    return out


def _save(accelerator, ckpt_dir: Path, step: int, state: dict) -> None:
    """Checkpoint into step-N; complete only once progress.json is written (last), older ones removed."""
    path = ckpt_dir / f"step-{step:08d}"
    if accelerator.is_main_process and path.exists():
        shutil.rmtree(path)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process:
        write_atomic(path / PROGRESS, json.dumps({**state, "step": step}).encode("utf-8"))
        for old in checkpoints(ckpt_dir)[:-1]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def write_history(result: Result, loss_tsv: str | Path, val_tsv: str | Path) -> None:
    """DVC plots: train loss per step, and per evaluation the val metrics (chance levels beside recalls)."""
    lines = ["step\tloss\tlr"] + [f"{s}\t{loss!r}\t{lr!r}" for s, loss, lr in result.train_history]
    write_atomic(loss_tsv, ("\n".join(lines) + "\n").encode("utf-8"))
    keys = list(result.val_history[0]) if result.val_history else ["step"]
    rows = ["\t".join(keys)] + ["\t".join(repr(r[k]) for k in keys) for r in result.val_history]
    write_atomic(val_tsv, ("\n".join(rows) + "\n").encode("utf-8"))
