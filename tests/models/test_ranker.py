"""The hybrid's ranker learning (:mod:`recsys.models.ranker`): the calibration's sample, the
windows' rows, and the scorer's fit on several threads. The fits that go through a whole
:class:`~recsys.models.hybrid.HybridModel` are in ``test_hybrid.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models import ranker as learning
from recsys.models.features import FEATURES
from recsys.models.hybrid import HybridModel


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    share=st.floats(0.05, 1.0),
    cap=st.integers(1, 400),
    seed=st.integers(0, 2**16),
)
def test_the_calibration_sample_keeps_whole_groups_of_calibration_pairs(
    sizes: list[int], share: float, cap: int, seed: int
) -> None:
    group = np.repeat(np.arange(len(sizes)), sizes)
    in_calib = np.random.default_rng(seed).random(len(sizes))[group] < share
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(learning, "CALIBRATION_PAIRS", cap)
        kept = learning.calibration_sample(in_calib, group, seed)
        again = learning.calibration_sample(in_calib, group, seed)
    assert not (kept & ~in_calib).any()  # only calibration pairs
    if in_calib.sum() <= cap:
        assert np.array_equal(kept, in_calib)
    # a group is kept whole or not at all
    for g in np.unique(group[in_calib]):
        mine = kept[(group == g) & in_calib]
        assert mine.all() or not mine.any()
    assert np.array_equal(kept, again)  # the same draw for the same seed


def test_joined_is_the_one_part_itself_or_a_concatenation() -> None:
    a = np.arange(7, dtype=np.intp)
    parts = [a, a[:3]]
    np.testing.assert_array_equal(learning.joined(parts), np.concatenate(parts))
    assert learning.joined([a]) is a


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=4), st.integers(0, 2**16))
def test_selected_rows_are_the_joined_rows_under_the_mask(sizes: list[int], seed: int) -> None:
    """The ranker's rows taken window by window are the rows of the joined windows."""
    rng = np.random.default_rng(seed)
    parts = [rng.random((n, 3)).astype(np.float32) for n in sizes]
    mask = rng.random(sum(sizes)) < 0.5
    got = learning.selected(parts, mask)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.concatenate(parts)[mask])


@pytest.mark.parametrize("ranker", ["lambdarank", "lightgbm"])
def test_lightgbm_learns_the_same_trees_on_any_number_of_threads(ranker: str) -> None:
    """Enough rows (60,000, a tenth of them missing values) that the threads share the
    histograms' work: the trees of 2 and 3 threads are those of one."""
    rng = np.random.default_rng(3)
    n = 60_000
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=n) > 1.5).astype(np.int8)
    group = np.sort(rng.integers(0, n // 30, n)).astype(np.int64)
    fit = HybridModel(ranker=ranker, max_iter=30)._learning()
    trees = [
        fit.fit_scorer(x, y, group, threads=t).booster_.dump_model()["tree_info"] for t in (1, 2, 3)
    ]
    assert len(trees[0]) == 30 and trees[1] == trees[0] and trees[2] == trees[0]


def test_the_learning_parameters_are_the_models() -> None:
    """Every learning parameter the model is given reaches its ranker's learning, by name."""
    fields = learning.RankerLearning.__dataclass_fields__
    params = HybridModel().get_params()
    assert set(fields) <= set(params)
    changed = {
        "label_days": 14.0,
        "train_windows": 3,
        "ranker": "lambdarank",
        "max_iter": 7,
        "learning_rate": 0.2,
        "negative_rate": 0.5,
        "calibration_share": 0.3,
        "min_positives": 9,
        "buyers_only": False,
        "max_ranker_customers": 100,
        "decayed_features": True,
        "monotone": False,
        "repeat_first": "auto",
        "discover_order": "auto",
        "seed": 5,
    }
    assert set(changed) == set(fields)
    assert all(changed[name] != params[name] for name in changed)  # each one a change
    got = HybridModel(**changed)._learning()
    assert {name: getattr(got, name) for name in fields} == changed
