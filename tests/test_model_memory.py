"""Issue 25, minor case: a model far beyond memory, inside the schema's bounds, died in the allocator (or
was killed by the kernel) once training began. The stage's pre-flight now builds it on the meta device
(shapes only), counts its parameters and refuses it in one line naming the section and what to lower,
when even the floor of what training holds (weights, gradients, optimizer state, EMA) exceeds the memory
there is. The models of params.yaml pass, and the count is the real model's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_cfgs
from pdd.core import config
from pdd.core.errors import PddError
from pdd.data import export
from pdd.train import loop, unet, vae
from conftest import REPO

torch.set_num_threads(1)
WIDE = [4096, 4096, 4096, 4096]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, generated_snapshot):
    out = tmp_path_factory.mktemp("export")
    cfg = config.replace(tiny_cfgs()["export"], resolutions=(32,), shard_rows=100)
    export.export(generated_snapshot.path, out, cfg, seed=7)
    return out


def test_a_vae_far_beyond_memory_is_refused_by_the_stage_preflight(export_dir):
    from stages import vae as stage

    cfg = config.load(REPO / "params.yaml", {"vae": {"block_out_channels": WIDE, "layers_per_block": 8}})["vae"]
    with pytest.raises(PddError) as err:
        stage.check(SimpleNamespace(deps={"export": export_dir}, cfg=cfg))
    msg = str(err.value)
    assert msg.startswith("vae: the model has 22,652.2 M parameters; training it needs at least 337.5 GiB (16 bytes "
                          "per parameter"), msg
    assert "lower vae.block_out_channels, vae.layers_per_block" in msg and "\n" not in msg


def test_a_unet_far_beyond_memory_is_refused_by_its_input_check(export_dir):
    """unet.check_inputs: what the stage's pre-flight and train_unet run first (nothing is allocated)."""
    cfg = config.load(REPO / "params.yaml", {"unet": {
        "mode": "pixel-unconditional", "in_channels": 3, "block_out_channels": WIDE * 2, "attention": [True] * 8,
        "layers_per_block": 8}})["unet"]
    with pytest.raises(PddError, match=r"^unet: the model has [\d,.]+ M parameters; training it needs at least .* "
                                       r"GiB \(20 bytes per parameter: weights, gradients, optimizer state, EMA; "
                                       r"activations on top\) but only .* GiB is .*; lower unet.block_out_channels"):
        unet.check_inputs(cfg, None, export_dir=export_dir)


def test_the_committed_models_pass_and_are_counted_exactly():
    cfgs = config.load(REPO / "params.yaml")
    n = loop.check_memory(lambda: vae.VaeObjective(cfgs["vae"]), cfgs["vae"].train, "vae", "-")
    assert n == sum(p.numel() for p in vae.VaeObjective(cfgs["vae"]).parameters())
    build = lambda: unet.build_unet(cfgs["unet"], 8, 4, 128)   # noqa: E731
    assert loop.check_memory(build, cfgs["unet"].train, "unet", "-") == sum(p.numel() for p in build().parameters())
