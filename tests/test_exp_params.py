"""params.yaml as DVC writes it (issue 24, items 1 and 2): `dvc exp run -S` rewrites params.yaml in YAML 1.2
and drops the quotes around "no"; pdd and the Snakefile read it as YAML 1.2 too. The smoke preset
(params-smoke.yaml) goes through `dvc exp run -S` unchanged, and changing `steps` alone is a valid run."""
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from pdd.core import config
from pdd.core import params as params_mod
from pdd.core.errors import PddError
from pdd.train.loop import lr_lambda
from conftest import REPO, TINY, deep_update, engine_env, sh

PARAMS = (REPO / "params.yaml").read_text(encoding="utf-8")


def dvc_set(path, overrides):
    """DVC's own `--set-param` code (what `dvc exp run -S` runs before the stages) on a params file."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(path, list(overrides))
    return path.read_text(encoding="utf-8")


def test_params_as_dvc_rewrites_them_load(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS, encoding="utf-8")
    text = dvc_set(path, ["unet.train.steps=20", "clip.train.steps=30"])
    assert 'mixed_precision: "no"' in PARAMS and "mixed_precision: no " in text   # DVC dropped the quotes
    assert yaml.safe_load(text)["clip"]["train"]["mixed_precision"] is False      # what YAML 1.1 makes of it
    params = params_mod.load(path)
    assert [params[s]["train"]["mixed_precision"] for s in ("clip", "vae", "unet")] == ["no", "bf16", "bf16"]
    assert params["unet"]["train"]["steps"] == 20 and params["clip"]["train"]["steps"] == 30
    assert config.check(params)["unet"].train.steps == 20   # steps alone changed: warm-up 100, evals 500 stay valid


def test_bare_words_stay_strings_and_exponents_are_numbers(tmp_path):
    text = PARAMS.replace('mixed_precision: "no"', "mixed_precision: no")
    text = text.replace('    - "Apple, food/fruit, apple, fruit"\n', "    - no\n    - yes\n    - on\n    - off\n    - y\n")
    text = text.replace("eps: 1.0e-6", "eps: 1e-06")   # how a YAML 1.2 writer may put it (PyYAML: a string)
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    params = params_mod.load(path)
    assert params["sample"]["prompts"][:5] == ["no", "yes", "on", "off", "y"]
    assert params["clip"]["train"]["mixed_precision"] == "no"
    assert params["clip"]["train"]["optimizer"]["eps"] == 1e-06
    assert config.check(params)["sample"].prompts[0] == "no"


def test_snakefile_reads_params_as_yaml12():
    """The Snakefile re-reads params.yaml with pdd's reader over Snakemake's YAML 1.1 configfile."""
    text = (REPO / "Snakefile").read_text()
    assert 'update_config(config, cluster.read_params_or_exit("params.yaml"))' in text


def test_steps_alone_is_a_valid_run():
    cfgs = config.load(REPO / "params.yaml", {s: {"train": {"steps": 20}} for s in ("clip", "vae", "unet")})
    unet = cfgs["unet"].train
    assert unet.schedule.warmup_steps == 100 and unet.eval_every == 500 and unet.checkpoint_every == 500
    # the warm-up is cut to the steps: the learning rate reaches its peak at the last step
    f = lr_lambda("cosine", min(unet.schedule.warmup_steps, 20), 20, 0.1)
    assert f(19) == 1.0 and f(0) == pytest.approx(1 / 20)


def test_smoke_preset_goes_through_dvc_set_param(tmp_path):
    assert config.preset(REPO / "params-smoke.yaml") == TINY   # the tests' tiny chain is the preset
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS, encoding="utf-8")
    dvc_set(path, config.set_params(TINY))
    got = params_mod.load(path)
    assert got == deep_update(params_mod.load(REPO / "params.yaml"), json.loads(json.dumps(TINY)))
    config.check(got)


def test_set_args_lines_feed_xargs(tmp_path):
    """The documented line: `pdd params set-args params-smoke.yaml | xargs dvc exp run` (here xargs feeds a
    printer of its arguments instead of dvc)."""
    show = "import json, sys; print(json.dumps(sys.argv[1:]))"
    proc = subprocess.run(f"{sys.executable} -m pdd params set-args params-smoke.yaml | xargs {sys.executable} -c "
                          f"'{show}'", shell=True, cwd=REPO, capture_output=True, text=True,
                          env={**engine_env(), "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    args = json.loads(proc.stdout)
    assert args[0::2] == ["-S"] * (len(args) // 2)
    assert args[1::2] == config.set_params(TINY)
    assert 'sample.prompts=["a red apple","a painting of a house"]' in args


@pytest.mark.parametrize("preset, message", [
    ({"unet": {"train": {"stepz": 3}}}, "unet.train.stepz: not a key of params.yaml"),
    ({"unet": {"train": {"steps": 0}}}, "unet.train.steps: 0 is less than the minimum of 1"),
    ({"vae": {"resolution": 64}}, "vae.resolution: 64 is not an exported resolution"),
])
def test_a_bad_preset_is_one_line(tmp_path, preset, message):
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(PddError) as err:
        config.preset(path, REPO / "params.yaml")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_dvc_exp_run_set_param_then_exp_show(tiny_chain_dvc, tmp_path):
    """Real `dvc exp run -S` on four keys of three stages of the built tiny chain, then `dvc exp show`, and
    Snakemake still parses the params.yaml DVC rewrote."""
    built, _ = tiny_chain_dvc
    root = tmp_path / "repo"
    shutil.copytree(built, root, symlinks=True)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "tiny build"], root)
    # keys of three stages (not vae or clip: their rerun would re-encode every latent, minutes on a busy machine)
    run = sh(["dvc", "exp", "run", "-n", "smaller", "-S", "unet.train.steps=4", "-S", "unet.train.schedule.warmup_steps=3",
              "-S", "sample.steps=2", "-S", "memorization.show=1"], root, timeout=2400)
    out = run.stdout + run.stderr
    for stage in ("unet", "sample", "memorization", "pipeline"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    for stage in ("audit", "export", "tokenizer", "clip", "vae", "latents"):
        assert f"Running stage '{stage}'" not in out
    text = (root / "params.yaml").read_text()
    assert "mixed_precision: no" in text and '"no"' not in text   # rewritten by DVC in YAML 1.2
    assert json.loads((root / "metrics/unet.json").read_text())["steps"] == 4
    rows = json.loads(sh(["dvc", "exp", "show", "--json"], root).stdout)
    exps = [e for row in rows for e in (row.get("experiments") or [])]
    smaller = [e for e in exps if e.get("name") == "smaller"]
    assert smaller, rows
    data = smaller[0]["revs"][0]["data"]
    params = data["params"]["params.yaml"]["data"]
    assert params["unet"]["train"]["steps"] == 4 and params["memorization"]["show"] == 1
    assert data["metrics"]["metrics/unet.json"]["data"]["steps"] == 4
    assert data["metrics"]["metrics/live/unet/metrics.json"]["data"]["step"] == 4   # the dvclive log's last values
    csv = sh(["dvc", "exp", "show", "--csv"], root).stdout
    assert "smaller" in csv
    dry = sh(["snakemake", "-n", "-c1"], root)   # parses (and validates) the rewritten params.yaml
    assert "pdd: error" not in dry.stderr
