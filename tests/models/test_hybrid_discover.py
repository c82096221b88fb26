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
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import InteractionConfig, TrainingData, build_training_data
from recsys.data.schema import EventFrame
from recsys.errors import ArtifactError
from recsys.models import kernels
from recsys.models.features import FEATURES
from recsys.models.hybrid import HybridModel, ServedOrder
from recsys.models.orders import (
    DISCOVER_BY,
    DISCOVER_MIXES,
    DISCOVER_RRF_K,
    DISCOVER_T,
    DiscoverOrders,
    discover_choice,
    discover_scores,
)
from tests.models.conftest import AS_OF
from tests.models.test_hybrid import synthetic_rows

N_ORDERS = FEATURES.index("n_orders")
POP = FEATURES.index("item_pop_recent")
EASE = FEATURES.index("ease_score")
TOTAL = FEATURES.index("item_pop_total")


def _features(orders: np.ndarray, pop: np.ndarray, ease: np.ndarray | None = None) -> np.ndarray:
    """Feature rows with these orders and popularity, and EASE scores (none: NaN, as in a
    fit without an EASE generator)."""
    x = np.zeros((len(orders), len(FEATURES)), dtype=np.float32)
    x[:, N_ORDERS] = orders
    x[:, POP] = pop
    x[:, EASE] = np.nan if ease is None else ease
    return x


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),  # customer
            st.integers(0, 2),  # orders of the item
            st.floats(0, 100, allow_nan=False),  # popularity
            st.floats(-5, 5, allow_nan=False),  # learned score
            st.floats(-1, 1, allow_nan=False),  # EASE score
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([0.5, 1.0, 2.0, 1e6]),
    st.sampled_from(DISCOVER_BY),
)
def test_the_discover_order_hands_each_customers_new_items_their_own_scores(
    entries: list[tuple[int, int, float, float, float]], weight: float, by: str
) -> None:
    """Per customer, the never-bought candidates keep the set of scores they had (so the
    slots their purchases hold in a list do not move) and bought ones keep theirs; with a
    weight that drowns the learned order, the new items come in the order mixed in
    (popularity, or the EASE score)."""
    rows = np.array([e[0] for e in entries])
    orders = np.array([e[1] for e in entries], dtype=np.float32)
    pop = np.array([e[2] for e in entries], dtype=np.float32)
    learned = np.array([e[3] for e in entries], dtype=np.float64)
    ease = np.array([e[4] for e in entries], dtype=np.float32)
    out = discover_scores(rows, _features(orders, pop, ease), learned, weight, by)
    bought = orders > 0
    np.testing.assert_array_equal(out[bought], learned[bought])
    mixed_in = pop if by == "popularity" else ease
    for u in np.unique(rows):
        new = (rows == u) & ~bought
        assert sorted(out[new]) == sorted(learned[new])
        if weight == 1e6 and len(np.unique(mixed_in[new])) == new.sum():
            # distinct keys: the first new item by the mixed-in order gets the best score
            by_key = np.argsort(-mixed_in[new])
            assert np.all(np.diff(out[new][by_key]) <= 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_one_batchs_orders_for_several_mixes_equal_each_mix_alone(seed: int) -> None:
    """The probe computes every mix from one :class:`DiscoverOrders` (the ranks shared):
    each mix, in any order, is what that mix gives alone."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    rows = np.sort(rng.integers(0, 6, n))
    x = _features(
        rng.integers(0, 2, n).astype(np.float32),
        rng.integers(0, 5, n).astype(np.float32),  # ties in popularity
        np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)).astype(np.float32),
    )
    learned = rng.normal(size=n)
    orders = DiscoverOrders(rows, x, learned)
    for by, weight in [DISCOVER_MIXES[i] for i in rng.permutation(len(DISCOVER_MIXES))]:
        alone = discover_scores(rows, x, learned, weight, by)
        np.testing.assert_array_equal(orders.scores(weight, by), alone)


def _lexsort_discover_scores(
    rows: np.ndarray, x: np.ndarray, learned: np.ndarray, weight: float, by: str
) -> np.ndarray:
    """The discover order as np.lexsort wrote it before :func:`order_within_rows` (the
    reference: three to five stable sorts of every key)."""
    new = np.flatnonzero(~(np.nan_to_num(x[:, N_ORDERS]) > 0))
    r, score = rows[new], learned[new]
    best_first = np.lexsort((-score, r))
    by_learned = np.empty(len(new), dtype=np.intp)
    by_learned[best_first] = np.arange(len(new)) - np.searchsorted(r[best_first], r[best_first])
    pop = np.nan_to_num(x[new, POP].astype(np.float64), nan=-1.0)
    total = np.nan_to_num(x[new, TOTAL].astype(np.float64), nan=-1.0)
    keys: tuple[np.ndarray, ...] = (by_learned, -total, -pop, r)
    if by == "ease":
        ease = np.nan_to_num(x[new, EASE].astype(np.float64), nan=-np.inf)
        keys = (by_learned, -total, -pop, -ease, r)
    other = np.lexsort(keys)
    by_other = np.empty(len(new), dtype=np.intp)
    by_other[other] = np.arange(len(new)) - np.searchsorted(r[other], r[other])
    fused = 1.0 / (DISCOVER_RRF_K + by_learned) + weight / (DISCOVER_RRF_K + by_other)
    out = learned.copy()
    out[new[np.lexsort((by_learned, -fused, r))]] = score[best_first]
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(DISCOVER_MIXES))
def test_the_discover_order_equals_the_lexsort_reference(seed: int, mix: tuple[str, float]) -> None:
    """The packed-key sorts give the lexsort's order to the entry, ties included: equal
    learned scores, equal popularity and totals, NaN EASE scores, rows in any order."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    rows = rng.integers(0, 5, n)
    x = _features(
        rng.integers(0, 2, n).astype(np.float32),
        rng.integers(0, 4, n).astype(np.float32),
        np.where(rng.random(n) < 0.3, np.nan, rng.integers(-2, 3, n)).astype(np.float32),
    )
    x[:, TOTAL] = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n))
    learned = rng.integers(-3, 4, n) / 2.0 + (rng.random() < 0.5) * rng.normal(size=n)
    by, weight = mix
    with pytest.MonkeyPatch.context() as mp:  # the packed sorts, as on a training's batches
        mp.setattr(kernels, "PACKED_SORT_MIN", 0)
        np.testing.assert_array_equal(
            discover_scores(rows, x, learned, weight, by),
            _lexsort_discover_scores(rows, x, learned, weight, by),
        )


