"""The command tree (pdd/cli.py): every leaf parses to its own handler, `pdd sample` is only the build stage,
`pdd generate` draws images from a pipeline folder, and bad input is one line with exit 2.

The real generations use a tiny random-weight pipeline folder written here (a few kB of weights, no
training), the same stock diffusers classes the `pipeline` stage ships."""
from __future__ import annotations

import subprocess
import sys

import pytest

import tiny_pipes
from conftest import REPO, engine_env
from pdd import cli

LEAVES = [
    (["import-folder", "f", "--metadata", "m.csv"], "cmd_import_folder"),
    (["import-openclipart", "f"], "cmd_import_openclipart"),
    (["snapshot", "pin", "v1"], "cmd_snapshot_pin"),
    (["snapshot", "pin", "t1", "--from", "v1", "--exclusions", "x.tsv"], "cmd_snapshot_pin"),
    (["snapshot", "list", "--json"], "cmd_snapshot_list"),
    (["snapshot", "show", "v1", "--db", "d", "--out-dir", "s"], "cmd_snapshot_show"),
    (["snapshot", "verify", "v1"], "cmd_snapshot_verify"),
    (["snapshot", "textconv", "a.parquet"], "cmd_snapshot_textconv"),
    (["snapshot", "blame", "mus:1", "--git", "v1..HEAD", "--json"], "cmd_snapshot_blame"),
    (["diff", "a", "b", "--stat"], "cmd_diff"),
    (["exclude", "mus:1", "--reason", "request"], "cmd_exclude"),
    (["dag"], "cmd_dag_show"),
    (["dag", "show"], "cmd_dag_show"),
    (["dag", "write"], "cmd_dag_write"),
    (["dag", "check"], "cmd_dag_check"),
    (["verify", "vae", "--keep"], "cmd_verify"),
    (["verify", "--signatures", "--key", "k.pub"], "cmd_verify"),
    (["sign", "--key", "k.pem"], "cmd_sign"),
    (["launch", "-n", "unet", "--nodes", "2"], "cmd_launch"),
    (["unet"], "cmd_stage"),
    (["generate", "--prompt", "x"], "cmd_generate"),
    (["scrape", "--email", "a@b.c"], "cmd_scrape"),
    (["mirror", "serve", "synthetic:5"], "cmd_mirror"),
]


def pdd(*args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, "-m", "pdd", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**engine_env(), "PYTHONPATH": str(REPO)}, timeout=timeout)


def one_line(proc, *words):
    err = proc.stderr
    assert proc.returncode == 2 and err.count("\n") == 1 and err.startswith("pdd: error: "), err
    assert "Traceback" not in err and all(w in err for w in words), err


@pytest.mark.parametrize("argv, handler", LEAVES, ids=[" ".join(a[:2]) for a, _ in LEAVES])
def test_every_leaf_parses_to_its_own_handler(argv, handler):
    assert cli.parse(argv).func.__name__ == handler


def test_every_build_stage_is_a_command():
    from pdd.build import dag

    for s in dag.PIPELINE:
        args = cli.parse([s.name])
        assert args.func is cli.cmd_stage and args.command == s.name and args.stage_args == []


def test_stage_flags_go_on_to_the_stage_runner():
    """`pdd unet --resume`, `pdd export --slice 0/4 --params p.yaml`: the stage's own parser reads them."""
    assert cli.parse(["unet", "--resume"]).stage_args == ["--resume"]
    assert cli.parse(["export", "--slice", "0/4", "--params", "p.yaml"]).stage_args == ["--slice", "0/4", "--params", "p.yaml"]


def test_generate_defaults_and_repeated_prompts():
    a = cli.parse(["generate", "--prompt", "a", "--prompt", "b", "--n", "3", "-o", "out", "--quiet"])
    assert (a.model, a.prompt, a.n, a.output, a.quiet, a.steps, a.guidance, a.seed) == \
        ("models/pipeline", ["a", "b"], 3, "out", True, 25, 3.0, 0)


def test_pdd_help_lists_generate_and_the_stages():
    proc = pdd("--help")
    assert proc.returncode == 0
    assert "generate" in proc.stdout and "build stage: sample" in proc.stdout


