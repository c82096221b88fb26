"""Co-occurrence: the laws of counting pairs, the normalisations, and the neighbour lists."""

from __future__ import annotations

import dataclasses
from itertools import combinations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import TrainingData
from recsys.errors import ConfigError, ModelError
from recsys.models.cooccurrence import (
    CooccurrenceModel,
    cooccurrence_counts,
    cooccurrence_matrix,
    keep_top_neighbours,
)

N_ITEMS = 6
baskets_strategy = st.lists(
    st.sets(st.integers(0, N_ITEMS - 1), min_size=1, max_size=N_ITEMS), min_size=1, max_size=15
)


def as_matrix(baskets: list[set[int]]) -> sp.csr_matrix:
    m = sp.lil_matrix((len(baskets), N_ITEMS), dtype=np.float32)
    for r, basket in enumerate(baskets):
        for i in basket:
            m[r, i] = 1.0
    return sp.csr_matrix(m)


def brute_force(baskets: list[set[int]]) -> np.ndarray:
    counts = np.zeros((N_ITEMS, N_ITEMS), dtype=np.int64)
    for basket in baskets:
        for i, j in combinations(sorted(basket), 2):
            counts[i, j] += 1
            counts[j, i] += 1
    return counts


@settings(max_examples=60, deadline=None)
@given(baskets_strategy, st.integers(1, 4))
def test_counts_equal_a_brute_force_count(baskets: list[set[int]], min_support: int) -> None:
    expected = brute_force(baskets)
    expected[expected < min_support] = 0
    got = cooccurrence_counts(as_matrix(baskets), min_support=min_support)
    np.testing.assert_array_equal(got.toarray(), expected)
    assert got.diagonal().sum() == 0  # no self-pairs
    assert got.nnz == 0 or got.data.min() >= min_support


@settings(max_examples=40, deadline=None)
@given(baskets_strategy, st.sampled_from(["count", "lift", "jaccard", "cosine"]))
def test_symmetric_measures_give_symmetric_matrices(baskets: list[set[int]], norm: str) -> None:
    s = cooccurrence_matrix(as_matrix(baskets), norm).toarray()
    np.testing.assert_allclose(s, s.T)
    assert np.all(np.diag(s) == 0)


@settings(max_examples=40, deadline=None)
@given(baskets_strategy)
def test_normalisations_match_their_definitions(baskets: list[set[int]]) -> None:
    m = as_matrix(baskets)
    c = brute_force(baskets).astype(np.float64)
    n = np.asarray(m.sum(axis=0)).ravel()
    pairs = c > 0
    i, j = np.nonzero(pairs)
    expect = {
        "lift": c[i, j] * len(baskets) / (n[i] * n[j]),
        "jaccard": c[i, j] / (n[i] + n[j] - c[i, j]),
        "cosine": c[i, j] / np.sqrt(n[i] * n[j]),
        "conditional": c[i, j] / n[i],
    }
    for norm, values in expect.items():
        got = cooccurrence_matrix(m, norm).toarray()
        np.testing.assert_allclose(got[i, j], values, err_msg=norm)
        assert (got[~pairs] == 0).all()
        if norm in ("jaccard", "cosine", "conditional"):
            assert got.max(initial=0) <= 1 + 1e-12


@settings(max_examples=40, deadline=None)
@given(baskets_strategy, st.integers(1, 3))
def test_top_neighbours_keeps_each_rows_largest(baskets: list[set[int]], k: int) -> None:
    full = cooccurrence_matrix(as_matrix(baskets), "cosine")
    kept = keep_top_neighbours(full, k)
    dense, kept_dense = full.toarray(), kept.toarray()
    for r in range(N_ITEMS):
        nonzero = np.count_nonzero(dense[r])
        assert np.count_nonzero(kept_dense[r]) == min(k, nonzero)
        if nonzero > k:  # nothing dropped beats anything kept
            dropped = dense[r][(kept_dense[r] == 0) & (dense[r] > 0)]
            assert dropped.max() <= kept_dense[r][kept_dense[r] > 0].min() + 1e-6


def test_conditional_is_not_symmetric() -> None:
    m = as_matrix([{0, 1}, {0}, {0}, {0, 2}])
    s = cooccurrence_matrix(m, "conditional").toarray()
    assert s[1, 0] == 1.0  # everyone who bought 1 bought 0
    assert s[0, 1] == 0.25


def test_unknown_normalisation_is_named() -> None:
    with pytest.raises(ConfigError, match="'pmi'"):
        cooccurrence_matrix(as_matrix([{0, 1}]), "pmi")


def test_no_sessions_is_a_clear_model_error(tiny_data: TrainingData) -> None:
    no_views = dataclasses.replace(
        tiny_data, sessions=sp.csr_matrix((0, tiny_data.n_items), dtype=np.float32)
    )
    with pytest.raises(ModelError, match="no sessions"):
        CooccurrenceModel(source="session").fit(no_views)
    CooccurrenceModel(source="basket", min_support=1).fit(no_views)  # baskets still there


def test_min_support_drops_rare_pairs(tiny_data: TrainingData) -> None:
    # Each pair of a-items is in 2 baskets per customer holding both; b pairs likewise.
    loose = CooccurrenceModel(min_support=1).fit(tiny_data)
    strict = CooccurrenceModel(min_support=100).fit(tiny_data)
    assert loose.similarity_.nnz > 0
    assert strict.similarity_.nnz == 0


def test_similar_items_stay_in_the_group(tiny_data: TrainingData) -> None:
    model = CooccurrenceModel(source="session", normalisation="jaccard", min_support=1)
    model.fit(tiny_data)
    items, values = model.similar_items(np.array([0, 5, -1]), 4)
    assert set(items[0][items[0] >= 0].tolist()) == {1, 2, 3}
    assert set(items[1][items[1] >= 0].tolist()) == {4, 6, 7}
    assert (items[:, 3] == -1).all()  # only three neighbours exist
    assert (items[2] == -1).all() and np.isneginf(values[2]).all()


def test_neighbours_caps_each_list(tiny_data: TrainingData) -> None:
    model = CooccurrenceModel(min_support=1, neighbours=1).fit(tiny_data)
    assert np.diff(model.similarity_.indptr).max() == 1
