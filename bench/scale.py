"""Bench: outgrowing one process and one machine's memory, in one run (issue 14).

1. Processes. The `vae` stage's training loop (pdd.train.vae.train_vae, eval and checkpoints off) on a generated
   export at the params' vae size, once in 1 process and once under `torchrun --nproc_per_node N` (gloo on CPU),
   with the same global batch (vae.train.batch_size, split over the processes by accelerate) and the machine's
   cores shared out (threads per process = cores / N). Prints images/s of each and the speed-up.
2. Larger than memory. A generated export of --rows rows (default 200,000) at 64 px: about 2.4 GB of raw pixels,
   more than the stage's memory param allows (the training rules' mem_mb). The same stage trains on it through the
   streaming source (vae.train.memory_budget_mb = --budget-mb), and on a --subset-row export that fits through the
   preloaded source; each run is its own process, which reports its peak RSS (ru_maxrss). Prints both images/s, the
   ratio (goal >= 0.90) and the streaming run's peak RSS beside the stated bound: the vae rule's memory
   (params.yaml resources.rules.vae.mem_mb, what SLURM gives the job), and beside the fixed cost of the same
   process on a 1,000-row export (imports, model, optimizer, activations), so the data's share is visible.

3. Kernels. The same stage with params.yaml `compute.deterministic` on and off (each its own process, the runner's
   `determinism.apply`), side by side: images/s of each and their ratio (the cost of the deterministic switch), the
   training FLOPs per image (forward + backward, torch's FlopCounterMode), the achieved TFLOP/s and, on a GPU, the
   MFU against the GPU's dense bf16 peak (known for H100/H200/A100, else --peak-tflops). On a GPU it trains at
   --gpu-resolution px with batch --gpu-batch in bf16 (train.mixed_precision); on CPU at the params' size in fp32.

Every child runs the real stage code with a patched copy of params.yaml's vae section (64 px for part 2, 32 px
= the demo size for part 1); the first --warmup steps are not timed. Results: bench/RESULTS.md.

    python bench/scale.py [--rows 200000] [--subset 20000] [--steps 80] [--procs 2] [--budget-mb 512]
                          [--keep DIR] [--skip procs|memory|kernels] [--gpu-batch 256] [--gpu-resolution 64]
                          [--peak-tflops T]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP = 5
# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched on the device name
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}


# ---- data -----------------------------------------------------------------------------------
def generate(out_dir: Path, n_train: int, resolution: int, n_val: int = 64, seed: int = 0) -> float:
    """A synthetic export (pdd.train.synthetic, written row by row: generating it holds one shard at most);
    returns the raw pixel bytes of the train split."""
    from pdd.train import synthetic

    synthetic.make_synthetic(out_dir, n_train=n_train, n_val=n_val, resolutions=[resolution], seed=seed)
    return n_train * resolution * resolution * 3


# ---- one training run (a child process) -------------------------------------------------------
def child(a) -> int:
    import torch.distributed as dist

    from pdd.core import config
    from pdd.train import vae

    cfgs = config.load(ROOT / "params.yaml")
    upd = {"train": {"steps": a.steps, "eval_every": 0, "checkpoint_every": 0, "threads": a.threads,
                     "schedule": {"warmup_steps": min(WARMUP, a.steps)}}}
    if a.budget_mb:
        upd["train"]["memory_budget_mb"] = a.budget_mb
    if a.resolution:
        upd["resolution"] = a.resolution
    if a.precision:
        upd["train"]["mixed_precision"] = a.precision
    if a.batch:
        upd["train"]["batch_size"] = a.batch
    cfg = config.patch(cfgs["vae"], upd)
    out = Path(a.out)
    flops = 0.0
    if a.deterministic in ("0", "1"):   # part 3: the runner's switch, then the training FLOPs of one batch
        from pdd.core import determinism

        determinism.apply({"deterministic": a.deterministic == "1", "attention": "sdpa"})
        flops = flops_per_image(cfg)
    m = vae.train_vae(a.export, out / "vae", cfg, 1, ckpt_dir=out / "ck", progress=False,
                      **({"streaming": a.mode == "streaming"} if a.mode else {}))
    r, m = m.result, m.metrics
    timed = r.step_seconds[WARMUP:]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not dist.is_initialized() or dist.get_rank() == 0:
        (out / "result.json").write_text(json.dumps({
            "images_per_s": len(timed) * r.items_per_step / sum(timed), "peak_rss_mb": rss_mb,
            "train_rows": m["train_rows"], "loss": m["train_loss"], "batch": r.items_per_step,
            "flops_per_image": flops}))
    return 0


def flops_per_image(cfg) -> float:
    """Training FLOPs per image of the vae stage's model (bench/train_vae.py's count: fwd + bwd, FlopCounterMode)."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from train_vae import flops_per_image as count

    from pdd.train import vae

    model = vae.build_vae(cfg).train()
    x = torch.zeros(4, 3, cfg.resolution, cfg.resolution)
    return count(model, x, cfg)


