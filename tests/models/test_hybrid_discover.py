"""The hybrid's discover order: the never-bought candidates ordered by the fusion of the
learned order and the shop's popularity or the EASE rank, chosen per shop by a test on
held-out customers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import EventFrame
from recsys.errors import ArtifactError
from recsys.models.hybrid import HybridModel
from recsys.models.orders import DISCOVER_BY, DISCOVER_MIXES
from tests.models.conftest import AS_OF
from tests.models.test_hybrid import synthetic_rows


@pytest.fixture(scope="module")
def shop() -> TrainingData:
    return build_training_data(
        EventFrame.from_rows(synthetic_rows()), InteractionConfig(), as_of=AS_OF
    )


@pytest.fixture(scope="module")
def auto(shop: TrainingData) -> HybridModel:
    return HybridModel(factors=16, max_iter=100, train_windows=3, discover_order="auto").fit(shop)


def test_a_fit_runs_the_test_and_a_learned_order_runs_none(
    auto: HybridModel, shop: TrainingData
) -> None:
    """The test's numbers are in ``train_stats_``, every mix's (EASE's only for a fit with
    an EASE generator); the default (``"learned"``) fit runs no test and serves the learned
    order."""
    stats = auto.train_stats_
    assert stats["discover_buyers"] > 0
    assert 0.0 <= stats["discover_learned_ndcg"] <= 1.0
    assert stats["discover_weight"] == auto.discover_weight_
    assert stats["discover_ease"] == float(auto.discover_by_ == "ease")
    tried = {f"discover_t_{by}_{w:g}" for by, w in DISCOVER_MIXES}
    assert tried <= set(stats)
    no_ease = HybridModel(
        factors=16, max_iter=100, train_windows=3, discover_order="auto", max_ease_items=0
    ).fit(shop)
    assert no_ease.state_.ease is None and no_ease.discover_by_ == "popularity"
    assert {k for k in no_ease.train_stats_ if k.startswith("discover_t_")} == {
        k for k in tried if "_popularity_" in k
    }
    plain = HybridModel(factors=16, max_iter=100, train_windows=3).fit(shop)
    assert plain.discover_weight_ == 0.0 and "discover_buyers" not in plain.train_stats_


def test_a_discover_order_serves_the_same_lists_on_every_path(
    auto: HybridModel, shop: TrainingData, tmp_path: Path
) -> None:
    """With popularity or the EASE rank mixed in, the dense scores, the lists from the
    pairs and the explanations agree, the lists without the customer's purchases change
    (and differ between the two), and the order travels with the saved model (a version
    saved before the EASE mix existed loads as popularity's, one saved before any mix as
    the learned order)."""
    from recsys.models.base import top_k
    from tests.models.test_recommend_lists import assert_lists_equal

    assert auto.state_.ease is not None
    users = np.arange(shop.n_users)
    exclude = sp.csr_matrix(shop.interactions, copy=True)
    exclude.data[:] = 1.0
    before, _ = top_k(
        auto.in_order(auto.repeat_first_, 0.0).score(users, shop.interactions), 8, exclude=exclude
    )
    served: dict[str, np.ndarray] = {}
    for by in DISCOVER_BY:
        mixed = auto.in_order(auto.repeat_first_, 2.0, by)
        assert_lists_equal(mixed, shop, np.random.default_rng(5))
        scores = mixed.score(users, shop.interactions)
        want, _ = top_k(scores, 8, exclude=exclude)
        got = mixed.explain(users, shop.interactions, 8, exclude=exclude)
        for u in range(shop.n_users):
            assert [r.item for r in got[u]] == want[u][want[u] >= 0].tolist()
        assert not np.array_equal(before, want)
        served[by] = want
        mixed.save(tmp_path / by)
        loaded = HybridModel.load(tmp_path / by)
        assert (loaded.discover_by_, loaded.discover_weight_) == (by, 2.0)
        np.testing.assert_array_equal(loaded.score(users, shop.interactions), scores)
    assert not np.array_equal(served["popularity"], served["ease"])
    meta_path = tmp_path / "ease" / "hybrid.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "discover_by": "bm25"}))
    with pytest.raises(ArtifactError, match="discover_by 'bm25'"):
        HybridModel.load(tmp_path / "ease")
    del meta["discover_by"]
    meta_path.write_text(json.dumps(meta))
    old = HybridModel.load(tmp_path / "ease")
    assert (old.discover_by_, old.discover_weight_) == ("popularity", 2.0)
    del meta["discover_weight"]
    meta_path.write_text(json.dumps(meta))
    assert HybridModel.load(tmp_path / "ease").discover_weight_ == 0.0


def test_a_young_shop_tests_the_discover_order_but_not_repeat_first() -> None:
    """Under ``REPEAT_FIRST_MIN_WINDOWS`` label windows of history own purchases come first
    untested, and the probe (learned on one window) still tests the discover order; an
    evaluation's fit runs no probe and serves the learned order."""
    from recsys.data.schema import MICROS_PER_DAY
    from recsys.models.ranker import REPEAT_FIRST_MIN_WINDOWS

    days = REPEAT_FIRST_MIN_WINDOWS * 30 - 20  # label_days is 30
    rows = [r for r in synthetic_rows() if r.ts > AS_OF - days * MICROS_PER_DAY]
    data = build_training_data(EventFrame.from_rows(rows), InteractionConfig(), as_of=AS_OF)

    def model() -> HybridModel:
        return HybridModel(
            factors=16,
            max_iter=100,
            train_windows=3,
            repeat_first="auto",
            discover_order="auto",
        )

    young = model().fit(data)
    stats = young.train_stats_
    assert young.repeat_first_ and stats["gate_young"] == 1.0 and "gate_t" not in stats
    assert stats["discover_buyers"] > 0 and stats["discover_weight"] == young.discover_weight_
    evaluated = model().without_order_test().fit(data)
    assert evaluated.discover_weight_ == 0.0
    assert "discover_buyers" not in evaluated.train_stats_


