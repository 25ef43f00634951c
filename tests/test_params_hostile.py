"""params.yaml under hostile input (issue 9): aliases, repeated keys, non-UTF-8 bytes, non-finite and
out-of-range numbers are one-line errors naming the key, before any stage starts."""
import subprocess
import sys
import textwrap

import pytest
import yaml

from pdd.core import config
from pdd.core import params as params_mod
from pdd.core.errors import PddError
from conftest import REPO

PARAMS = (REPO / "params.yaml").read_text(encoding="utf-8")


def write(tmp_path, text, name="params.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def one_line_error(path) -> str:
    with pytest.raises(PddError) as err:
        config.check(params_mod.load(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_alias_bomb_is_refused_quickly(tmp_path):
    """Nine levels of nine aliases: 9**9 leaves when expanded. It hung validation, memory growing."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = PARAMS + "\nsample_bomb:\n" + "\n".join("  " + ln for ln in lines) + "\n"
    path = write(tmp_path, text)
    code = f"from pdd.core import params; params.load({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "alias *a0 refused" in proc.stderr


def test_alias_in_the_real_params_is_refused(tmp_path):
    text = PARAMS.replace("allowed_licences: [pd, cc0]", "allowed_licences: &free [pd, cc0]")
    text = text.replace("    label_licences: [pd, cc0]", "    label_licences: *free")
    assert "*free" in text
    assert "alias *free refused" in one_line_error(write(tmp_path, text))


def test_duplicate_key_is_refused(tmp_path):
    text = PARAMS.replace("  val_fraction: 0.1 ", "  val_fraction: 0.1\n  val_fraction: 0.4 ", 1)
    assert text.count("val_fraction:") == 2
    msg = one_line_error(write(tmp_path, text))
    assert "duplicate key 'val_fraction'" in msg and "line" in msg


def test_duplicate_section_is_refused(tmp_path):
    msg = one_line_error(write(tmp_path, PARAMS + "\nseed: 1\n"))
    assert "duplicate key 'seed'" in msg


def test_non_utf8_bytes_are_refused(tmp_path):
    data = PARAMS.encode("utf-8").replace(b"a clip art image", b"a cl\xefp art image")
    msg = one_line_error(write(tmp_path, data))
    assert "not UTF-8" in msg


@pytest.mark.parametrize("key,value,expected", [
    ("lr: 0.001, betas: [0.9, 0.98]", "lr: .nan, betas: [0.9, 0.98]", "clip.train.optimizer.lr: nan is not a finite number"),
    ("logit_scale_init: 2.6592", "logit_scale_init: .nan", "clip.logit_scale_init: nan is not a finite number"),
    ("logit_scale_init: 2.6592", "logit_scale_init: .inf", "clip.logit_scale_init: inf is not a finite number"),
    ("logit_scale_init: 2.6592", "logit_scale_init: 1000.0", "clip.logit_scale_init: 1000.0 is greater than the maximum"),
    ("val_fraction: 0.1", "val_fraction: 0", "export.val_fraction: 0 is less than or equal to the minimum"),
    ("val_fraction: 0.1", "val_fraction: -.inf", "export.val_fraction: -inf is not a finite number"),
    ("vocab_size: 2048", "vocab_size: 1000000000000", "tokenizer.vocab_size: 1000000000000 is greater than the maximum"),
    ("vocab_size: 2048", "vocab_size: 1.0e+12", "tokenizer.vocab_size: 1000000000000.0 is "),
    ("    hidden_size: 128         # also", "    hidden_size: 65536         # also", "clip.text.hidden_size: 65536 is greater than the maximum"),
])
def test_numbers_are_finite_and_bounded(tmp_path, key, value, expected):
    assert key in PARAMS
    msg = one_line_error(write(tmp_path, PARAMS.replace(key, value, 1)))
    assert expected in msg, msg


def test_non_finite_number_in_an_update_is_refused():
    """config.load(update=...) (tests, benches) validates too."""
    with pytest.raises(PddError, match=r"unet\.train\.optimizer\.lr: nan is not a finite number"):
        config.load(REPO / "params.yaml", {"unet": {"train": {"optimizer": {"lr": float("nan")}}}})


def test_repo_params_still_load():
    assert params_mod.load(REPO / "params.yaml")["seed"] >= 0
    assert params_mod.parse(PARAMS) == yaml.safe_load(PARAMS)   # the committed file means the same in YAML 1.1 and 1.2
