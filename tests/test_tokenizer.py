"""Stage `tokenizer`: BPE from scratch on train captions, loadable by transformers, byte-stable."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, TINY, deep_update, tiny_cfgs
from pdd.core import shards
from pdd.core.errors import PddError
from pdd.core.hashing import hash_dir
from pdd.core import config
from pdd.build.runner import run
from pdd.train import synthetic
from pdd.train import tokenizer as tk

CFG = config.TokenizerCfg(vocab_size=640, min_frequency=2, max_length=16)


def tiny_params() -> dict:
    return deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), json.loads(json.dumps(TINY)))


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """The committed demo snapshot exported at the tiny resolution."""
    from pdd import snapshot
    from pdd.data import export

    params = tiny_params()
    out = tmp_path_factory.mktemp("demo") / "export"
    out.mkdir()
    export.export(snapshot.resolve(str(REPO / params["snapshot"]["path"])), out, tiny_cfgs()["export"], params["seed"])
    return out


def test_loads_with_transformers_and_round_trips(demo_export, tmp_path):
    from transformers import CLIPImageProcessor, CLIPTokenizerFast

    summary = tk.train_tokenizer(demo_export, tmp_path / "tok", CFG)
    tok = CLIPTokenizerFast.from_pretrained(tmp_path / "tok")
    assert len(tok) == summary["vocab_size"] == CFG.vocab_size
    assert tok.model_max_length == CFG.max_length
    # val captions were never seen in training; any text must still encode without unknowns and decode back
    texts = shards.read_split(demo_export, "val").column("caption").to_pylist() + ["Ünïcode ☃ naïve café 1234, z!"]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.eos_token_id not in ids[1:-1] and tok.bos_token_id not in ids[1:-1]  # nothing fell to unk (= eos)
        assert tok.convert_tokens_to_ids(tok.tokenize(text)) == ids[1:-1]
        decoded = tok.decode(ids, skip_special_tokens=True)
        assert decoded.replace(" ", "") == " ".join(text.lower().split()).replace(" ", ""), (text, decoded)
    # truncation keeps the end token at max_length
    long = tok(" ".join(["word"] * 100), truncation=True)["input_ids"]
    assert len(long) == CFG.max_length and long[-1] == tok.eos_token_id

    # the image processor carries this project's own statistics of the train images
    proc = CLIPImageProcessor.from_pretrained(tmp_path / "tok")
    images = shards.images_array(shards.read_split(demo_export, "train"), 16).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(proc.image_mean, images.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(proc.image_std, images.std(axis=0), atol=1e-5)
    assert proc.image_mean != [0.48145466, 0.4578275, 0.40821073]  # not OpenAI's
    assert proc.size == {"shortest_edge": 16} and proc.crop_size == {"height": 16, "width": 16}


def test_two_builds_are_byte_identical(demo_export, tmp_path):
    tk.train_tokenizer(demo_export, tmp_path / "a", CFG)
    tk.train_tokenizer(demo_export, tmp_path / "b", CFG)
    assert hash_dir(tmp_path / "a") == hash_dir(tmp_path / "b")
    # and a different vocab size is a different tokenizer
    tk.train_tokenizer(demo_export, tmp_path / "c", config.replace(CFG, vocab_size=600))
    assert hash_dir(tmp_path / "c") != hash_dir(tmp_path / "a")


def test_trained_on_train_captions_only(tmp_path):
    export = tmp_path / "export"
    synthetic.make_synthetic(export, n_train=200, resolutions=[16],
                             caption_fn=lambda r: r["caption"] + (" zyzzyva" if ":val:" in r["file_id"] else ""))
    tk.train_tokenizer(export, tmp_path / "tok", CFG)
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text())
    assert "circle</w>" in vocab and "triangle</w>" in vocab   # frequent train words become single tokens
    assert not any("zyzz" in t for t in vocab)                  # a word only in val captions taught nothing


# ---- bad input: one clear line, before any training, old output untouched ----------------
def run_stage(tmp_path, monkeypatch, capsys, export_kw=None, cfg=None):
    export_kw = export_kw or {}
    params = tiny_params()
    params["tokenizer"].update(cfg or {})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    synthetic.make_synthetic(tmp_path / "data/export", resolutions=[16], **{"n_train": 50, **export_kw})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tk, "learn_merges", lambda *a: pytest.fail("training started despite bad input"))
    rc = run("tokenizer", ["--params", "params.yaml"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("pdd: error: "), err
    assert not (tmp_path / "models/tokenizer").exists()
    return err


def test_vocab_smaller_than_special_tokens(tmp_path, monkeypatch, capsys):
    err = run_stage(tmp_path, monkeypatch, capsys, cfg={"vocab_size": 1})
    assert "tokenizer.vocab_size: 1 is too small" in err and "special tokens" in err and "514" in err


def test_empty_caption_set(tmp_path, monkeypatch, capsys):
    err = run_stage(tmp_path, monkeypatch, capsys, export_kw={"caption_fn": lambda r: "  "})
    assert "train captions are empty" in err


def test_no_train_rows(tmp_path, monkeypatch, capsys):
    err = run_stage(tmp_path, monkeypatch, capsys, export_kw={"n_train": 0})
    assert "no train rows" in err


def test_schema_rejects_unknown_key(tmp_path, monkeypatch, capsys):
    params = tiny_params()
    params["tokenizer"]["vocab"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run("tokenizer", ["--params", str(tmp_path / "params.yaml")]) == 2
    assert "tokenizer.vocab: unknown key" in capsys.readouterr().err


def test_vocab_and_length_floors_are_checked_with_the_params():
    """The tokenizer's floors are rules of config.check (run before any stage), and its floor is the
    tokenizer's own base vocabulary."""
    assert config.TOKENIZER_BASE_VOCAB == tk.BASE_VOCAB
    params = tiny_params()
    params["tokenizer"]["vocab_size"] = 513
    with pytest.raises(PddError, match=r"tokenizer.vocab_size: 513 is too small.*at least 514"):
        config.check(params)
    params["tokenizer"]["vocab_size"] = 514
    config.check(params)
    params["tokenizer"]["max_length"] = 2
    with pytest.raises(PddError, match="tokenizer.max_length: 2 leaves no room"):
        config.check(params)
