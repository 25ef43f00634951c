"""Bench: recipes and training budgets, each judged by the yardstick (stage quality), on the real demo build.

Every run is the DAG's own stages (`python -m stages.<name> --params P`) in a scratch folder beside the build:
the built inputs it does not retrain (export, tokenizer, clip, judge and, unless a vae.* knob is set, vae and
latents) are linked in from the repository's workspace (build them first: `dvc repro judge latents`), the
params are params.yaml with this run's changes, and the stages it does run (vae and latents when a vae.*
knob is set, then unet and quality) write into the scratch folder only. So a point here is what `dvc exp run
-S ...` of the same changes would give, without touching the workspace, and its figures are the ones
metrics/quality.json would hold. Each run's record (changes, wall-clock of each stage, the U-Net's training
FLOPs, the yardstick's figures) is appended to the --out JSON-lines file.

    python bench/scaling.py run NAME [--set unet.train.steps=1250 ...]     # one candidate
    python bench/scaling.py budgets --factors 0.25 0.5 1 2 [--prefix budget-] [--set ...]   # the scaling curve: unet.train.steps x f
    python bench/scaling.py plot [--out bench/scaling.jsonl] [--png bench/scaling.png]
    python bench/scaling.py [table]                                        # markdown rows for bench/RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ruamel.yaml import YAML  # noqa: E402

from pdd.core import params as params_mod  # noqa: E402
from pdd.core.errors import PddError  # noqa: E402

LINKED = ["data/snapshots", "data/audit", "data/curate", "data/export", "models/tokenizer", "models/clip", "models/judge"]
LINKED_VAE = ["models/vae", "data/latents"]
OUT = ROOT / "bench" / "scaling.jsonl"


def _set(data: dict, dotted: str, text: str) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if k not in node:
            raise PddError(f"--set {dotted}: params.yaml has no section {k!r}")
        node = node[k]
    if keys[-1] not in node:
        raise PddError(f"--set {dotted}: params.yaml has no key {keys[-1]!r} there")
    node[keys[-1]] = params_mod.parse(text, f"--set {dotted}")


def unet_flops(scratch: Path, params_file: Path) -> float:
    """Training FLOPs per image of the U-Net these params build (forward + backward, FlopCounterMode)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import train_unet  # noqa: E402
    from pdd.core import config
    cfgs = config.load(params_file)
    model, x0, ti, st = train_unet.bare_setup(scratch / "data", cfgs["unet"])
    return train_unet.flops_per_image(model, x0, ti, st, cfgs["unet"])


def scratch_of(name: str) -> Path:
    return Path(os.environ.get("PDD_SCALING_DIR", "/tmp/pdd-scaling")) / name