@pytest.mark.parametrize("with_ease", [True, False])
@pytest.mark.parametrize(
    ("repeat_first", "discover_order", "n"),
    [("auto", "auto", 14), ("auto", "learned", 2), ("never", "auto", 7), ("never", "learned", 0)],
)
def test_a_fit_lists_every_order_its_tests_choose_among(
    auto: HybridModel, repeat_first: str, discover_order: str, n: int, with_ease: bool
) -> None:
    """``order_choices``: the served order first, then every other combination of the
    orders whose test is "auto" (none when no test chooses), each mix's orders next to each
    other; the EASE mixes only for a fit with an EASE generator; a fit ranking with the
    fixed blend has none."""
    import dataclasses

    model = auto.in_order(auto.repeat_first_, 0.0)  # serving the learned order
    model.repeat_first, model.discover_order = repeat_first, discover_order
    if not with_ease:
        model.state_ = dataclasses.replace(model.state_, ease=None)
        n -= (n // 7) * 3  # the three EASE mixes, in each order of own purchases
    orders = model.order_choices()
    assert len(orders) == len(set(orders)) == n
    if n:
        assert orders[0] == model.served_order()
        mixes = [(o.discover_by, o.discover_weight) for o in orders]
        assert set(mixes) <= {("popularity", 0.0), *DISCOVER_MIXES}
        assert (with_ease and discover_order == "auto") == any(by == "ease" for by, _ in mixes)
        runs = [m for i, m in enumerate(mixes) if i == 0 or m != mixes[i - 1]]
        assert len(runs) == len(set(runs))
    blend = copy.copy(model)
    blend.ranker_ = None
    assert blend.order_choices() == () and blend.served_order() is None


def test_the_orders_of_one_fit_compute_each_weights_discover_order_once(
    auto: HybridModel, shop: TrainingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``shared_scoring`` a batch's fourteen orders compute the discover order once
    per mix and each order's lists are the ones it has alone (``in_order``)."""
    import recsys.models.hybrid as hybrid
    from recsys.models.base import shared_scoring

    model = copy.copy(auto)
    model.repeat_first = model.discover_order = "auto"
    orders = [
        model.in_order(o.first, o.discover_weight, o.discover_by) for o in model.order_choices()
    ]
    users, history = np.arange(shop.n_users), shop.interactions
    excludes = (None, history)
    alone = [m.recommend_lists(users, history, 10, excludes=excludes) for m in orders]
    assert len({a[1][0].tobytes() for a in alone}) > 2  # the orders' lists differ
    mixes: list[tuple[str, float]] = []
    real = hybrid.discover_scores

    def spy(
        rows: np.ndarray, x: np.ndarray, learned: np.ndarray, weight: float, by: str
    ) -> np.ndarray:
        mixes.append((by, weight))
        return real(rows, x, learned, weight, by)

    monkeypatch.setattr(hybrid, "discover_scores", spy)
    with shared_scoring():
        shared = [m.recommend_lists(users, history, 10, excludes=excludes) for m in orders]
    assert sorted(mixes) == sorted(DISCOVER_MIXES)
    for got, want in zip(shared, alone, strict=True):
        for (gi, gs), (wi, ws) in zip(got, want, strict=True):
            np.testing.assert_array_equal(gi, wi)
            np.testing.assert_array_equal(gs, ws)
