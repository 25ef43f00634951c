"""The one training loop every model stage shares (CLIP, VAE, U-Net), on `accelerate`.

A stage hands it a `Task`: the model, a data source (pdd/train/data.py: preloaded or streamed, same
order), an objective that returns the loss, optional frozen modules, an evaluation and a preview image.
The loop does the rest. Device placement, mixed precision, gradient accumulation and multi-process
sharding come from the Accelerator (`accelerate launch -m stages.clip` for several processes); there is
no hand-written device or DDP code here.

* Optimizer (adamw / adam / sgd with betas, eps, weight decay) and learning-rate schedule (constant /
  cosine / linear, warm-up, floor) come from the stage's `train` params (TrainCfg).
* EMA of the weights (diffusers' EMAModel) when `ema.decay` > 0: updated after every optimizer step,
  swapped in for evaluation and previews, checkpointed, and what the stage saves.
* Named generators: every random draw inside training (noise, timesteps, caption dropout, ...) comes
  from `rt.rng.randn / rand / randint(purpose, shape)`. Each purpose has one torch.Generator seeded from
  (seed, stage, purpose), the same in every process; a draw makes the values of the whole global batch
  and keeps this process's rows (accelerate's split_batches gives process r the r-th contiguous part of
  each global batch). So every example gets the same noise whatever the number of processes, two
  processes never use the same noise, and N processes follow the 1-process run up to float summation
  order. Each process's generator states are saved in checkpoints.
* Frozen modules (a VAE, a text encoder) are placed on the device by the accelerator, kept in eval
  mode without gradients, and are neither optimised nor checkpointed (they are inputs of the stage).
* The data order is a pure function of (seed, stage, epoch) (data.epoch_order): any step can be reached
  again without replaying the ones before it.
* A non-finite loss stops training with a one-line error (never a NaN model written with exit 0).

Determinism: the caller seeds everything before building the model (pdd.core.determinism.seed_everything).
Checkpoints hold model, optimizer, scheduler, EMA, every RNG state (accelerate's save_state plus the
named generators) and the metric history; `resume=True` continues from the newest complete checkpoint
and ends bit-identical to an uninterrupted run on the same machine. Nothing in a checkpoint needs pickle
to load (safetensors, and torch.load with weights_only for the rest), and a resume first refuses a
checkpoint holding a file it did not write or one changed since (progress.json lists their sha256).

Tests interrupt a run for real with PDD_TRAIN_KILL_AFTER_STEP=N: the process SIGKILLs itself right
after optimizer step N (and its checkpoint, if one is due).
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
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import BatchSampler, DataLoader, Dataset
from tqdm.auto import tqdm

from pdd.core.determinism import derive_seed, torch_generator
from pdd.core.hashing import hash_file, write_atomic
from pdd.core.errors import PddError
from pdd.train.data import epoch_order

KILL_ENV = "PDD_TRAIN_KILL_AFTER_STEP"
PROGRESS = "progress.json"
TRAIN_STATE = "train-state.pt"   # the LR schedule's and the EMA's state: tensors and numbers, loaded weights_only
CHECKPOINT_FORMAT = 2            # progress.json lists the sha256 of every file the checkpoint wrote


class Rngs:
    """Named generators, one per purpose, seeded from (seed, stage, purpose) alike in every process; the
    draws (randn, rand, randint) take this process's rows of the global batch's values."""

    def __init__(self, seed: int, stage: str, rank: int, device="cpu", world: int = 1):
        self.seed, self.stage, self.rank, self.world, self.device = seed, stage, rank, world, torch.device(device)
        self._gens: dict[str, torch.Generator] = {}

    def __call__(self, purpose: str) -> torch.Generator:
        g = self._gens.get(purpose)
        if g is None:
            g = torch.Generator(device=self.device)
            # "rank0": the name the one-process runs have always used, so their seeds (and bytes) stay
            g.manual_seed(derive_seed(self.seed, self.stage, purpose, "rank0"))
            self._gens[purpose] = g
        return g

    def _global(self, draw, purpose: str, shape) -> torch.Tensor:
        """draw(generator, shape) for the global batch (shape[0] rows per process), then this process's rows."""
        g = self(purpose)
        n = shape[0]
        return draw(g, (n * self.world, *shape[1:]))[self.rank * n:(self.rank + 1) * n]

    def randn(self, purpose: str, shape, dtype=None) -> torch.Tensor:
        """Standard normal values for this process's `shape[0]` rows (of the global batch's)."""
        return self._global(lambda g, s: torch.randn(s, generator=g, device=g.device, dtype=dtype), purpose, shape)

    def rand(self, purpose: str, shape) -> torch.Tensor:
        return self._global(lambda g, s: torch.rand(s, generator=g, device=g.device), purpose, shape)

    def randint(self, purpose: str, high: int, shape) -> torch.Tensor:
        return self._global(lambda g, s: torch.randint(0, high, s, generator=g, device=g.device), purpose, shape)

    def state_dict(self) -> dict:
        return {k: g.get_state() for k, g in sorted(self._gens.items())}

    def load_state_dict(self, state: dict) -> None:
        for k, s in state.items():
            self(k).set_state(s)


