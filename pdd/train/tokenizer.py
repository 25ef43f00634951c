"""The tokenizer of stage `tokenizer`: a CLIP-style byte-level BPE trained from scratch on the train-split captions.

Writes models/tokenizer/, loadable with `transformers.CLIPTokenizerFast.from_pretrained`
(vocab.json, merges.txt, tokenizer.json, tokenizer_config.json) and
`CLIPImageProcessor.from_pretrained` (preprocessor_config.json with the project's own
per-channel mean/std, computed from the train-split images; not OpenAI's numbers).

The vocabulary is laid out like OpenAI's CLIP vocabulary: the 256 byte symbols, the same
256 with the end-of-word mark `</w>` (so every text can be encoded, nothing falls to an
unknown token), the learned merges in the order they were learned, then the two special
tokens. The normaliser and pre-tokeniser are exactly the ones CLIPTokenizer rebuilds at load
time, so what was trained is what transformers runs. Only the train split is read: val
captions never shape the vocabulary.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import CLIPImageProcessorPil, CLIPTokenizerFast

from pdd.core import shards
from pdd.core.errors import PddError
from pdd.core.hashing import write_atomic

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SPECIAL_TOKENS = (BOS, EOS)
EOW = "</w>"
# the pre-tokeniser transformers' CLIPTokenizer uses (words, single digits, punctuation runs)
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-in for each byte value 0..255, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


BASE_VOCAB = len(SPECIAL_TOKENS) + 2 * 256


def backend(vocab: dict | None = None, merges: list | None = None):
    """A `tokenizers` Tokenizer with CLIP's normaliser, pre-tokeniser and BPE settings."""
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix=EOW,
                        fuse_unk=False, unk_token=EOS))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def _final(ch: str) -> str:
    """A private-use stand-in for `ch</w>`: one character, so the trainer sees it as one symbol."""
    return chr(0xF0000 + ord(ch))


def _unfinal(token: str) -> str:
    return "".join(chr(ord(c) - 0xF0000) + EOW if ord(c) >= 0xF0000 else c for c in token)


def learn_merges(captions: list[str], cfg) -> list[tuple[str, str]]:
    """BPE merges learned from the captions, in order, at most vocab_size - BASE_VOCAB of them.

    The `tokenizers` trainer breaks ties between equally frequent pairs by symbol id, and with
    `end_of_word_suffix` it numbers the `x</w>` symbols in hash-map order: two runs could learn
    different merges. So each word is pre-tokenised here with CLIP's own rules and its last
    symbol replaced by a single private-use character; every symbol is then in the (sorted)
    initial alphabet, ids are fixed, and training is a pure function of the captions.
    """
    clip = backend()
    words = []
    for caption in captions:
        for w, _ in clip.pre_tokenizer.pre_tokenize_str(clip.normalizer.normalize_str(caption)):
            words.append(w[:-1] + _final(w[-1]))
    byte_syms = bytes_to_unicode()
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = BpeTrainer(vocab_size=cfg.vocab_size - len(SPECIAL_TOKENS), min_frequency=cfg.min_frequency,
                         special_tokens=[], initial_alphabet=byte_syms + [_final(c) for c in byte_syms],
                         show_progress=False)
    tok.train_from_iterator(words, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return [(_unfinal(a), _unfinal(b)) for a, b in merges][: cfg.vocab_size - BASE_VOCAB]


def build_vocab(merges: list[tuple[str, str]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    byte_syms = bytes_to_unicode()
    tokens = byte_syms + [s + EOW for s in byte_syms]
    seen = set(tokens)
    kept = []
    for a, b in merges:
        if a not in seen or b not in seen or a + b in seen:
            continue  # cannot happen for a well-formed merge list; kept as a guard
        tokens.append(a + b)
        seen.add(a + b)
        kept.append((a, b))
    tokens += list(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(tokens)}, kept


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixels scaled to [0, 1], in float64, rounded for stable JSON."""
    n = 0
    s = np.zeros(3, dtype=np.float64)
    ss = np.zeros(3, dtype=np.float64)
    for start in range(0, len(images), chunk):
        px = images[start:start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        n += len(px)
        s += px.sum(axis=0)
        ss += (px * px).sum(axis=0)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel: do not divide by ~0
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def load_train(export_dir: str | Path, resolution: int | None = None):
    """(captions, images, resolution) of the train split; PddError if it cannot train a tokenizer."""
    index = shards.read_index(export_dir)
    resolution = resolution or max(index["resolutions"])
    if resolution not in index["resolutions"]:
        raise PddError(f"{export_dir}: no {resolution} px images (export.resolutions is {index['resolutions']})")
    table = shards.read_split(export_dir, "train", columns=["caption", shards.image_column(resolution)])
    if table.num_rows == 0:
        raise PddError(f"{export_dir}: the export has no train rows; nothing to train on "
                       "(check the snapshot and export.val_fraction)")
    captions = table.column("caption").to_pylist()
    if not any((c or "").strip() for c in captions):
        raise PddError(f"{export_dir}: all {len(captions)} train captions are empty; "
                       "nothing to train a tokenizer on (check export.caption)")
    return captions, shards.images_array(table, resolution), resolution


def train_tokenizer(export_dir: str | Path, out_dir: str | Path, cfg) -> dict:
    """Train and save tokenizer + image processor config into out_dir; returns a summary."""
    captions, images, resolution = load_train(export_dir)
    merges = learn_merges([c for c in captions if c and c.strip()], cfg)
    vocab, merges = build_vocab(merges)
    out_dir = Path(out_dir)

    # vocab.json + merges.txt (the format of OpenAI's CLIP files) and tokenizer.json
    write_atomic(out_dir / "vocab.json", (json.dumps(vocab, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    write_atomic(out_dir / "merges.txt", merges_txt.encode("utf-8"))
    tok = CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=cfg.max_length)
    tok.save_pretrained(out_dir)
    # CLIPTokenizer builds the backend itself; check it is the one we trained with.
    ours = backend(vocab, merges)
    probe = captions[: min(len(captions), 64)]
    if [e.ids for e in ours.encode_batch(probe)] != [tok(c, add_special_tokens=False, verbose=False)["input_ids"] for c in probe]:
        raise PddError("tokenizer: transformers' CLIPTokenizer disagrees with the trained pipeline (library change?)")

    mean, std = channel_stats(images)
    proc = CLIPImageProcessorPil(image_mean=mean, image_std=std, size={"shortest_edge": resolution},
                                 crop_size={"height": resolution, "width": resolution})
    proc.save_pretrained(out_dir)

    lengths = [len(e.ids) + 2 for e in ours.encode_batch(captions)]  # + start and end tokens
    return {"vocab_size": len(vocab), "merges": len(merges), "train_captions": len(captions),
            "max_length": cfg.max_length, "image_mean": mean, "image_std": std, "resolution": resolution,
            "captions_truncated": sum(n > cfg.max_length for n in lengths),
            "mean_tokens_per_caption": round(sum(lengths) / len(lengths), 4)}
