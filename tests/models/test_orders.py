"""The orders a hybrid serves its candidates in (:mod:`recsys.models.orders`): the discover
order's fusion of the learned order with the shop's popularity or the EASE rank, and the test
that chooses one on a window's customers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models import kernels
from recsys.models.features import FEATURES
from recsys.models.orders import (
    DISCOVER_BY,
    DISCOVER_MIXES,
    DISCOVER_RRF_K,
    DISCOVER_T,
    DiscoverOrders,
    discover_choice,
    discover_scores,
)

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