@dataclass
class Runtime:
    """What an objective may use besides the model and the batch."""
    rng: Rngs
    frozen: dict
    device: torch.device
    step: int = 0
    accelerator: object = None


@dataclass
class Task:
    name: str                                                   # the stage: names seeds and the progress bar
    model: torch.nn.Module
    data: object                                                # a data.ArraySource or data.ShardSource
    loss: Callable[[torch.nn.Module, dict, Runtime], torch.Tensor]   # the objective returns the loss
    evaluate: Callable[[torch.nn.Module, Runtime], dict] | None = None      # -> flat dict of floats
    preview: Callable[[torch.nn.Module, Runtime], object] | None = None     # -> a PIL image (eval grid)
    frozen: dict = field(default_factory=dict)                  # name -> module, moved to the device, not trained
    items: str = "images"                                       # what one batch row is, for the rate shown


@dataclass
class Result:
    model: torch.nn.Module                                      # unwrapped, EMA weights in it when EMA is on
    steps: int
    train_history: list = field(default_factory=list)         # [step, loss, lr]
    val_history: list = field(default_factory=list)           # {"step": s, **evaluate()}
    train_seconds: float = 0.0
    items_per_s: float = 0.0
    resumed_from: int = 0
    step_seconds: list = field(default_factory=list)
    items_per_step: int = 0
    preview: object = None                                      # the last preview image (PIL) or None
    ema: object = None                                          # the EMAModel, when on
    raw_state: dict | None = None                               # the trained (non-EMA) weights when EMA is on


class EpochBatches(BatchSampler):
    """Batches of row indices for micro-steps start..total-1, in data.epoch_order."""

    def __init__(self, data, batch_size: int, seed: int, name: str, start: int, total: int):
        self.blocks, self.window = list(data.blocks), data.window
        self.n, self.batch_size, self.seed, self.name = data.n, batch_size, seed, name
        self.start, self.total = start, total
        self.drop_last = True
        self.sampler = None
        self.per_epoch = self.n // batch_size

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self):
        epoch, perm = None, None
        for m in range(self.start, self.total):
            e, pos = divmod(m, self.per_epoch)
            if e != epoch:
                epoch, perm = e, epoch_order(self.blocks, self.window, self.seed, self.name, e)
            yield perm[pos * self.batch_size:(pos + 1) * self.batch_size]