def test_an_unknown_discover_order_is_refused_by_name() -> None:
    x = _features(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="'bm25'"):
        discover_scores(np.zeros(2, dtype=np.intp), x, np.ones(2), 1.0, "bm25")


def test_a_weight_that_does_not_move_a_rank_changes_nothing() -> None:
    """The learned order and the popularity order agreeing, the scores are the learned ones."""
    rows = np.zeros(5, dtype=np.intp)
    learned = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    x = _features(np.zeros(5), np.array([50.0, 40.0, 30.0, 20.0, 10.0]))
    np.testing.assert_array_equal(discover_scores(rows, x, learned, 2.0), learned)


def _window(
    rng: np.random.Generator, buys: str, with_ease: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """300 customers with 20 never-bought candidates each, scored by a ranker that puts the
    least popular first (plus noise); each bought the most popular one (``buys`` is
    "popularity"), the one with the best EASE score (unrelated to popularity; "ease") or the
    ranker's first ("learned"). Without ``with_ease`` the rows carry no EASE score (as in a
    fit without an EASE generator). Returns the rows' customers, features, labels and
    scores."""
    customers, per = 300, 20
    group = np.repeat(np.arange(customers), per)
    pop = rng.permutation(np.tile(np.arange(per, dtype=np.float32), customers))
    ease = rng.random(len(group)).astype(np.float32)
    x = _features(np.zeros(len(group)), pop, ease if with_ease else None)
    learned = -pop + rng.normal(0, 0.1, len(group))
    bought_by = {"popularity": pop, "ease": ease, "learned": learned}[buys]
    y = np.zeros(len(group), dtype=np.int8)
    for c in range(customers):
        mine = np.flatnonzero(group == c)
        y[mine[np.argmax(bought_by[mine])]] = 1
    return group, x, y, learned


@pytest.mark.parametrize(
    ("buys", "with_ease"),
    [
        ("popularity", False),
        ("learned", False),
        ("popularity", True),
        ("ease", True),
        ("learned", True),
        ("ease", False),
    ],
)
def test_the_test_mixes_in_an_order_only_where_the_new_purchases_follow_it(
    buys: str, with_ease: bool
) -> None:
    """The decision rule on a constructed window: where the customers' new purchases are
    the most popular candidates (which the ranker puts last), or those with the best EASE
    score, a weight of that order wins by far more than :data:`DISCOVER_T` standard errors.
    Where they bought the ranker's first, the learned order stays; without EASE scores (a
    fit with no EASE generator) the EASE order is not tried."""
    group, x, y, learned = _window(np.random.default_rng(3), buys, with_ease)
    (by, weight), stats = discover_choice(group, x, y, learned)
    assert stats["discover_buyers"] == 300 and stats["discover_weight"] == weight
    assert stats["discover_ease"] == float(by == "ease")
    tried = [m for m in DISCOVER_MIXES if with_ease or m[0] != "ease"]
    assert {k for k in stats if k.startswith("discover_t_")} == {
        f"discover_t_{b}_{w:g}" for b, w in tried
    }
    if buys == "learned" or (buys == "ease" and not with_ease):
        assert (by, weight) == ("popularity", 0.0)
        assert all(stats[f"discover_t_{b}_{w:g}"] < DISCOVER_T for b, w in tried)
    else:
        assert by == buys and weight > 0
        assert stats[f"discover_t_{by}_{weight:g}"] > DISCOVER_T
        assert stats[f"discover_ndcg_{by}_{weight:g}"] > stats["discover_learned_ndcg"]


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
    from recsys.models.hybrid import REPEAT_FIRST_MIN_WINDOWS

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
        assert orders[0] == ServedOrder.of_model(model)
        mixes = [(o.discover_by, o.discover_weight) for o in orders]
        assert set(mixes) <= {("popularity", 0.0), *DISCOVER_MIXES}
        assert (with_ease and discover_order == "auto") == any(by == "ease" for by, _ in mixes)
        runs = [m for i, m in enumerate(mixes) if i == 0 or m != mixes[i - 1]]
        assert len(runs) == len(set(runs))
    blend = copy.copy(model)
    blend.ranker_ = None
    assert blend.order_choices() == () and ServedOrder.of_model(blend) is None


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
