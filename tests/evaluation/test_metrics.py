"""Ranking metrics: hand-computed cases and the laws every metric obeys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import DataError
from recsys.evaluation.metrics import (
    RANKING_METRICS,
    catalog_coverage,
    exposure,
    gini,
    grouped_ndcg,
    hit_matrix,
    mean_ci,
    mean_metrics,
    novelty,
    ranking_metrics,
)


def rel(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [i for i, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


# -- hand-computed -------------------------------------------------------------------------------


def test_hand_computed_single_user() -> None:
    # hits at ranks 1 and 3; 4 relevant items in all (one never recommended)
    topk = np.array([[2, 5, 7, 1]])
    m = ranking_metrics(topk, rel([[2, 7, 8, 9]], 10))
    assert m["precision"][0] == pytest.approx(2 / 4)
    assert m["recall"][0] == pytest.approx(2 / 4)
    assert m["capped_recall"][0] == pytest.approx(2 / 4)
    assert m["hit_rate"][0] == 1.0
    assert m["mrr"][0] == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, 5))
    assert m["ndcg"][0] == pytest.approx(dcg / idcg)
    assert m["map"][0] == pytest.approx((1 / 1 + 2 / 3) / 4)


def test_hand_computed_at_smaller_k_and_padding() -> None:
    topk = np.array([[3, 0, -1], [-1, -1, -1], [4, 1, 2]])
    m = ranking_metrics(topk, rel([[0], [1], [2, 1]], 5), k=2)
    assert m["precision"].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert m["recall"].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert m["mrr"].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert m["hit_rate"].tolist() == [1.0, 0.0, 1.0]
    # user 3: one hit at rank 2, two relevant items, cut-off 2
    assert m["ndcg"][2] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map"][2] == pytest.approx((1 / 2) / 2)


def test_recall_is_plain_not_capped_at_k() -> None:
    # 5 relevant, k = 2, both hits: plain recall is 2/5, not 2/min(2, 5) = 1
    m = ranking_metrics(np.array([[0, 1]]), rel([[0, 1, 2, 3, 4]], 6))
    assert m["recall"][0] == pytest.approx(0.4)
    assert m["capped_recall"][0] == pytest.approx(1.0)
    assert m["ndcg"][0] == pytest.approx(1.0)
    assert m["map"][0] == pytest.approx(1.0)


def test_users_without_relevant_items_are_nan_and_skipped_by_mean() -> None:
    m = ranking_metrics(np.array([[0, 1], [0, 1]]), rel([[0], []], 3))
    assert all(np.isnan(m[name][1]) for name in RANKING_METRICS)
    means = mean_metrics(m)
    assert means["recall"] == pytest.approx(1.0)
    assert math.isnan(mean_metrics({"recall": np.array([np.nan])})["recall"])


def test_relevance_may_have_more_columns_than_recommendable_items() -> None:
    m = ranking_metrics(np.array([[0, 1]]), rel([[1, 9]], 10))
    assert m["recall"][0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("topk", "relevant", "message"),
    [
        (np.array([[0, 0]]), rel([[0]], 3), "repeats item 0"),
        (np.array([[0, 5]]), rel([[0]], 3), "item index 5"),
        (np.array([[0, 1]]), rel([[0], [1]], 3), "1 rows but the relevance matrix has 2"),
        (np.array([0, 1]), rel([[0]], 3), "2-D"),
    ],
)
def test_bad_input_is_a_clear_data_error(
    topk: np.ndarray, relevant: sp.csr_matrix, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        ranking_metrics(topk, relevant)


def test_k_larger_than_list_is_refused() -> None:
    with pytest.raises(DataError, match="fewer than k=3"):
        ranking_metrics(np.array([[0, 1]]), rel([[0]], 3), k=3)


def test_coverage_exposure_novelty_gini_hand_computed() -> None:
    topk = np.array([[0, 1], [0, -1], [0, 2]])
    assert catalog_coverage(topk, 6) == pytest.approx(3 / 6)
    assert exposure(topk, 4).tolist() == [3, 1, 1, 0]
    # item 0 bought by 3 of 3 users (0 bits), items 1, 2 by nobody: -log2(1/4) = 2 bits
    assert novelty(topk, np.array([3, 0, 0, 1]), 3) == pytest.approx((0 + 2 + 0 + 0 + 2) / 5)
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.zeros(3)) == 0.0
    assert math.isnan(novelty(np.full((2, 2), -1), np.array([1, 1]), 2))
    with pytest.raises(DataError):
        gini(np.array([-1, 2]))


# -- properties ----------------------------------------------------------------------------------


@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[np.ndarray, sp.csr_matrix, int]:
    n_items = draw(st.integers(2, 15))
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, n_items))
    lists, truth = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(range(n_items)))
        length = draw(st.integers(0, k))
        lists.append(list(perm[:length]) + [-1] * (k - length))
        truth.append(draw(st.sets(st.integers(0, n_items - 1), min_size=1)))
    return np.array(lists), rel([sorted(t) for t in truth], n_items), k


@settings(max_examples=150, deadline=None)
@given(ranking_case())
def test_every_metric_lies_in_unit_interval(case: tuple[np.ndarray, sp.csr_matrix, int]) -> None:
    topk, relevant, _ = case
    for name, values in ranking_metrics(topk, relevant).items():
        assert np.all((values >= 0) & (values <= 1 + 1e-12)), name


@settings(max_examples=150, deadline=None)
@given(ranking_case())
def test_precision_times_k_counts_hits(case: tuple[np.ndarray, sp.csr_matrix, int]) -> None:
    topk, relevant, k = case
    m = ranking_metrics(topk, relevant)
    hits = hit_matrix(topk, relevant).sum(axis=1)
    assert np.allclose(m["precision"] * k, hits)
    n_rel = np.diff(relevant.indptr)
    assert np.allclose(m["recall"] * n_rel, hits)
    assert np.array_equal(m["hit_rate"] == 1, hits > 0)


@settings(max_examples=100, deadline=None)
@given(ranking_case())
def test_recall_and_hit_rate_never_decrease_with_k(
    case: tuple[np.ndarray, sp.csr_matrix, int],
) -> None:
    topk, relevant, k = case
    previous = {"recall": np.zeros(len(topk)), "hit_rate": np.zeros(len(topk))}
    for cut in range(1, k + 1):
        m = ranking_metrics(topk, relevant, k=cut)
        for name in previous:
            assert np.all(m[name] >= previous[name] - 1e-12)
            previous[name] = m[name]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_perfect_ranking_scores_one(data: st.DataObject) -> None:
    n_items = data.draw(st.integers(2, 12))
    k = data.draw(st.integers(1, n_items))
    truth = sorted(data.draw(st.sets(st.integers(0, n_items - 1), min_size=1)))
    others = [i for i in range(n_items) if i not in truth]
    topk = np.array([(truth + others)[:k]])
    m = ranking_metrics(topk, rel([truth], n_items))
    for name in ("ndcg", "map", "hit_rate", "mrr"):
        assert m[name][0] == pytest.approx(1.0), name
    assert m["recall"][0] == pytest.approx(min(k, len(truth)) / len(truth))
    assert m["capped_recall"][0] == pytest.approx(1.0)
    assert m["precision"][0] == pytest.approx(min(k, len(truth)) / k)


@settings(max_examples=100, deadline=None)
@given(ranking_case(), st.randoms(use_true_random=False))
def test_permuting_irrelevant_items_changes_nothing(
    case: tuple[np.ndarray, sp.csr_matrix, int], random: object
) -> None:
    topk, relevant, _ = case
    dense = relevant.toarray() > 0
    shuffled = topk.copy()
    for u in range(len(topk)):
        slots = [j for j, i in enumerate(topk[u]) if i < 0 or not dense[u, i]]
        values = [topk[u, j] for j in slots]
        random.shuffle(values)  # type: ignore[attr-defined]
        shuffled[u, slots] = values
    before, after = ranking_metrics(topk, relevant), ranking_metrics(shuffled, relevant)
    for name in RANKING_METRICS:
        assert np.allclose(before[name], after[name]), name


@settings(max_examples=100, deadline=None)
@given(ranking_case())
def test_moving_a_hit_up_never_lowers_ndcg(case: tuple[np.ndarray, sp.csr_matrix, int]) -> None:
    topk, relevant, _ = case
    hits = hit_matrix(topk, relevant)
    improved = topk.copy()
    for u in range(len(topk)):
        positions = np.flatnonzero(hits[u])
        if positions.size and positions[-1] > 0:
            j = positions[-1]
            improved[u, [j - 1, j]] = improved[u, [j, j - 1]]
    a, b = ranking_metrics(topk, relevant), ranking_metrics(improved, relevant)
    for name in ("ndcg", "map", "mrr"):
        assert np.all(b[name] >= a[name] - 1e-12), name
    assert np.allclose(a["recall"], b["recall"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30))
def test_gini_is_in_unit_interval_and_scale_free(values: list[int]) -> None:
    x = np.array(values, dtype=float)
    g = gini(x)
    assert 0.0 <= g < 1.0
    assert gini(3 * x) == pytest.approx(g)


def test_mean_ci_by_hand() -> None:
    values = np.array([0.0, 1.0] * 50 + [np.nan])  # NaN: a user without relevant items
    lo, hi = mean_ci(values)
    half = 1.959964 * math.sqrt(0.25 * 100 / 99) / 10
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert mean_ci(np.array([0.3])) == (0.3, 0.3)
    assert all(math.isnan(v) for v in mean_ci(np.array([np.nan])))
    with pytest.raises(DataError, match="confidence level"):
        mean_ci(values, level=1.0)


@given(
    values=st.lists(st.floats(0, 1), min_size=2, max_size=60),
    level=st.floats(0.5, 0.99),
)
@settings(max_examples=200, deadline=None)
def test_mean_ci_holds_the_mean_and_widens_with_the_level(
    values: list[float], level: float
) -> None:
    arr = np.array(values)
    lo, hi = mean_ci(arr, level)
    assert lo <= arr.mean() + 1e-12 and arr.mean() - 1e-12 <= hi
    wider_lo, wider_hi = mean_ci(arr, min(0.999, level + 0.005))
    assert wider_lo <= lo + 1e-12 and hi <= wider_hi + 1e-12


# -- NDCG of candidate lists in long form --------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_grouped_ndcg_is_the_list_ndcg_of_each_group_ranked_by_score(data: st.DataObject) -> None:
    """Rows shuffled across groups, each group ranked by its distinct scores, give the mean
    NDCG@k that ranking_metrics gives the same lists (over the groups with a relevant row)."""
    n_groups = data.draw(st.integers(1, 5))
    n_items = data.draw(st.integers(1, 8))
    k = data.draw(st.integers(1, 10))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    relevant = rng.random((n_groups, n_items)) < 0.3
    scores = np.stack([rng.permutation(n_items) for _ in range(n_groups)]).astype(float)
    group = np.repeat(np.arange(n_groups) * 7 + 3, n_items)  # labels need not be 0..n-1
    order = rng.permutation(n_groups * n_items)
    got = grouped_ndcg(group[order], scores.ravel()[order], relevant.ravel()[order], k)
    topk = np.argsort(-scores, axis=1)
    padded = np.full((n_groups, max(k, n_items)), -1)
    padded[:, :n_items] = topk
    expected = mean_metrics(ranking_metrics(padded, sp.csr_matrix(relevant), k))["ndcg"]
    if relevant.any():
        assert got == pytest.approx(expected)
    else:
        assert math.isnan(got) and math.isnan(expected)


def test_grouped_ndcg_by_hand() -> None:
    # group 5: the relevant row second of two (1 / log2(3)); group 1: first of one (1);
    # group 9 has no relevant row and does not count
    got = grouped_ndcg(
        np.array([5, 1, 5, 9]), np.array([2.0, 0.0, 1.0, 4.0]), np.array([0, 1, 1, 0]), k=10
    )
    assert got == pytest.approx((1.0 / math.log2(3) + 1.0) / 2)
    assert grouped_ndcg(np.array([5, 5]), np.array([2.0, 1.0]), np.array([0, 1]), k=1) == 0.0
    with pytest.raises(DataError, match="k must be at least 1"):
        grouped_ndcg(np.array([1]), np.array([1.0]), np.array([1]), k=0)