class _Batches(Dataset):
    """Whole batches from a source: the DataLoader calls __getitems__(indices) once per batch."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return self.data.n

    def __getitem__(self, idx):
        return self.data.fetch(torch.as_tensor([idx]))

    def __getitems__(self, indices):
        return self.data.fetch(torch.as_tensor(indices))


def _as_is(batch):
    return batch


def lr_lambda(kind: str, warmup: int, total: int, floor: float = 0.0):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: not biases, norms, embeddings' scalars or CLIP's logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, opt) -> torch.optim.Optimizer:
    groups = param_groups(model, opt.weight_decay)
    if opt.kind == "adamw":
        return torch.optim.AdamW(groups, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    if opt.kind == "adam":
        return torch.optim.Adam(groups, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    if opt.kind == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.betas[0])
    raise PddError(f"params.yaml: optimizer.kind={opt.kind!r} is not one of adamw, adam, sgd")


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (an interrupted save has no progress.json)."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.glob("step-*") if (p / PROGRESS).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def check_config(cfg, n_train: int, where: str) -> None:
    if n_train < cfg.batch_size:
        raise PddError(f"{where}: batch_size={cfg.batch_size} is larger than the {n_train} train rows; "
                       "lower it or export more data")


# ---- will it fit? -----------------------------------------------------------------------------
# The least a training run holds per parameter, in bytes: fp32 weights and their gradients, the optimizer's
# state (Adam/AdamW: two moments; SGD: its momentum buffer) and the EMA's copy. Activations, batches and the
# allocator's slack come on top, so a model refused here could never train: this is a floor, not an estimate.
def bytes_per_parameter(train_cfg) -> int:
    optimizer = {"adamw": 8, "adam": 8, "sgd": 4}.get(train_cfg.optimizer.kind, 8)
    return 4 + 4 + optimizer + (4 if train_cfg.ema.decay > 0 else 0)


def available_memory() -> tuple[int, str]:
    """(bytes free for training, where): the GPU's free memory when training runs on one (as
    make_accelerator picks), else the memory this process may still use (MemAvailable, capped by a cgroup
    limit), divided among the processes of this node (torchrun's LOCAL_WORLD_SIZE)."""
    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return free, f"free on the GPU ({torch.cuda.get_device_name()})"
    avail, where = None, "available"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:   # cgroup v2: what the container may still use
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            left = int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            if avail is None or left < avail:
                avail, where = left, "left under this container's memory limit"
    except (OSError, ValueError):
        pass
    if avail is None:
        return 1 << 62, "memory (unknown)"
    try:
        procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        procs = 1
    return avail // procs, where + (f", shared by {procs} processes" if procs > 1 else "")


def check_memory(build: Callable[[], torch.nn.Module], train_cfg, section: str, lower: str) -> int:
    """Refuse, before anything is allocated, a model whose training cannot fit: BUILD() runs on the meta
    device (shapes only, no memory), its parameters are counted, and bytes_per_parameter() of each is set
    against available_memory(). SECTION names the params section, LOWER what to lower. Returns the count."""
    with torch.device("meta"):
        model = build()
    n = sum(p.numel() for p in model.parameters())
    need, (avail, where) = n * bytes_per_parameter(train_cfg), available_memory()
    if need > avail:
        raise PddError(f"{section}: the model has {n / 1e6:,.1f} M parameters; training it needs at least "
                       f"{need / 2**30:,.1f} GiB ({bytes_per_parameter(train_cfg)} bytes per parameter: weights, "
                       f"gradients, optimizer state{', EMA' if train_cfg.ema.decay > 0 else ''}; activations on top) "
                       f"but only {avail / 2**30:,.1f} GiB is {where}; lower {lower}")
    return n


def make_accelerator(cfg):
    # One process may train several models in turn (a bench, the tests) with different precisions or
    # accumulation: start each from a fresh accelerator state. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    # without a GPU, say cpu=True so that several processes (torchrun / accelerate launch) use gloo.
    # split_batches: train.batch_size is the global batch of one micro-step, split across the processes,
    # so 1 and N processes see the same examples per step (N must divide it).
    return Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                       cpu=not torch.cuda.is_available(),
                       dataloader_config=DataLoaderConfiguration(split_batches=True))