def run(name: str, sets: list[str], out: Path, keep: bool = False, stop_after: str | None = None,
        reuse: str | None = None, vae_from: str | None = None) -> dict | None:
    """One candidate; reuse: an earlier run's trained vae, latents and unet (only sampling knobs may differ),
    so only the quality stage runs."""
    scratch = scratch_of(name)
    if scratch.exists():
        shutil.rmtree(scratch)
    (scratch / "data").mkdir(parents=True)
    (scratch / "models").mkdir()
    yaml = YAML()
    yaml.version = (1, 2)
    data = yaml.load((ROOT / "params.yaml").read_text())
    for s in sets:
        key, _, value = s.partition("=")
        _set(data, key, value)
    with open(scratch / "params.yaml", "w") as f:
        yaml.dump(data, f)
    # curate.* / export.*: a new training set for the VAE and the U-Net (the tokenizer, the conditioning CLIP
    # and the judge stay the workspace's, so the yardstick is the same one)
    retrain_data = any(s.startswith(("curate.", "export.")) for s in sets) and not reuse and not vae_from
    retrain_vae = retrain_data or (any(s.startswith("vae.") for s in sets) and not reuse and not vae_from)
    data_links = ["data/curate", "data/export"]
    for rel in [r for r in LINKED if not (retrain_data and r in data_links)] + ([] if retrain_vae or reuse or vae_from else LINKED_VAE):
        if not (ROOT / rel).exists():
            raise PddError(f"{rel} is not built in {ROOT}; run `dvc repro judge latents` first")
        (scratch / rel).symlink_to(ROOT / rel)
    if vae_from:
        for rel in LINKED_VAE:
            src = scratch_of(vae_from) / rel
            if not src.exists():
                raise PddError(f"--vae-from {vae_from}: {src} is not there; run that candidate first")
            (scratch / rel).symlink_to(src.resolve())
    if reuse:
        for rel in LINKED_VAE + ["models/unet", "metrics/unet.json"] + (["metrics/vae.json"] if (scratch_of(reuse) / "metrics/vae.json").exists() else []):
            src = scratch_of(reuse) / rel
            if not src.exists():
                raise PddError(f"--reuse {reuse}: {src} is not there; run that candidate first")
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).symlink_to(src.resolve())
        retrain_vae = (scratch / "metrics/vae.json").exists()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    took = {}
    stages = (["curate", "export"] if retrain_data else []) + (["vae", "latents"] if retrain_vae else []) + ["unet"]
    for stage in ["sample", "quality"] if reuse else stages + ["sample", "quality"]:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--params", "params.yaml"], cwd=scratch, env=env)
        took[stage] = round(time.perf_counter() - t0, 1)
        if r.returncode:
            raise PddError(f"{name}: stage {stage} failed (exit {r.returncode}); its output is above")
        if stage == stop_after and stop_after != "quality":
            print(json.dumps({"name": name, "set": sets, "seconds": took,
                              "metrics": json.loads((scratch / f"metrics/{stage}.json").read_text())}, indent=1))
            return None
    q = json.loads((scratch / "metrics/quality.json").read_text())
    u = json.loads((scratch / "metrics/unet.json").read_text())
    v = json.loads((scratch / "metrics/vae.json").read_text()) if retrain_vae else None
    p = params_mod.read(scratch / "params.yaml")
    fpi = unet_flops(scratch, scratch / "params.yaml")
    steps, batch = p["unet"]["train"]["steps"], p["unet"]["train"]["batch_size"]
    if reuse:
        took = {**json.loads((scratch_of(reuse) / "seconds.json").read_text()), **took}
    (scratch / "seconds.json").write_text(json.dumps(took))
    rec = {"name": name, "set": sets, "reuse": reuse, "seconds": took, "unet_steps": steps, "unet_batch": batch,
           "unet_parameters": u.get("parameters"), "unet_train_flops": fpi * steps * batch,
           "unet_val_loss": u.get("val_loss"), "vae": v,
           "quality": {k: q[k] for k in ("r_precision", "r_precision_same_category", "category_accuracy", "precision",
                                         "recall", "colour", "kid", "swd", "clip_score")}}
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    for grid in ("quality_grid", "sample_grid"):
        if keep and (scratch / f"metrics/{grid}.png").exists():
            shutil.copy(scratch / f"metrics/{grid}.png", out.parent / f"scaling-{name}-{grid}.png")
    print(json.dumps(rec, indent=1))
    return rec


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


FIGS = [("r_precision", "R-precision (random distractors)"), ("r_precision_same_category", "R-precision (same category)"),
        ("category_accuracy", "category accuracy"), ("recall", "recall"), ("colour", "colour distance (lower better)"),
        ("kid", "KID (lower better)")]


# the curves drawn: runs named PREFIX<factor>x (`budgets --prefix`), oldest recipe first
SERIES = [("budget-", "model, lr 1e-3"), ("lr2e-3-budget-", "model, lr 2e-3 (default)")]


