"""The yardstick's measures on constructed cases whose answer is known (pdd/train/quality.py), each able to fail."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from pdd.train import judge as judge_mod
from pdd.train import quality


def _feats(n, d=16, seed=0, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale + shift


def test_kid_is_about_zero_for_one_distribution_and_large_for_another():
    a, b = _feats(400, seed=1), _feats(400, seed=2)
    same, se = quality.kid(a, b, seed=0, subsets=20, subset_size=200)
    assert abs(same) < 3 * se + 1e-3
    other, _ = quality.kid(a, _feats(400, seed=3, shift=1.0), seed=0, subsets=20, subset_size=200)
    assert other > 10 * max(abs(same), 1e-4)


def test_identical_sets_have_precision_and_recall_one():
    a = _feats(200, seed=4)
    p, r = quality.precision_recall(a, a.clone(), k=3)
    assert p == 1.0 and r == 1.0


def test_a_set_collapsed_to_one_image_has_low_recall():
    real = _feats(300, seed=5)
    collapsed = real[:1].repeat(300, 1) + 1e-6 * _feats(300, seed=6)
    p, r = quality.precision_recall(real, collapsed, k=3)
    assert p == 1.0          # the one image is a real one: inside the manifold
    assert r < 0.05          # but almost nothing real is covered


def test_noise_far_from_data_has_low_precision():
    real = _feats(300, seed=7)
    p, r = quality.precision_recall(real, _feats(300, seed=8, shift=8.0), k=3)
    assert p < 0.05 and r < 0.05


def _colour_images(n, seed, hue_shift_deg=0.0):
    rng = np.random.default_rng(seed)
    out = np.full((n, 8, 8, 3), 255, dtype=np.uint8)
    for i in range(n):
        h = (rng.choice([0.0, 0.33, 0.75]) + rng.normal(0, 0.02) + hue_shift_deg / 360) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.9, 0.9)
        out[i, 2:6, 2:6] = (int(r * 255), int(g * 255), int(b * 255))
    return torch.from_numpy(out)


def test_colour_distance_rises_when_the_hue_is_shifted_by_90_degrees():
    a, b = _colour_images(200, 1), _colour_images(200, 2)
    shifted = _colour_images(200, 2, hue_shift_deg=90)
    same = quality.colour_distance(a, b)
    assert same < 0.05
    assert quality.colour_distance(a, shifted) > max(3 * same, 0.1)   # a quarter of the pixels are coloured


def test_hue_shares_see_a_palette_without_green():
    reds = torch.zeros(10, 4, 4, 3, dtype=torch.uint8)
    reds[..., 0] = 220
    greens = torch.zeros(10, 4, 4, 3, dtype=torch.uint8)
    greens[..., 1] = 200
    assert quality.hue_shares(reds)["green"] == 0.0 and quality.hue_shares(reds)["red"] == 1.0
    assert quality.hue_shares(greens)["green"] == 1.0


def _paired(n=200, d=16, seed=0):
    txt = torch.nn.functional.normalize(_feats(n, d, seed=seed), dim=1)
    img = torch.nn.functional.normalize(txt + 0.15 * _feats(n, d, seed=seed + 1), dim=1)
    return img, txt


def test_r_precision_of_matched_pairs_is_high_and_of_shuffled_pairs_is_chance():
    img, txt = _paired()
    caps = [f"caption {i}" for i in range(len(txt))]
    own = list(range(len(caps)))
    others = quality.distractors(own, caps, seed=1, k=31)
    assert quality.r_precision(img, txt, own, others) > 0.9
    rates = []
    for s in range(5):
        perm = torch.randperm(len(caps), generator=torch.Generator().manual_seed(s)).tolist()
        rates.append(quality.r_precision(img, txt, perm, quality.distractors(perm, caps, seed=s, k=31)))
    assert abs(sum(rates) / len(rates) - 1 / 32) < 0.03


def test_distractors_never_include_the_same_caption_text():
    caps = ["a", "a", "b", "c", "d", "e"]
    others = quality.distractors([0, 1], caps, seed=0, k=3)
    assert all(caps[int(o)] != "a" for o in others.flatten())
    with pytest.raises(ValueError):
        quality.distractors([0], ["a", "a", "b"], seed=0, k=3)


def test_clip_score_of_matched_pairs_beats_shuffled():
    img, txt = _paired()
    assert quality.clip_score(img, txt) > quality.clip_score(img, txt.roll(1, dims=0)) + 30


def test_images_of_one_category_only_give_low_category_accuracy_for_other_prompts():
    # three well-separated categories; the probe learns them from "train" features
    centres = torch.eye(3, 8) * 5
    labels = torch.arange(3).repeat_interleave(60)
    feats = centres[labels] + 0.5 * _feats(180, 8, seed=9)
    probe = quality.train_probe(feats, labels, 3, seed=0)
    assert quality.accuracy(probe, feats, labels) > 0.95
    # a "generator" that draws category 0 whatever it is asked for
    asked = torch.tensor([1, 2] * 50)
    drawn = centres[torch.zeros(100, dtype=torch.long)] + 0.5 * _feats(100, 8, seed=10)
    assert quality.accuracy(probe, drawn, asked) < 0.05
    assert quality.majority_rate(labels, asked, 3) == 0.0


def test_category_is_the_first_folder_of_the_file_id():
    assert judge_mod.category_of("openclipart:animals/birds/tux") == "animals"
    assert judge_mod.category_of("commons:File:Foo.png") is None
    names = judge_mod.class_names(["o:a/x"] * 3 + ["o:b/y"] * 3 + ["o:c/z"], min_rows=2)
    assert names == ["a", "b", "other"]
    assert judge_mod.labels_of(["o:b/q", "o:c/q", "plain"], names).tolist() == [1, 2, 2]


def test_swd_is_smaller_for_the_same_distribution_than_for_noise():
    imgs = _colour_images(64, 3)
    near = quality.swd(imgs, _colour_images(64, 4), seed=0)
    far = quality.swd(imgs, quality.noise_like(imgs, 64, seed=0), seed=0)
    assert near < far


def test_colour_error_sees_red_turning_brown():
    from pdd.train import imaging

    red = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    red[..., 0] = 220
    brown = red.clone()
    brown[..., 0], brown[..., 1], brown[..., 2] = 140, 80, 40
    same = imaging.colour_error(red, red)
    assert same["hue_error_deg"] == 0.0 and same["chroma_loss"] == 0.0
    shifted = imaging.colour_error(red, brown)
    assert shifted["hue_error_deg"] > 20 and shifted["chroma_loss"] > 100


def test_same_category_distractors_come_from_the_query_s_own_category_first():
    caps = [f"c{i}" for i in range(40)]
    groups = [0] * 20 + [1] * 20
    others = quality.distractors([0, 25], caps, seed=0, k=10, groups=groups)
    assert all(groups[int(o)] == 0 for o in others[0]) and all(groups[int(o)] == 1 for o in others[1])
    few = quality.distractors([0], caps, seed=0, k=25, groups=groups)   # 19 of its own, then 6 others
    assert [groups[int(o)] for o in few[0]] == [0] * 19 + [1] * 6


def test_a_category_prototype_is_told_apart_only_by_category():
    """Two categories, each caption a category plus an object: images that carry only the category score at
    chance on same-category R-precision and perfectly on random R-precision (the trivial generator the
    yardstick reports beside the model)."""
    cat = torch.nn.functional.normalize(_feats(16, 32, seed=20), dim=1)
    obj = torch.nn.functional.normalize(_feats(80, 32, seed=21), dim=1)
    groups = [i % 16 for i in range(80)]
    txt = torch.nn.functional.normalize(3 * cat[groups] + obj, dim=1)
    proto = torch.nn.functional.normalize(cat[groups], dim=1)
    caps = [f"c{i}" for i in range(80)]
    own = list(range(80))
    easy = [quality.r_precision(proto, txt, own, quality.distractors(own, caps, seed=s, k=3)) for s in range(4)]
    hard = [quality.r_precision(proto, txt, own, quality.distractors(own, caps, seed=s, k=3, groups=groups))
            for s in range(4)]
    assert sum(hard) / 4 < 0.45 and sum(easy) / 4 > 0.7     # chance: 1/4


def test_ssim_keeps_full_precision_inside_a_bf16_autocast_region():
    """The training loop evaluates under the stage's mixed precision; the VAE's SSIM must not come back rounded to
    bf16 (it did: val SSIM 0.78125 = 25/32)."""
    import torch
    from pdd.train import imaging
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (4, 32, 32, 3), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-30, 30, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = imaging.ssim(a, b)
    assert inside.dtype == torch.float32 and torch.equal(inside, imaging.ssim(a, b))
