"""Bench: bf16 against fp32 on this machine, side by side in one run (issue: use the silicon).

1. Bare kernels: a 2048 x 2048 matmul and a 128-channel 3x3 convolution (batch 32, 32 x 32), fp32 and bf16
   (autocast, as accelerate's `mixed_precision: bf16` runs them), best of --rounds interleaved rounds, in GFLOP/s.
   The matmul rates are the ceilings the stages' achieved FLOP/s are set against.
2. Each training stage's own loop (pdd.train.{clip,vae,unet}.train_*: the accelerate loop, its data order, EMA,
   clipping) on a synthetic export at the params.yaml sizes, `train.mixed_precision` "no" against "bf16",
   interleaved, best round: images/s, training FLOPs per image (forward + backward, counted in fp32 by
   FlopCounterMode), achieved GFLOP/s and that as a share of the bare matmul rate of the same precision.
3. Same-machine determinism of bf16: each stage trained twice in bf16 from the same seed; the saved weights'
   hashes compared (a mismatch is printed as such: bf16 is then not the default).

What bf16 does to quality at equal wall-clock is measured on the real demo data by bench/scaling.py (the
yardstick's figures; see bench/RESULTS.md).

    python bench/precision.py [--steps 25] [--rounds 2]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common  # the set-up: offline, the repository on sys.path (first)
import torch

import train_clip  # noqa: E402  (bench/ is on sys.path as the script's folder)
import train_unet  # noqa: E402
import train_vae  # noqa: E402
from pdd.core import config  # noqa: E402
from pdd.core.hashing import hash_path  # noqa: E402
from pdd.train import clip, unet, vae  # noqa: E402

PRECISIONS = ("no", "bf16")


def _timed(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def kernels(rounds: int) -> dict:
    """GFLOP/s of the bare matmul and convolution, fp32 and bf16 (autocast), best round of each."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, conv = torch.randn(32, 128, 32, 32), torch.nn.Conv2d(128, 128, 3, padding=1)
    mm_flops, conv_flops = 2 * 2048 ** 3, 2 * 32 * 128 * 128 * 9 * 32 * 32
    out = {"matmul": {}, "conv": {}}
    for _ in range(rounds):
        for p in PRECISIONS:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16"):
                mm = mm_flops / _timed(lambda: a @ b, 5) / 1e9
                cv = conv_flops / _timed(lambda: conv(x), 5) / 1e9
            out["matmul"][p] = max(out["matmul"].get(p, 0.0), mm)
            out["conv"][p] = max(out["conv"].get(p, 0.0), cv)
    return out


def with_precision(cfg, p: str):
    return config.patch(cfg, {"train": {"mixed_precision": p}})


def main(argv=None) -> int:
    a = _common.parse(__doc__, "precision", argv)
    if a is None:
        return 2
    k = kernels(a.rounds)
    for name in ("matmul", "conv"):
        r = k[name]
        print(f"bare {name:<7} fp32 {r['no']:8.1f} GFLOP/s   bf16 {r['bf16']:8.1f} GFLOP/s   bf16/fp32 {r['bf16'] / r['no']:.2f}x")
    ceiling = k["matmul"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vcfg, cfgs = _common.stage_configs(a.params, "vae", a.steps)
        ucfg, _ = _common.stage_configs(a.params, "unet", a.steps)
        ccfg, _ = _common.stage_configs(a.params, "clip", a.steps)
        n_train = max(vcfg.train.batch_size, ucfg.train.batch_size, ccfg.train.batch_size) * 8
        train_unet.make_inputs(root, cfgs, n_train)   # export, tokenizer, untrained CLIP/VAE, latents

        def run_vae(cfg, out):
            return vae.train_vae(root / "export", root / out, cfg, 1, ckpt_dir=root / f"ck-{out}", progress=False)

        def run_unet(cfg, out):
            return unet.train_unet(cfg, 1, out_dir=root / out, ckpt_dir=root / f"ck-{out}", latents_dir=root / "latents",
                                   export_dir=root / "export", vae_cfg=vcfg, progress=False)

        def run_clip(cfg, out):
            return clip.train_clip(root / "export", root / "tok", root / out, cfg, 1, ckpt_dir=root / f"ck-{out}",
                                   progress=False)

        m, x = train_vae.bare_setup(root, vcfg)
        fpi = {"vae": train_vae.flops_per_image(m, x, vcfg)}
        m, x0, ti, st = train_unet.bare_setup(root, ucfg)
        fpi["unet"] = train_unet.flops_per_image(m, x0, ti, st, ucfg)
        m, batch = train_clip.bare_setup(root, ccfg)
        fpi["clip"] = train_clip.flops_per_image(m, batch)

        stages = {"vae": (run_vae, vcfg), "unet": (run_unet, ucfg), "clip": (run_clip, ccfg)}
        rates = {s: {p: [] for p in PRECISIONS} for s in stages}
        for r in range(a.rounds):
            for s, (fn, cfg) in stages.items():
                for p in PRECISIONS:
                    rates[s][p].append(_common.stage_rate(fn(with_precision(cfg, p), f"{s}-{p}-{r}")))
        print(f"\nstage loops ({a.steps} steps, first {_common.WARMUP} untimed, best of {a.rounds} interleaved rounds):")
        for s in stages:
            line = []
            for p in PRECISIONS:
                best = max(rates[s][p])
                gf = best * fpi[s] / 1e9
                line.append(f"{'fp32' if p == 'no' else p} {best:7.1f} img/s {gf:6.1f} GFLOP/s "
                            f"({gf / ceiling[p]:.0%} of bare matmul)")
            print(f"  {s:<5} {fpi[s] / 1e6:7.1f} MFLOP/img   " + "   ".join(line)
                  + f"   bf16/fp32 {max(rates[s]['bf16']) / max(rates[s]['no']):.2f}x")

        print("\nbf16 determinism on this machine (two runs, same seed, weights hashed):")
        bad = 0
        for s, (fn, cfg) in stages.items():
            h = [hash_path(root / out) for out in (fn(with_precision(cfg, "bf16"), f"{s}-det-{i}") and f"{s}-det-{i}"
                                                   for i in range(2))]
            same = h[0] == h[1]
            bad += not same
            print(f"  {s:<5} {'identical' if same else 'DIFFERENT'} ({h[0][:16]} / {h[1][:16]})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
