"""One declaration per parameter (issue 20): the typed configs of pdd/core/config.py declare every key of
params.yaml (type, default, bounds, help); the JSON schema and docs/params.md are generated from them, and
this test fails when the committed files or params.yaml's values drift, in either direction."""
import copy
import dataclasses
import subprocess
import sys

import pytest
import yaml

from pdd.build import dag
from pdd.core import config
from pdd.core import params as params_mod
from pdd.core.errors import PddError
from conftest import REPO


def committed() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def test_the_committed_files_are_the_generated_ones():
    assert config.check_generated(REPO) == []
    assert (REPO / "workflow/schemas/params.schema.yaml").read_text(encoding="utf-8") == config.schema_text()
    assert (REPO / "docs/params.md").read_text(encoding="utf-8") == config.docs_text()


def test_every_committed_key_is_declared_with_its_value_as_default():
    assert config.declared() == committed()
    # and the typed configs built from the declared defaults are those of params.yaml
    assert config.check(config.declared()) == config.load(REPO / "params.yaml")


def test_the_schema_is_the_one_params_validates_against():
    assert params_mod.SCHEMA_PATH == REPO / "workflow/schemas/params.schema.yaml"
    assert yaml.safe_load(config.schema_text()) == params_mod._schema()


def test_every_declaration_has_help():
    def walk(cls, prefix=""):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{prefix}{f.name} has no help"
            sub = config._dataclass_of(config._hints(cls)[f.name])
            if sub is not None:
                walk(sub, f"{prefix}{f.name}.")
    walk(config.ParamsCfg)


def test_the_resources_rules_are_the_registry_stages():
    assert [f.name for f in dataclasses.fields(config.RulesCfg)] == [s.name for s in dag.PIPELINE]


def _plant(monkeypatch, cls, name, **meta):
    """Replace one declaration's metadata (what a stale edit of config.py would leave)."""
    fields = dict(cls.__dataclass_fields__)
    f = copy.copy(fields[name])
    f.metadata = {**f.metadata, **meta}
    fields[name] = f
    monkeypatch.setattr(cls, "__dataclass_fields__", fields)


def test_a_planted_default_that_differs_fails_naming_the_key(monkeypatch):
    _plant(monkeypatch, config.TokenizerCfg, "vocab_size", default=4096)
    problems = config.check_generated(REPO)
    assert "params.yaml: tokenizer.vocab_size: 2048 is not the declared default 4096 (pdd/core/config.py)" in problems
    assert any(p.startswith("docs/params.md: differs") for p in problems)   # the table shows defaults


def test_a_planted_nested_default_that_differs_fails_naming_the_key(monkeypatch):
    """A training section's defaults come from its parent's declaration (clip, vae and unet differ)."""
    train = copy.deepcopy(config.VaeCfg.__dataclass_fields__["train"].metadata["default"])
    train["optimizer"]["lr"] = 0.002
    _plant(monkeypatch, config.VaeCfg, "train", default=train)
    assert "params.yaml: vae.train.optimizer.lr: 0.001 is not the declared default 0.002 (pdd/core/config.py)" \
        in config.check_generated(REPO)


def test_a_planted_bound_that_differs_fails_on_the_schema(monkeypatch):
    _plant(monkeypatch, config.LatentsCfg, "batch_size", bounds={"minimum": 1, "maximum": 2048})
    problems = config.check_generated(REPO)
    assert any(p.startswith("workflow/schemas/params.schema.yaml: differs") for p in problems), problems


def test_params_yaml_drifting_from_the_declarations_fails(tmp_path):
    """The other direction: the committed file changes, the declarations do not."""
    for rel in config.GENERATED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text(encoding="utf-8"), encoding="utf-8")
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    (tmp_path / "params.yaml").write_text(text.replace("  min_frequency: 2 ", "  min_frequency: 3 ", 1))
    assert config.check_generated(tmp_path) == [
        "params.yaml: tokenizer.min_frequency: 3 is not the declared default 2 (pdd/core/config.py)"]
    (tmp_path / "params.yaml").write_text(text.replace("  min_frequency: 2 ", "  min_frequency: 2.0 ", 1))
    assert config.check_generated(tmp_path) == [
        "params.yaml: tokenizer.min_frequency: 2.0 is not the declared default 2 (pdd/core/config.py)"]
    (tmp_path / "params.yaml").write_text(text.replace("latents:\n", "latents:\n  new_knob: 1\n", 1))
    assert config.check_generated(tmp_path) == ["params.yaml: latents.new_knob: has no declaration in pdd/core/config.py"]
    (tmp_path / "params.yaml").write_text(text.replace("  threads: 2\n\nunet:", "\nunet:", 1))
    assert config.check_generated(tmp_path) == ["params.yaml: latents.threads: declared with default 2 but missing"]
    (tmp_path / "docs/params.md").write_text("edited by hand\n")
    assert any(p.startswith("docs/params.md: differs") for p in config.check_generated(tmp_path))


def test_write_then_check_from_the_command_line(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"))
    run = [sys.executable, "-m", "pdd.core.config", "--root", str(tmp_path)]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    check = subprocess.run(run + ["--check"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert check.returncode == 1 and "docs/params.md: differs" in check.stderr
    write = subprocess.run(run + ["--write"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert write.returncode == 0, write.stderr
    for rel in config.GENERATED:
        assert (tmp_path / rel).read_text(encoding="utf-8") == (REPO / rel).read_text(encoding="utf-8")


def test_a_cross_field_error_names_the_file_given(tmp_path):
    p = committed()
    p["vae"]["resolution"] = 64
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    with pytest.raises(PddError) as err:
        config.load(path)
    assert str(err.value) == (f"{path}: vae.resolution: 64 is not an exported resolution (export.resolutions is [32])")


@pytest.mark.parametrize("update, message", [
    ({"vae": {"block_out_channels": [32, 64, 36]}},
     "params.yaml: vae.block_out_channels entry 36 is not a multiple of vae.norm_num_groups=8"),
    ({"unet": {"attention": [False, True]}},
     "params.yaml: unet.attention has 2 entries but unet.block_out_channels has 3; give one flag per block"),
    ({"unet": {"norm_num_groups": 24}},
     "params.yaml: unet.block_out_channels entry 64 is not a multiple of unet.norm_num_groups=24"),
    ({"unet": {"mode": "pixel-unconditional"}},
     "params.yaml: unet.in_channels=8: the pixel-unconditional U-Net sees RGB (3)"),
    ({"unet": {"mode": "pixel-unconditional", "in_channels": 3, "resolution": 16}},
     "params.yaml: unet.resolution: 16 is not an exported resolution (export.resolutions is [32])"),
    ({"clip": {"image_size": 16}},
     "params.yaml: clip.image_size: 16 is not an exported resolution (export.resolutions is [32])"),
    ({"unet": {"in_channels": 4}},
     "params.yaml: unet.in_channels: 4 does not match vae.latent_channels=8: the U-Net denoises the VAE's latents"),
])
def test_the_cross_field_rules_are_in_config(update, message):
    """The rules that were in pdd/train/vae.py and unet.py (check_config) run in config.check now."""
    p = config.deep_update(committed(), update)
    with pytest.raises(PddError) as err:
        config.check(p)
    assert str(err.value) == message