def train(task: Task, cfg, seed: int, ckpt_dir: str | Path, *, resume: bool = False, fingerprint: str = "",
          progress: bool = True, accelerator=None, live_dir: str | Path | None = None) -> Result:
    """Train task.model for cfg.steps optimizer steps (cfg: a config.TrainCfg). With live_dir, the main process
    logs the run there with dvclive as it trains (LiveLog)."""
    check_config(cfg, task.data.n, task.name)
    ckpt_dir = Path(ckpt_dir)
    accelerator = accelerator or make_accelerator(cfg)
    total, accum, nproc = cfg.steps, cfg.grad_accum, accelerator.num_processes
    if cfg.batch_size % nproc:
        raise PddError(f"{task.name}.train.batch_size={cfg.batch_size} is the global batch and must split evenly over "
                       f"{nproc} processes; make it a multiple of {nproc}")
    per_step = cfg.batch_size * accum

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
    optimizer = make_optimizer(model, cfg.optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.schedule.kind, min(cfg.schedule.warmup_steps, total), total, cfg.schedule.min_lr_ratio))
    sampler = EpochBatches(task.data, cfg.batch_size, seed, task.name, start * accum, total * accum)
    # its own generator: the DataLoader's per-iterator seed draw must not touch the global RNG
    loader = DataLoader(_Batches(task.data), batch_sampler=sampler, collate_fn=_as_is, num_workers=0,
                        generator=torch_generator(seed, task.name, "loader"))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    frozen = {k: _freeze(accelerator, m) for k, m in task.frozen.items()}
    # the scheduler and the EMA are not registered with accelerate: it would pickle them and load them
    # back with weights_only=False (code from a planted file would run); _save writes their state dicts
    ema = None
    if cfg.ema.decay > 0:
        # here, not at the top: diffusers.training_utils takes ~2.5 s to import where no other diffusers
        # module is loaded (the clip stage, the loop's own tests), and only EMA runs need it
        from diffusers.training_utils import EMAModel

        ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=cfg.ema.decay,
                       use_ema_warmup=cfg.ema.warmup, foreach=False)
        ema.to(accelerator.device)
    rngs = Rngs(seed, task.name, accelerator.process_index, accelerator.device, accelerator.num_processes)
    rt = Runtime(rngs, frozen, accelerator.device, start, accelerator)
    if start:
        verify_checkpoint(found[-1], state)   # before anything in it is read
        accelerator.load_state(str(found[-1]))  # model (safetensors), optimizer and every global RNG (weights_only)
        extra = _load_tensors(found[-1] / TRAIN_STATE)
        scheduler.load_state_dict(extra["scheduler"])
        if ema is not None:
            ema.load_state_dict(extra["ema"])
        rngs.load_state_dict(_load_tensors(found[-1] / f"rngs-rank{accelerator.process_index}.pt"))
        if accelerator.is_main_process:
            print(f"{task.name}: resumed from {found[-1]} (step {start} of {total})", file=sys.stderr)

    live = LiveLog(live_dir, state, start) if (live_dir and accelerator.is_main_process) else None
    kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = tqdm(total=total, initial=start, desc=task.name, unit="step", dynamic_ncols=True, mininterval=0.5,
               disable=not (progress and accelerator.is_local_main_process), file=sys.stderr)
    step, loss_sum, train_s, t0, timed_steps, step_seconds = start, None, 0.0, time.perf_counter(), 0, []
    preview = None
    model.train()
    for batch in loader:
        with accelerator.accumulate(model):
            loss = task.loss(model, batch, rt)
            if not torch.isfinite(loss.detach()).all():
                bar.close()
                raise PddError(f"{task.name}: the loss is {loss.item()} at step {step + 1}; training stopped "
                               f"(lower {task.name}.train.optimizer.lr or check the params and data)")
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        if not accelerator.sync_gradients:
            continue
        if not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        if ema is not None:
            ema.step(accelerator.unwrap_model(model).parameters())
        step += 1
        rt.step = step
        mean_loss = accelerator.gather(loss_sum.reshape(1) / accum).float().mean().item()
        loss_sum = None
        state["train"].append([step, mean_loss, scheduler.get_last_lr()[0]])
        if live:
            live.train(*state["train"][-1])
        now = time.perf_counter()
        train_s += now - t0
        step_seconds.append(now - t0)
        timed_steps += 1
        bar.update(1)
        bar.set_postfix_str(f"loss={mean_loss:.4f} {task.items}/s={timed_steps * per_step / train_s:.1f}", refresh=False)

        if (task.evaluate or task.preview) and cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
            # the preview (a val grid) at every evaluation when logging live, else only at the end
            metrics, preview = _evaluate(task, model, ema, rt, accelerator, with_preview=bool(live) or step == total)
            if task.evaluate:
                state["val"].append({"step": step, **metrics})
            if live:
                live.val(step, metrics, preview)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
            _save(accelerator, ckpt_dir, step, state, rngs, scheduler, ema)
        if kill_after and step == kill_after:
            bar.close()
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
    bar.close()
    accelerator.wait_for_everyone()
    if step != total:
        raise PddError(f"{task.name}: training stopped at step {step} of {total}")
    unwrapped = accelerator.unwrap_model(model)
    raw = None
    if ema is not None:
        raw = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
        ema.copy_to(unwrapped.parameters())   # the EMA weights are what ships
    if preview is None and task.preview and accelerator.is_main_process:
        preview = _preview(task, unwrapped, rt, accelerator)
    if live:
        live.end()
    return Result(unwrapped, step, state["train"], state["val"], train_s,
                  (timed_steps * per_step / train_s) if train_s else 0.0, start, step_seconds, per_step,
                  preview, ema, raw)


