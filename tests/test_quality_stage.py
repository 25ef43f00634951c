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
