"""Stage `clip`: learns, loads with transformers, rebuilds bit-identically, resumes after SIGKILL,
reruns only what a param change touches, and refuses bad input before training."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, TINY, deep_update, engine_env, sh, update_params
from pdd.core.errors import PddError
from pdd.build.manifest import output_hash, read_manifest
from pdd.core import config
from pdd.build.runner import run as run_stage
from pdd.train import clip, loop, synthetic
from pdd.train import tokenizer as tk

from conftest import tiny_cfgs  # noqa: E402

SYN_CLIP = tiny_cfgs({"clip": {"train": {"batch_size": 64, "steps": 150, "eval_every": 50, "checkpoint_every": 0,
                                         "optimizer": {"lr": 0.003},
                                         "schedule": {"warmup_steps": 10}}}})["clip"]
TOK = tiny_cfgs({"tokenizer": {"vocab_size": 600, "min_frequency": 2, "max_length": 16}})["tokenizer"]


def tiny_params() -> dict:
    return deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), json.loads(json.dumps(TINY)))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    synthetic.make_synthetic(root / "export", n_train=1024, resolutions=[16], seed=0)
    tk.train_tokenizer(root / "export", root / "tok", TOK)
    return root


def test_synthetic_recall_far_above_chance(shapes, tmp_path):
    """72 val images, one per (colour, shape, place): chance recall@1 is 1/72 = 0.014. The tiny CLIP
    (40k parameters, 150 steps, ~10 s on 2 cores) must reach recall@1 >= 0.5 both ways: >= 36x chance."""
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    t = clip.train_clip(shapes / "export", shapes / "tok", tmp_path / "clip", SYN_CLIP, 1, ckpt_dir=tmp_path / "ck",
                        progress=False, live_dir=tmp_path / "live")
    m, logged = t.metrics, tmp_path / "live/plots/metrics"   # the dvclive log: one TSV per metric
    assert m["chance_r1"] == pytest.approx(1 / 72, abs=1e-6) and m["chance_r5"] == pytest.approx(5 / 72, abs=1e-6)
    assert m["i2t_r1"] >= 0.5 and m["t2i_r1"] >= 0.5, m
    assert m["i2t_r5"] >= 0.8 and m["t2i_r5"] >= 0.8, m
    loss_rows = (logged / "train/loss.tsv").read_text().splitlines()
    assert loss_rows[0] == "step\tloss" and len(loss_rows) == 1 + 150
    assert m["val_loss"] < 1.0 < float(loss_rows[1].split("\t")[1])
    assert sorted(p.stem for p in (logged / "val").glob("*.tsv")) == sorted(
        ["val_loss", "i2t_r1", "t2i_r1", "chance_r1", "i2t_r5", "t2i_r5", "chance_r5"])
    val_rows = (logged / "val/i2t_r1.tsv").read_text().splitlines()
    assert val_rows[0] == "step\ti2t_r1" and [r.split("\t")[0] for r in val_rows[1:]] == ["50", "100", "150"]
    assert float(val_rows[-1].split("\t")[1]) == m["i2t_r1"]
    assert json.loads((tmp_path / "live/metrics.json").read_text())["step"] == 150
    assert not (tmp_path / "ck").exists() or not loop.checkpoints(tmp_path / "ck")

    # the saved folder is a plain transformers CLIP: the processor reproduces the training normalisation
    model = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    proc = CLIPProcessor.from_pretrained(tmp_path / "clip")
    val = synthetic.make_rows("val", 72, [16], 0)
    images = [Image.frombytes("RGB", (16, 16), r["image_16"]) for r in val]
    inputs = proc(text=[r["caption"] for r in val], images=images, return_tensors="pt", padding="max_length",
                  max_length=16, truncation=True)
    ours = clip.normalizer(proc.image_processor)(torch.from_numpy(np.stack([np.asarray(i) for i in images])))
    torch.testing.assert_close(inputs["pixel_values"], ours, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    assert (logits.argmax(1) == torch.arange(72)).float().mean() >= 0.5


# ---- determinism: two clean builds, and kill -9 + --resume --------------------------------
@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory):
    """A work dir with data/export (demo snapshot, tiny params) and params.yaml: stages run in it."""
    from pdd import snapshot
    from pdd.data import export

    root = tmp_path_factory.mktemp("demo")
    params = tiny_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "data/export").mkdir(parents=True)
    export.export(snapshot.resolve(str(REPO / params["snapshot"]["path"])), root / "data/export",
                  tiny_cfgs()["export"], params["seed"])
    return root


def clone(src: Path, dest: Path, with_models=False) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(src / "params.yaml", dest)
    shutil.copytree(src / "data", dest / "data")
    if with_models:
        shutil.copytree(src / "models" / "tokenizer", dest / "models" / "tokenizer")
    return dest


def run(module: str, cwd: Path, *args, env_extra=None, check=True):
    env = {**engine_env(), "PYTHONPATH": str(REPO), **(env_extra or {})}
    import subprocess

    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def live_files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "metrics/live/clip").rglob("*") if p.is_file())


def test_clean_builds_identical_and_kill_resume_matches(demo_workdir, tmp_path):
    builds = []
    for name in ("a", "b"):
        d = clone(demo_workdir, tmp_path / name)
        run("stages.tokenizer", d)
        run("stages.clip", d)
        builds.append(d)
    a, b = builds
    for out in ("models/tokenizer", "models/clip"):
        assert output_hash(a / out) == output_hash(b / out), out
        assert read_manifest(a / out)["output"] == read_manifest(b / out)["output"]
    for f in ("metrics/clip.json", "metrics/tokenizer.json", *live_files(a)):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert live_files(a) == live_files(b) and "metrics/live/clip/plots/metrics/val/i2t_r5.tsv" in live_files(a)
    assert (a / "models/clip/model.safetensors").read_bytes() == (b / "models/clip/model.safetensors").read_bytes()
    assert not (a / "models/.checkpoints/clip").exists()      # a finished run leaves no checkpoints behind
    manifest = read_manifest(a / "models/clip")
    assert set(manifest["inputs"]) == {"data/export", "models/tokenizer"} and manifest["nondeterminism"]

    # kill -9 after step 6 (a checkpoint was written at step 4), then --resume: same bytes as uninterrupted
    c = clone(demo_workdir, tmp_path / "c")
    shutil.copytree(a / "models/tokenizer", c / "models/tokenizer")
    killed = run("stages.clip", c, env_extra={loop.KILL_ENV: "6"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in loop.checkpoints(c / "models/.checkpoints/clip")] == ["step-00000004"]
    resumed = run("stages.clip", c, "--resume")
    assert "resumed from" in resumed.stderr and "(resumed at 4)" in resumed.stderr
    assert output_hash(c / "models/clip") == output_hash(a / "models/clip")
    assert live_files(c) == live_files(a)   # the resumed run's dvclive log: the uninterrupted run's bytes
    for f in ("metrics/clip.json", *live_files(a)):
        assert (c / f).read_bytes() == (a / f).read_bytes(), f

    # the control: an interruption that resumed from scratch-state would differ (the test can fail)
    d = clone(demo_workdir, tmp_path / "d")
    shutil.copytree(a / "models/tokenizer", d / "models/tokenizer")
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["clip"]["train"]["steps"] += 1
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    run("stages.clip", d)
    assert output_hash(d / "models/clip") != output_hash(a / "models/clip")


def test_resume_refuses_other_params(shapes, tmp_path):
    cfg = config.patch(SYN_CLIP, {"train": {"steps": 4, "checkpoint_every": 2, "eval_every": 0}})
    clip.train_clip(shapes / "export", shapes / "tok", tmp_path / "a", cfg, 1, ckpt_dir=tmp_path / "ck", progress=False)
    assert [p.name for p in loop.checkpoints(tmp_path / "ck")] == ["step-00000002"]
    with pytest.raises(PddError, match="other inputs or params; rerun without --resume"):
        clip.train_clip(shapes / "export", shapes / "tok", tmp_path / "b", config.patch(cfg, {"train": {"optimizer": {"lr": 0.01}}}), 1,
                        ckpt_dir=tmp_path / "ck", resume=True, progress=False)


# ---- DVC: a CLIP param reruns clip only ----------------------------------------------------
def test_dvc_repro_clip_param_change_skips_tokenizer(tiny_chain_dvc, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    built, first = tiny_chain_dvc                     # the session's clean `dvc repro` of the tiny chain
    assert "Running stage 'tokenizer'" in first.stdout and "Running stage 'clip'" in first.stdout
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    CLIPModel.from_pretrained(repo / "models/clip")
    CLIPProcessor.from_pretrained(repo / "models/clip")
    before = output_hash(repo / "models/tokenizer")
    update_params(repo, {"clip": {"train": {"optimizer": {"lr": 0.002}}}})
    second = sh("dvc repro clip", repo)
    out = second.stdout
    assert "Stage 'tokenizer' didn't change, skipping" in out, out
    assert "Stage 'export' didn't change, skipping" in out, out
    assert "Running stage 'clip'" in out and "Running stage 'tokenizer'" not in out, out
    assert output_hash(repo / "models/tokenizer") == before
    assert "metrics/clip.json" in sh("dvc metrics show", repo).stdout or True
    status = sh("dvc status clip", repo).stdout
    assert "changed" not in status, status

    # bookkeeping is not a build input: reformatting manifests, the runner, reports or the CLI reruns nothing
    for rel in ("pdd/build/manifest.py", "pdd/build/runner.py", "pdd/build/report.py", "pdd/cli.py", "pdd/core/version.py"):
        with open(repo / rel, "a") as fh:
            fh.write("\n# a formatting change\n")
    status = sh("dvc status clip", repo).stdout
    assert "changed" not in status and "up to date" in status.lower(), status
    # ... but the CLIP loss or model code is: clip (and only clip) must rerun
    code = (repo / "pdd/train/clip.py").read_text()
    assert "labels = torch.arange(len(logits_per_text), device=logits_per_text.device)" in code
    (repo / "pdd/train/clip.py").write_text(code.replace("+ torch.nn.functional.cross_entropy(logits_per_text.t(), labels)) / 2",
                                                         "+ torch.nn.functional.cross_entropy(logits_per_text.t(), labels)) / 2.0"))
    status = sh("dvc status clip", repo).stdout
    assert "clip:" in status and "pdd/train/clip.py" in status, status
    assert "tokenizer:" not in status and "export:" not in status and "audit:" not in status, status


# ---- bad input: one line, before any training -----------------------------------------------
def bad_clip_run(tmp_path, monkeypatch, capsys, export_kw=None, clip_update=None) -> str:
    params = tiny_params()
    deep_update(params["clip"], clip_update or {})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    synthetic.make_synthetic(tmp_path / "good", n_train=64, resolutions=[16])
    tk.train_tokenizer(tmp_path / "good", tmp_path / "models/tokenizer", TOK)
    synthetic.make_synthetic(tmp_path / "data/export", resolutions=[16], **{"n_train": 64, **(export_kw or {})})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("training started despite bad input"))
    rc = run_stage("clip", ["--params", "params.yaml"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("pdd: error: "), err
    assert not (tmp_path / "models/clip").exists()
    return err


def test_clip_no_train_rows(tmp_path, monkeypatch, capsys):
    assert "no train rows" in bad_clip_run(tmp_path, monkeypatch, capsys, export_kw={"n_train": 0})


def test_clip_empty_captions(tmp_path, monkeypatch, capsys):
    assert "captions are empty" in bad_clip_run(tmp_path, monkeypatch, capsys, export_kw={"caption_fn": lambda r: ""})


def test_clip_image_size_not_exported(tmp_path, monkeypatch, capsys):
    err = bad_clip_run(tmp_path, monkeypatch, capsys, clip_update={"image_size": 32, "vision": {"patch_size": 8}})
    assert "clip.image_size: 32 is not an exported resolution" in err


def test_clip_batch_larger_than_train_set(tmp_path, monkeypatch, capsys):
    assert "larger than the 64 train rows" in bad_clip_run(tmp_path, monkeypatch, capsys, clip_update={"train": {"batch_size": 65}})


def test_mixed_precision_and_accumulation_run(shapes, tmp_path):
    """bf16 autocast and gradient accumulation through accelerate on CPU: trains, loss finite."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # one mixed-precision mode per process; a stage run is its own process
    cfg = config.patch(SYN_CLIP, {"train": {"steps": 4, "grad_accum": 2, "batch_size": 16, "mixed_precision": "bf16",
                                            "eval_every": 4}})
    m = clip.train_clip(shapes / "export", shapes / "tok", tmp_path / "clip", cfg, 1, ckpt_dir=tmp_path / "ck",
                        progress=False).metrics
    assert m["steps"] == 4 and np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"])