def _freeze(accelerator, module: torch.nn.Module) -> torch.nn.Module:
    module.requires_grad_(False)
    module.eval()
    return accelerator.prepare_model(module, evaluation_mode=True)


def _preview(task, model, rt, accelerator):
    with torch.no_grad(), accelerator.autocast():
        return task.preview(model, rt)


def _evaluate(task: Task, model, ema, rt, accelerator, with_preview: bool):
    """Val metrics (and the preview image) of the EMA weights when EMA is on, else of the weights."""
    unwrapped = accelerator.unwrap_model(model)
    model.eval()
    if ema is not None:
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
    try:
        with torch.no_grad(), accelerator.autocast():
            metrics = task.evaluate(unwrapped, rt) if task.evaluate else {}
            image = task.preview(unwrapped, rt) if (with_preview and task.preview and accelerator.is_main_process) else None
    finally:
        if ema is not None:
            ema.restore(unwrapped.parameters())
        model.train()
    return metrics, image


def _save(accelerator, ckpt_dir: Path, step: int, state: dict, rngs: Rngs, scheduler, ema) -> None:
    """Checkpoint into step-N; complete only once progress.json is written (last, with the sha256 of every
    file written before it), older ones removed. Nothing in it needs pickle to load."""
    path = ckpt_dir / f"step-{step:08d}"
    if accelerator.is_main_process and path.exists():
        shutil.rmtree(path)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path), safe_serialization=True)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(rngs.state_dict(), path / f"rngs-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        torch.save({"scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None},
                   path / TRAIN_STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {rel: hash_file(path / rel) for rel in _checkpoint_files(path)}
        record = {**state, "step": step, "format": CHECKPOINT_FORMAT, "files": files}
        write_atomic(path / PROGRESS, json.dumps(record).encode("utf-8"))
        for old in checkpoints(ckpt_dir)[:-1]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _checkpoint_files(path: Path) -> list[str]:
    """Every entry below a checkpoint folder but progress.json (links and odd files included), sorted."""
    out = []
    for dirpath, dirs, names in os.walk(path):
        for name in [*names, *(d for d in dirs if Path(dirpath, d).is_symlink())]:
            out.append(Path(dirpath, name).relative_to(path).as_posix())
    return sorted(set(out) - {PROGRESS})


def verify_checkpoint(path: Path, progress: dict) -> None:
    """Refuse a checkpoint holding anything it did not write: every file must be listed in its progress.json
    with the sha256 recorded when it was written, and be a regular file. Pops the record from `progress`."""
    files = progress.pop("files", None)
    if progress.pop("format", None) != CHECKPOINT_FORMAT or not isinstance(files, dict):
        raise PddError(f"{path}: a checkpoint without a digest of its files (an older format); rerun without --resume")
    present = _checkpoint_files(path)
    for rel in present:
        if rel not in files:
            raise PddError(f"{path}: {rel!r} was not written by this checkpoint; nothing was loaded (remove the "
                           "file, or rerun without --resume)")
    for rel, digest in sorted(files.items()):
        entry = path / rel
        if rel not in present or entry.is_symlink() or not entry.is_file():
            raise PddError(f"{path}: {rel!r} is missing or not a regular file; nothing was loaded (rerun without --resume)")
        if hash_file(entry) != digest:
            raise PddError(f"{path}: {rel!r} changed after the checkpoint was written; nothing was loaded "
                           "(rerun without --resume)")


