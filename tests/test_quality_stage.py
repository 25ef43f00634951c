"""The quality stage's bad input: one clear line each (a val split too small for n_samples, a judge missing,
n_samples beyond the schema), and the prompt order and grid picks it samples with."""
from __future__ import annotations

import copy
import types

import pytest
import yaml

from conftest import REPO, deep_update
from pdd.core import config
from pdd.core.errors import PddError
from pdd.train import judge, yardstick


def qcfg(**kw):
    base = dict(n_samples=1000, max_per_val=10, pr_k=3)
    return types.SimpleNamespace(**{**base, **kw})


def test_a_val_split_too_small_for_n_samples_is_one_line():
    yardstick.check(qcfg(), n_val=100, n_val_captions=90, where="data/export")          # 10 per val image: fine
    with pytest.raises(PddError, match=r"quality.n_samples=1000 is more than quality.max_per_val=10 .* lower "
                                       r"quality.n_samples to at most 990"):
        yardstick.check(qcfg(), n_val=99, n_val_captions=90, where="data/export")
    with pytest.raises(PddError, match="the val split has 1 images"):
        yardstick.check(qcfg(n_samples=8), n_val=1, n_val_captions=1, where="data/export")
    with pytest.raises(PddError, match="must be more than quality.pr_k=3"):
        yardstick.check(qcfg(n_samples=3), n_val=100, n_val_captions=90, where="data/export")


def test_a_missing_judge_is_one_line(tmp_path):
    with pytest.raises(PddError, match=r"no judge there; build it first \(`dvc repro judge`\)"):
        judge.Judge(tmp_path / "models/judge")


def test_n_samples_beyond_the_schema_is_refused_by_the_params_check():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    with pytest.raises(PddError, match="quality.n_samples: 50000 is greater than the maximum of 20000"):
        config.load(REPO / "params.yaml", {"quality": {"n_samples": 50000}})
    with pytest.raises(PddError, match="judge.vision.patch_size"):
        config.check(deep_update(copy.deepcopy(params), {"judge": {"vision": {"patch_size": 5}}}))


def test_prompts_cycle_a_seeded_permutation_of_val_and_the_grid_spreads_over_categories():
    order = yardstick.prompt_order(10, 25, seed=1)
    assert sorted(order[:10]) == list(range(10)) and order[10:20] == order[:10]
    assert order != yardstick.prompt_order(10, 25, seed=2)
    ids = [f"o:{c}/{i}" for c in ("a", "b", "c") for i in range(5)]
    rows = yardstick.grid_rows(ids, 3, seed=0)
    assert sorted(judge.category_of(ids[i]) for i in rows) == ["a", "b", "c"]


def test_a_val_split_too_small_to_halve_is_one_line():
    with pytest.raises(PddError, match=r"the val split has 7 images; the distribution measures cut it in two halves of "
                                       r"more than quality.pr_k=3 images each, so it needs at least 8"):
        yardstick.check(qcfg(n_samples=8, max_per_val=10), n_val=7, n_val_captions=7, where="data/export")
    yardstick.check(qcfg(n_samples=8, max_per_val=10), n_val=8, n_val_captions=8, where="data/export")


class PixelJudge:
    """A stand-in grader for the pairing test: image features are 2 x 2 mean colours, text features a seeded draw
    per caption (the measures' arithmetic is tested in test_quality_metrics.py; here only who is compared)."""
    classes = ["animals", "food"]
    probe = None

    def images(self, u8):
        import torch
        x = torch.nn.functional.adaptive_avg_pool2d(u8.permute(0, 3, 1, 2).float() / 255, 2).flatten(1)
        return torch.nn.functional.normalize(x, dim=1)

    def texts(self, caps):
        import torch
        out = [torch.randn(12, generator=torch.Generator().manual_seed(sum(map(ord, c)))) for c in caps]
        return torch.nn.functional.normalize(torch.stack(out), dim=1)

    def labels(self, ids):
        return judge.labels_of(ids, self.classes)


def test_samples_that_are_the_real_images_of_their_prompts_score_exactly_like_real_images():
    """The distribution measures compare samples and real images of the *same* val captions (half A) with the
    other val half: a generator that returns each prompt's own val image must tie with real images on every one
    of them. (Graded against val itself, as before, such samples would have beaten real images.)"""
    import torch
    g = torch.Generator().manual_seed(0)
    n_val, n = 40, 60
    val_u8 = torch.randint(0, 256, (n_val, 8, 8, 3), generator=g, dtype=torch.uint8)
    val_ids = [f"o:{'animals' if i % 2 else 'food'}/{i}" for i in range(n_val)]
    val_caps = [f"caption {i}" for i in range(n_val)]
    train_u8 = torch.randint(0, 256, (50, 8, 8, 3), generator=g, dtype=torch.uint8)
    train_ids = [f"o:{'animals' if i % 3 else 'food'}/t{i}" for i in range(50)]
    prompts = yardstick.prompt_order(n_val, n, seed=5)
    cfg = types.SimpleNamespace(kid_subsets=5, kid_subset_size=500, pr_k=3, distractors=7)
    q = yardstick.measure(val_u8[torch.tensor(prompts)], prompts, val_ids, val_caps, val_u8, train_ids, train_u8,
                          PixelJudge(), cfg, seed=5)
    assert q["n_paired"] == 20 and q["n_reference"] == 20
    for key in ("kid", "precision", "recall", "colour", "swd"):
        assert q[key]["model"] == q[key]["real"], key
    assert q["category_accuracy"]["model"] is None     # the stand-in has no probe