def plot(out: Path, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = [(label, sorted((r for r in read(out) if r["name"].startswith(prefix)), key=lambda r: r["unet_train_flops"]))
              for prefix, label in SERIES]
    series = [(label, recs) for label, recs in series if recs]
    if not series:
        raise PddError(f"{out}: no runs named {' or '.join(p + '*' for p, _ in SERIES)}; "
                       "run `python bench/scaling.py budgets` first")
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    xs = sorted({r["unet_train_flops"] / 1e12 for _, recs in series for r in recs})
    for ax, (key, title) in zip(axes.flat, FIGS):
        scale = 1e3 if key == "kid" else 1.0
        for label, recs in series:
            x = [r["unet_train_flops"] / 1e12 for r in recs]
            ax.plot(x, [r["quality"][key]["model"] * scale for r in recs], "o-", label=label)
            for xi, r in zip(x, recs):
                ax.annotate(f"{r['unet_steps']}", (xi, r["quality"][key]["model"] * scale), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        q = [series[-1][1][-1]["quality"][key]]
        ax.axhline(q[-1]["real"] * scale, color="green", ls="--", label="real val images")
        chance = q[-1]["chance"] * scale
        if key in ("kid", "colour", "swd"):     # chance is far off the scale of these: named, not drawn
            title += f"; chance {chance:.3g}"
        else:
            ax.axhline(chance, color="grey", ls=":", label="chance")
        if key == "colour":
            ax.axhline(2 * q[-1]["real"], color="orange", ls="-.", label="target: 2 x real")
            ax.legend(fontsize=7)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{v:.0f}" for v in xs])
        ax.minorticks_off()
        ax.set_title(title + (" x 1e3" if key == "kid" else ""), fontsize=9)
        ax.set_xlabel("U-Net training TFLOP (labels: steps)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("PD-Diffusion demo: the same recipe at several U-Net budgets, judged by the yardstick")
    fig.tight_layout()
    fig.savefig(png, dpi=80, metadata={"Software": None})
    print(f"wrote {png}")


def table(out: Path) -> None:
    print("| run | changes | unet steps | U-Net TFLOP | wall (s) | R-prec | R-prec same cat. | cat. acc. | precision | "
          "recall | colour | KID x1e3 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in read(out):
        q = r["quality"]
        print(f"| {r['name']} | {' '.join(f'`{s}`' for s in r['set']) or '(defaults)'} | {r['unet_steps']} | "
              f"{r['unet_train_flops'] / 1e12:.1f} | {sum(r['seconds'].values()):.0f} | {q['r_precision']['model']:.3f} | "
              f"{q['r_precision_same_category']['model']:.3f} | {q['category_accuracy']['model']:.3f} | "
              f"{q['precision']['model']:.3f} | {q['recall']['model']:.3f} | {q['colour']['model']:.3f} | "
              f"{q['kid']['model'] * 1e3:.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="table", choices=["run", "budgets", "plot", "table"],
                   help="default: table (what is recorded; `tasks.py bench` runs it so, the runs take half an hour)")
    p.add_argument("name", nargs="?", default="candidate")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params change (dotted key)")
    p.add_argument("--factors", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--prefix", default="budget-", help="budgets: runs are named PREFIX<factor>x (the plot draws "
                   "one curve per prefix in SERIES)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--png", type=Path, default=ROOT / "bench" / "scaling.png")
    p.add_argument("--keep-grid", action="store_true", help="copy each run's quality grid beside --out")
    p.add_argument("--reuse", metavar="RUN", help="run: take RUN's trained vae, latents and unet; only quality runs "
                   "(for sampling knobs: sample.guidance_scale, sample.steps, sample.scheduler)")
    p.add_argument("--vae-from", metavar="RUN", help="take RUN's trained vae and latents (its vae.* changes must be "
                   "passed again with --set, so that the params match)")
    p.add_argument("--stop-after", default=None, choices=["vae", "latents", "unet", "quality"],
                   help="run: stop after this stage and print its metrics (nothing is recorded)")
    a = p.parse_args(argv)
    try:
        if a.command == "run":
            run(a.name, a.set, a.out, a.keep_grid, a.stop_after, a.reuse, a.vae_from)
        elif a.command == "budgets":
            base = params_mod.read(ROOT / "params.yaml")["unet"]["train"]
            for f in a.factors:
                steps = max(1, round(base["steps"] * f))
                sets = a.set + [f"unet.train.steps={steps}",
                                f"unet.train.checkpoint_every={min(base['checkpoint_every'], steps)}",
                                f"unet.train.eval_every={min(base['eval_every'], steps)}",
                                f"unet.train.schedule.warmup_steps={min(base['schedule']['warmup_steps'], steps // 10)}"]
                # the default budget of a run already made (--reuse RUN) is only graded again
                run(f"{a.prefix}{f:g}x", sets, a.out, a.keep_grid, reuse=a.reuse if f == 1 else None,
                    vae_from=None if f == 1 and a.reuse else a.vae_from)
            plot(a.out, a.png)
        elif a.command == "plot":
            plot(a.out, a.png)
        else:
            table(a.out)
    except PddError as e:
        print(f"scaling: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