def _load_tensors(path: Path):
    """torch.load with weights_only: tensors and plain data, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # pickle.UnpicklingError for anything but tensors and plain data
        raise PddError(f"{path}: not a checkpoint file this project wrote ({type(exc).__name__}); "
                       "rerun without --resume") from None


class LiveLog:
    """The run's training logs, written with dvclive as it trains (the main process only): the train loss and
    learning rate at every step and the val metrics at every evaluation (LIVE/plots/metrics/{train,val}/NAME.tsv,
    columns step and NAME), the preview grid of each evaluation (LIVE/plots/images/val/STEP.png) and the latest
    values (LIVE/metrics.json). `dvc plots` draws them (dvc.yaml declares x and y) and `dvc exp show` lists
    metrics.json, during training too. No timestamps, no dvc.yaml, no experiment saved: a rebuild writes the same
    bytes, and a resumed run replays the checkpoint's history (and keeps the grids up to its step), so it ends
    with the same logs as an uninterrupted one. Studio is kept offline (DVC_STUDIO_OFFLINE)."""

    def __init__(self, directory: str | Path, state: dict, start: int):
        from dvclive import Live   # here: the loop's own tests and the benches train without logging

        # nothing after the pin touches the network: no live metrics posted to DVC Studio, whatever is configured
        os.environ["DVC_STUDIO_OFFLINE"] = "true"
        images = Path(directory) / "plots" / "images" / "val"
        kept = {p.name: p.read_bytes() for p in images.glob("*.png")
                if p.stem.isdigit() and int(p.stem) <= start} if start else {}
        self.live = Live(dir=str(directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=None,
                         monitor_system=False)
        for step, loss, lr in state["train"]:
            self.train(step, loss, lr)
        for row in state["val"]:
            self.val(row["step"], {k: v for k, v in row.items() if k != "step"}, None)
        if kept:
            images.mkdir(parents=True, exist_ok=True)
            for name, data in sorted(kept.items()):
                write_atomic(images / name, data)
        if state["train"]:
            self._summary()

    def _summary(self) -> None:
        """metrics.json in one key order however the run got here: train, val, then step (dvclive appends a
        key where it is first set, and a resumed run sets them in another order)."""
        self.live.summary.pop("step", None)
        self.live.make_summary()

    def train(self, step: int, loss: float, lr: float) -> None:
        self.live.step = step
        self.live.log_metric("train/loss", loss)
        self.live.log_metric("train/lr", lr)

    def val(self, step: int, metrics: dict, image) -> None:
        self.live.step = step
        for k, v in metrics.items():
            self.live.log_metric(f"val/{k}", v)
        if image is not None:
            self.live.log_image(f"val/{step}.png", image)
        self._summary()

    def end(self) -> None:
        self.live.summary.pop("step", None)
        self.live.end()


@dataclass(frozen=True)
class Trained:
    """What a model's train function returns; its stage maps it to an Outcome."""
    metrics: dict                                               # the stage's metrics file, in its key order
    plots: dict                                                 # plot name -> TSV text or PNG bytes
    result: Result                                              # the loop's run (histories, timing, EMA)
    model: torch.nn.Module                                      # the trained model, on the CPU, as saved

    @property
    def items_per_s(self) -> float:
        return self.result.items_per_s

    @property
    def resumed_from(self) -> int:
        return self.result.resumed_from


def trained(result: Result, model: torch.nn.Module, head: dict, **plots) -> Trained:
    """The metrics `head` followed by the last evaluation's values (without its step), and `plots` (the loss
    and val histories are the stage's live log: LiveLog)."""
    final = dict(result.val_history[-1]) if result.val_history else {}
    final.pop("step", None)
    return Trained(metrics={**head, **final}, plots=dict(plots), result=result, model=model)