def bf16_peak(name: str) -> float:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), 0.0)


def run_child(out: Path, export: Path, steps: int, *, procs: int = 1, threads: int, mode: str = "",
              budget_mb: int = 0, resolution: int = 0, deterministic: str = "", precision: str = "",
              batch: int = 0) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    args = [str(Path(__file__).resolve()), "--child", "--export", str(export), "--out", str(out), "--steps", str(steps),
            "--threads", str(threads), "--mode", mode, "--budget-mb", str(budget_mb), "--resolution", str(resolution),
            "--deterministic", deterministic, "--precision", precision, "--batch", str(batch)]
    launcher = ([sys.executable] if procs == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    subprocess.run(launcher + args, check=True, env=env, cwd=ROOT)
    res = json.loads((out / "result.json").read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def kernels(a, work: Path, cores: int) -> None:
    """Part 3: compute.deterministic on and off, side by side, with FLOP/s and (on a GPU) MFU."""
    import torch

    from pdd.core import config

    gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if gpu else f"CPU ({cores} cores)"
    res = a.gpu_resolution if gpu else config.load(ROOT / "params.yaml")["vae"].resolution
    batch, precision = (a.gpu_batch, "bf16") if gpu else (0, "no")
    data = work / f"kernels-{res}px"
    if not (data / "index.json").exists():
        generate(data, max(4096, 4 * (batch or 32)), res)
    runs = {}
    for det in ("1", "0", "1", "0"):   # interleaved, best of two each: drift and warm caches hit both sides
        r = run_child(work / f"run-det{det}", data, a.steps, threads=cores, resolution=res, deterministic=det,
                      precision=precision, batch=batch)
        if det not in runs or r["images_per_s"] > runs[det]["images_per_s"]:
            runs[det] = r
    on, off = runs["1"], runs["0"]
    peak = a.peak_tflops or (bf16_peak(name) if gpu else 0.0)
    print(f"kernels on {name} ({res} px, batch {on['batch']}, {'bf16' if gpu else 'fp32'}, {a.steps - WARMUP} "
          f"timed steps, {on['flops_per_image'] / 1e9:.2f} GFLOP per image fwd+bwd):")
    for label, r in (("deterministic on ", on), ("deterministic off", off)):
        tflops = r["images_per_s"] * r["flops_per_image"] / 1e12
        mfu = f", MFU {tflops / peak:.1%} of {peak:g} TFLOP/s bf16" if peak else ""
        print(f"  {label}: {r['images_per_s']:.1f} images/s, {tflops:.3f} TFLOP/s{mfu}")
    print(f"  cost of the deterministic switch: on / off images/s = {on['images_per_s'] / off['images_per_s']:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--subset", type=int, default=20_000)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--budget-mb", type=int, default=512)
    p.add_argument("--keep", type=Path, default=None, help="keep (and reuse) the generated exports here")
    p.add_argument("--skip", choices=("procs", "memory", "kernels"), action="append", default=[])
    p.add_argument("--gpu-batch", type=int, default=256, help="part 3 on a GPU: global batch")
    p.add_argument("--gpu-resolution", type=int, default=64, help="part 3 on a GPU: image size")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="bf16 peak for the MFU (default: by GPU name)")
    # child mode (internal)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="", help=argparse.SUPPRESS)
    p.add_argument("--resolution", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deterministic", default="", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return child(a)

    cores = os.cpu_count() or 1
    work = a.keep or Path(tempfile.mkdtemp(prefix="pdd-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {cores} CPU cores; torch threads shared out per process; work dir {work}")
    try:
        if "procs" not in a.skip:
            from pdd.core import config

            res = config.load(ROOT / "params.yaml")["vae"].resolution
            small = work / f"procs-{res}px"
            if not (small / "index.json").exists():
                generate(small, 4096, res)
            one = run_child(work / "run-1proc", small, a.steps, threads=cores)
            many = run_child(work / f"run-{a.procs}proc", small, a.steps, procs=a.procs,
                             threads=max(1, cores // a.procs))
            print(f"processes ({res} px, global batch {one['batch']}, {a.steps - WARMUP} timed steps): "
                  f"1 process x {cores} threads {one['images_per_s']:.1f} images/s; {a.procs} processes x "
                  f"{max(1, cores // a.procs)} threads {many['images_per_s']:.1f} images/s; "
                  f"speed-up {many['images_per_s'] / one['images_per_s']:.2f}x")
        if "memory" not in a.skip:
            from pdd.build import cluster
            from pdd.core import params as params_mod

            bound = cluster.resources(params_mod.load(ROOT / "params.yaml"), "vae")["mem_mb"]
            big, fit, tiny = work / f"big-{a.rows}", work / f"fit-{a.subset}", work / "fixed-1000"
            t0 = time.perf_counter()
            if not (big / "index.json").exists():
                raw = generate(big, a.rows, 64)
                print(f"generated {a.rows} rows at 64 px ({raw / 2**30:.2f} GiB of raw pixels) in "
                      f"{time.perf_counter() - t0:.0f} s")
            if not (fit / "index.json").exists():
                generate(fit, a.subset, 64)
            if not (tiny / "index.json").exists():
                generate(tiny, 1000, 64)
            size = sum(f.stat().st_size for f in big.glob("*.parquet")) / 2**20
            stream = run_child(work / "run-stream", big, a.steps, threads=cores, budget_mb=a.budget_mb, resolution=64)
            pre = run_child(work / "run-preload", fit, a.steps, threads=cores, mode="preloaded", resolution=64)
            fixed = run_child(work / "run-fixed", tiny, a.steps, threads=cores, mode="preloaded", resolution=64)
            print(f"larger than memory (64 px, batch {stream['batch']}, {a.steps - WARMUP} timed steps):")
            print(f"  streaming, {stream['train_rows']} rows ({a.rows * 64 * 64 * 3 / 2**20:.0f} MiB raw, "
                  f"{size:.0f} MiB of shards), memory_budget_mb {a.budget_mb}: {stream['images_per_s']:.1f} images/s, "
                  f"peak RSS {stream['peak_rss_mb']:.0f} MiB (bound: the vae rule's mem_mb {bound} MB: "
                  f"{'OK' if stream['peak_rss_mb'] * 2**20 <= bound * 1e6 else 'OVER'})")
            print(f"  preloaded, {pre['train_rows']} rows ({a.subset * 64 * 64 * 3 / 2**20:.0f} MiB raw): "
                  f"{pre['images_per_s']:.1f} images/s, peak RSS {pre['peak_rss_mb']:.0f} MiB")
            print(f"  fixed cost (preloaded, {fixed['train_rows']} rows): peak RSS {fixed['peak_rss_mb']:.0f} MiB; "
                  f"the streaming run held {stream['peak_rss_mb'] - fixed['peak_rss_mb']:.0f} MiB above it for "
                  f"{a.rows * 64 * 64 * 3 / 2**20:.0f} MiB of pixels")
            ratio = stream["images_per_s"] / pre["images_per_s"]
            print(f"  streaming / preloaded images/s: {ratio:.3f} (goal >= 0.90){'' if ratio >= 0.9 else '  BELOW GOAL'}")
        if "kernels" not in a.skip:
            kernels(a, work, cores)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
