"""params.yaml `compute` (issue 14): the deterministic switch (on by default) and the attention kernels, applied
by the runner to every stage that runs a model and recorded in every manifest."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO, TINY, deep_update, engine_env, tiny_cfgs
from pdd.core import config, determinism
from pdd.build.manifest import read_manifest
from pdd.core.errors import PddError
from pdd.train import synthetic


@pytest.fixture
def restore_torch_flags():
    """apply() switches process-wide torch flags: put them back for the tests that run after."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision,
             torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision,
             determinism.ATTENTION["kind"])
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved[3], saved[4]
    torch.backends.cudnn.rnn.fp32_precision = saved[5]
    determinism.ATTENTION["kind"] = saved[6]


def test_the_switch_is_on_by_default_and_turns_every_setting(restore_torch_flags):
    assert config.load(REPO / "params.yaml")["compute"] == config.ComputeCfg(deterministic=True, attention="sdpa")
    off = determinism.apply({"deterministic": False, "attention": "sdpa"})
    assert off["deterministic"] is False and off["deterministic_algorithms"] is False
    assert off["cudnn_benchmark"] is True and off["tf32"] == {"matmul": "tf32", "cudnn_conv": "tf32"}
    on = determinism.apply(config.ComputeCfg(deterministic=True, attention="sdpa"))
    assert on["deterministic"] is True and torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert on["tf32"] == {"matmul": "ieee", "cudnn_conv": "ieee"} and on["cublas_workspace_config"] == ":4096:8"
    assert on["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))
    # the record reads torch, not params: one flag turned off behind its back makes it say so
    torch.use_deterministic_algorithms(False)
    assert determinism.record()["deterministic"] is False


def test_sdpa_puts_the_diffusers_models_on_pytorch_attention(restore_torch_flags):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from pdd.train import unet, vae

    cfgs = tiny_cfgs({"vae": {"mid_attention": True}})
    determinism.apply(cfgs["compute"])
    u = unet.build_unet(cfgs["unet"], 8, 4, 32)
    v = vae.build_vae(cfgs["vae"])
    for model in (u, v):
        assert model.attn_processors and {type(p) for p in model.attn_processors.values()} == {AttnProcessor2_0}
    # a model loaded with other processors is put back on SDPA
    u.set_attn_processor(AttnProcessor())
    assert {type(p) for p in determinism.use_attention(u).attn_processors.values()} == {AttnProcessor2_0}


def test_xformers_with_the_switch_on_is_refused_by_name():
    params = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), {"compute": {"attention": "xformers"}})
    with pytest.raises(PddError, match=r"^params.yaml: compute.attention: xformers is not deterministic; set "
                                       r"compute.deterministic: false"):
        config.check(params)
    # a stage that runs no model is not refused for it
    config.check(params, only=("tokenizer",))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_xformers_without_a_gpu_is_one_line(restore_torch_flags):
    with pytest.raises(PddError, match="compute.attention: xformers needs a CUDA GPU"):
        determinism.apply({"deterministic": False, "attention": "xformers"})


# ---- through the runner: every manifest says whether its run was deterministic ---------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compute")
    params = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), json.loads(json.dumps(TINY)))
    params = deep_update(params, {"clip": {"train": {"steps": 4, "eval_every": 0, "checkpoint_every": 0,
                                                      "schedule": {"warmup_steps": 1}}}})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    synthetic.make_synthetic(root / "data/export", n_train=64, resolutions=[16], seed=0)
    return root


def run_stage(root, name, compute=None):
    if compute is not None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["compute"].update(compute)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=root, capture_output=True, text=True,
                          env={**engine_env(), "PYTHONPATH": str(REPO)}, timeout=600)


def test_manifests_record_the_switch(workdir):
    assert run_stage(workdir, "tokenizer").returncode == 0
    tok = read_manifest(workdir / "models/tokenizer")["determinism"]
    assert tok["deterministic"] is True and "no torch model" in tok["models"]

    on = run_stage(workdir, "clip", {"deterministic": True})
    assert on.returncode == 0, on.stderr[-2000:]
    m = read_manifest(workdir / "models/clip")
    assert m["determinism"]["deterministic"] is True and m["determinism"]["deterministic_algorithms"] is True
    assert m["params"]["compute"] == {"deterministic": True, "attention": "sdpa"}
    assert not any("compute.deterministic is false" in n for n in m["nondeterminism"])
    weights = (workdir / "models/clip/model.safetensors").read_bytes()

    off = run_stage(workdir, "clip", {"deterministic": False})
    assert off.returncode == 0, off.stderr[-2000:]
    m = read_manifest(workdir / "models/clip")
    assert m["determinism"]["deterministic"] is False and m["determinism"]["cudnn_benchmark"] is True
    assert any("compute.deterministic is false" in n for n in m["nondeterminism"])
    if not torch.cuda.is_available():   # on CPU the kernels are the same either way: so are the bytes
        assert (workdir / "models/clip/model.safetensors").read_bytes() == weights

    # a refused setting is one line, and the model already built stays
    bad = run_stage(workdir, "clip", {"deterministic": True, "attention": "xformers"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("pdd: error: params.yaml: compute.attention: xformers")
    assert read_manifest(workdir / "models/clip")["determinism"]["deterministic"] is False
    assert (workdir / "models/clip/model.safetensors").exists()