def test_sample_help_is_the_stage_only():
    proc = pdd("sample", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: pdd sample") and "Build stage `sample`" in proc.stdout
    assert "--prompt" not in proc.stdout and "--model" not in proc.stdout


def test_generate_help_has_an_example_in_the_captions_style():
    proc = pdd("generate", "--help")
    assert proc.returncode == 0
    for word in ("--model", "--prompt", "--seed", "--steps", "--guidance", "--n", "--output", "--quiet",
                 'pdd generate --prompt "Apple, food/fruit, apple, fruit"'):
        assert word in proc.stdout, word


@pytest.mark.parametrize("args, words", [
    (["--steps", "0"], ["--steps", "'0'", "whole number of denoising steps, 1 or more", "pdd generate --help"]),
    (["--n", "-1"], ["--n", "'-1'", "whole number of images per prompt, 1 or more"]),
    (["-n", "two"], ["--n", "'two'"]),
    (["--guidance", "0.5"], ["--guidance 0.5 is below 1; use 1 (no guidance) or more"]),
    (["--seed", "x"], ["--seed", "invalid int value"]),
])
def test_bad_numbers_are_one_line_naming_the_flag(args, words):
    one_line(pdd("generate", "--prompt", "x", *args), *words)


def test_generate_on_a_missing_folder(tmp_path):
    one_line(pdd("generate", "--model", tmp_path / "nope", "--prompt", "x"), "--model", "no such folder",
             "dvc repro pipeline")


def test_generate_on_a_folder_that_is_not_a_pipeline(tmp_path):
    one_line(pdd("generate", "--model", tmp_path, "--prompt", "x"), "not a diffusers pipeline folder")


def test_usage_errors_elsewhere_are_one_line_too(tmp_path):
    one_line(pdd("snapshot", "show"), "NAME", "pdd snapshot show --help")
    one_line(pdd("launch", "-n", "unet", "--nodes", "0"), "--nodes", "whole number of machines")
    one_line(pdd("import-openclipart", tmp_path, "--workers", "0"), "--workers", "whole number of threads")
    one_line(pdd("dag", "--bogus"), "unrecognized arguments: --bogus")


# ---- real generations from tiny pipeline folders ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    return tiny_pipes.make(tmp_path_factory.mktemp("pipes"))


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_generate_one_png(tiny_pipelines, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "apple.png"
    rc, stdout, _ = run(capsys, "generate", "--model", tiny_pipelines / "text", "--prompt", "Apple, food/fruit, apple, fruit",
                        "--steps", "2", "-o", out, "--quiet")
    assert rc == 0 and stdout == f"{out}\n"
    assert Image.open(out).size == (8, 8) and not list(tmp_path.glob(".*tmp*"))


def test_generate_a_folder_same_seed_same_images(tiny_pipelines, tmp_path, capsys):
    """Two prompts x 2 images: PP-K.png; the image for prompt 0 does not change when a prompt is added."""
    base = ["generate", "--model", tiny_pipelines / "text", "--steps", "2", "--n", "2", "--seed", "3", "--quiet"]
    rc, stdout, _ = run(capsys, *base, "--prompt", "apple", "--prompt", "tree", "-o", tmp_path / "two")
    assert rc == 0 and stdout.split() == [str(tmp_path / "two" / n) for n in ("00-0.png", "00-1.png", "01-0.png", "01-1.png")]
    rc, _, _ = run(capsys, *base, "--prompt", "apple", "-o", tmp_path / "one")
    assert rc == 0 and (tmp_path / "one/00-0.png").read_bytes() == (tmp_path / "two/00-0.png").read_bytes()
    assert (tmp_path / "two/00-0.png").read_bytes() != (tmp_path / "two/00-1.png").read_bytes()


def test_generate_warns_once_for_a_long_prompt_and_refuses_one_file_for_many(tiny_pipelines, tmp_path, capsys):
    rc, _, err = run(capsys, "generate", "--model", tiny_pipelines / "text", "--prompt", " ".join(["apple"] * 20),
                     "--steps", "1", "-o", tmp_path / "long.png", "--quiet", "--no-credentials")
    assert rc == 0 and (tmp_path / "long.png").exists()
    assert [ln for ln in err.splitlines() if "warning" in ln] == [ln for ln in err.splitlines() if "tokenizer max_length" in ln]
    assert err.count("pdd: warning: ") == 1
    rc, _, err = run(capsys, "generate", "--model", tiny_pipelines / "text", "--prompt", "a", "--n", "2", "-o", tmp_path / "x.png")
    assert rc == 2 and err == f"pdd: error: -o {tmp_path / 'x.png'}: one file for 2 images; give a folder (e.g. -o samples/)\n"
    rc, _, err = run(capsys, "generate", "--model", tiny_pipelines / "text", "-o", tmp_path / "y.png")
    assert rc == 2 and "text-conditional model: give --prompt TEXT" in err


def test_generate_unconditional_with_a_progress_bar(tiny_pipelines, tmp_path, capsys):
    rc, stdout, err = run(capsys, "generate", "--model", tiny_pipelines / "uncond", "--steps", "2", "-o", tmp_path / "u.png")
    assert rc == 0 and stdout == f"{tmp_path / 'u.png'}\n"
    assert "2/2" in err   # tqdm's bar over the denoising steps (off with --quiet)


def test_generate_output_checked_before_loading(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "f").write_text("x")
    for out, why in ((tmp_path / "a.jpg", "not a .png file name or a folder"), (tmp_path / "f", "not a .png file name"),
                     (tmp_path / "no/such/dir/a.png", "not a writable file path")):
        rc, _, err = run(capsys, "generate", "--model", tmp_path / "m", "--prompt", "x", "-o", out)
        assert rc == 2 and err.count("\n") == 1 and why in err, err


def test_generate_on_a_folder_missing_a_component(tiny_pipelines, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipelines / "text", broken)
    shutil.rmtree(broken / "vae")
    one_line(pdd("generate", "--model", broken, "--prompt", "x", "-o", tmp_path / "d.png"),
             "the component 'vae' (AutoencoderKL) is missing")
    assert not (tmp_path / "d.png").exists()
