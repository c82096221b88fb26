"""Popular and trending: time from as_of, category prefixes, the growth ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError
from recsys.models.popular import PopularModel, TrendingModel, category_mask
from tests.models.conftest import AS_OF, event, make_training_data


def test_category_matching_is_by_path_prefix() -> None:
    cats = ["Home", "Home > Kitchen", "Homeware", "Garden > Home", ""]
    assert category_mask(cats, "Home").tolist() == [True, True, False, False, False]
    assert category_mask(cats, "Home > Kitchen").tolist() == [False, True, False, False, False]


def test_an_event_one_half_life_old_counts_half() -> None:
    rows = [
        event(0, "u", "new", "purchase", 0.0),
        event(1, "u", "old", "purchase", 10.0),
    ]
    model = PopularModel(half_life_days=10.0).fit(make_training_data(rows))
    scores = model.popular_items(2)[1]
    np.testing.assert_allclose(scores, [10.0, 5.0], rtol=1e-6)


def test_time_is_measured_from_as_of_not_the_clock() -> None:
    rows = [event(0, "u", "x", "view", 0.0)]
    later = make_training_data(rows, as_of=AS_OF + 5 * 86_400_000_000)
    np.testing.assert_allclose(
        PopularModel(half_life_days=5.0).fit(later).item_scores_, [0.5], rtol=1e-6
    )


def test_popular_items_by_category(tiny_data: TrainingData) -> None:
    model = PopularModel().fit(tiny_data)
    items, scores = model.popular_items(10, category="Home")
    assert set(items.tolist()) == {0, 1, 2, 3}
    assert np.all(np.diff(scores) <= 0)
    kitchen, _ = model.popular_items(10, category="Home > Kitchen")
    assert set(kitchen.tolist()) == {0, 1}
    assert model.popular_items(10, category="Toys")[0].size == 0
    top, _ = model.popular_items(1)
    assert top.tolist() in ([2], [3])  # a2 and a3 have the most, and most recent, buyers


def test_score_is_the_same_full_row_for_everyone(tiny_data: TrainingData) -> None:
    model = PopularModel().fit(tiny_data)
    empty = sp.csr_matrix((3, tiny_data.n_items), dtype=np.float32)
    scores = model.score(np.array([0, -1, 9]), empty)
    assert np.isfinite(scores).all()
    assert (scores == scores[0]).all()


def test_trending_ratio() -> None:
    rows = [event(n, "u", "rising", "view", 1.0) for n in range(8)]  # 8 this week
    rows += [event(100 + n, "u", "rising", "view", 10.0) for n in range(4)]  # 4 in 4 weeks
    rows += [event(200 + n, "u", "steady", "view", 1.0 + 7 * n) for n in range(5)]
    model = TrendingModel(window_days=7, baseline_days=28, smoothing=1.0)
    model.fit(make_training_data(rows, as_of=AS_OF))
    items, scores = model.popular_items(5)
    # rising: (8 + 1) / (4 · 7/28 + 1) = 4.5; steady: (1 + 1) / (4 · 7/28 + 1) = 1.
    assert items.tolist() == [0, 1]
    np.testing.assert_allclose(scores, [4.5, 1.0], rtol=1e-6)


@pytest.mark.parametrize("days_before", [40.0, 100.0])
def test_trending_lists_only_items_active_in_the_window(days_before: float) -> None:
    rows = [event(0, "u", "old", "purchase", days_before), event(1, "u", "new", "view", 2.0)]
    model = TrendingModel().fit(make_training_data(rows, as_of=AS_OF))
    assert model.popular_items(5)[0].tolist() == [0]  # "new" sorts before "old"


def test_categories_are_stored_as_codes_and_a_version_with_one_string_per_item_still_loads(
    tiny_data: TrainingData, tmp_path: Path
) -> None:
    import json

    from recsys.models.base import load_arrays, save_arrays

    model = PopularModel().fit(tiny_data)
    model.save(tmp_path / "new")
    names = json.loads((tmp_path / "new" / "category_names.json").read_text())
    assert len(names) == len(set(names)) < tiny_data.n_items  # one entry per category
    loaded = PopularModel.load(tmp_path / "new")
    assert loaded.item_category_ == list(tiny_data.item_category)
    # the format before codes: categories.json with one string per item
    model.save(tmp_path / "old")
    old = tmp_path / "old"
    arrays = load_arrays(old / "scores.npz")
    save_arrays(old / "scores.npz", scores=arrays["scores"], listed=arrays["listed"])
    (old / "category_names.json").unlink()
    (old / "categories.json").write_text(json.dumps(list(tiny_data.item_category)))
    before = PopularModel.load(old)
    assert before.item_category_ == loaded.item_category_
    for category in {c.split(" > ")[0] for c in tiny_data.item_category}:
        np.testing.assert_array_equal(
            before.popular_items(5, category)[0], model.popular_items(5, category)[0]
        )
    # codes that name no category are refused
    save_arrays(
        tmp_path / "new" / "scores.npz",
        scores=arrays["scores"],
        listed=arrays["listed"],
        category_codes=np.full(tiny_data.n_items, len(names), dtype=np.int32),
    )
    with pytest.raises(ArtifactError, match="not one known category per item"):
        PopularModel.load(tmp_path / "new")
