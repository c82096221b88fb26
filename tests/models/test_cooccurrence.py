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
@given(baskets_strategy, st.floats(0.0, 1.0))
def test_normalisations_match_their_definitions(baskets: list[set[int]], alpha: float) -> None:
    m = as_matrix(baskets)
    c = brute_force(baskets).astype(np.float64)
    n = np.asarray(m.sum(axis=0), dtype=np.float64).ravel()
    pairs = c > 0
    i, j = np.nonzero(pairs)
    expect = {
        "lift": c[i, j] * len(baskets) / (n[i] * n[j]),
        "jaccard": c[i, j] / (n[i] + n[j] - c[i, j]),
        "cosine": c[i, j] / np.sqrt(n[i] * n[j]),
        "conditional": c[i, j] / n[i],
        "asymmetric": c[i, j] / (n[i] ** alpha * n[j] ** (1 - alpha)),
    }
    for norm, values in expect.items():
        got = cooccurrence_matrix(m, norm, alpha=alpha).toarray()
        np.testing.assert_allclose(got[i, j], values, err_msg=norm)
        assert (got[~pairs] == 0).all()
        if norm in ("jaccard", "cosine", "conditional", "asymmetric"):
            assert got.max(initial=0) <= 1 + 1e-12


@settings(max_examples=40, deadline=None)
@given(baskets_strategy)
def test_asymmetric_cosine_spans_conditional_and_cosine(baskets: list[set[int]]) -> None:
    m = as_matrix(baskets)
    for alpha, same_as in ((1.0, "conditional"), (0.5, "cosine")):
        np.testing.assert_allclose(
            cooccurrence_matrix(m, "asymmetric", alpha=alpha).toarray(),
            cooccurrence_matrix(m, same_as).toarray(),
            err_msg=same_as,
        )


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


def _top_by_sorting(m: sp.csr_matrix, k: int) -> dict[tuple[int, int], float]:
    """Each row's ``k`` largest entries by a full sort: value descending, NaN last, ties by
    lower column."""
    m = sp.csr_matrix(m, copy=True)
    m.sum_duplicates()
    kept = {}
    for r in range(m.shape[0]):
        cols = m.indices[m.indptr[r] : m.indptr[r + 1]]
        vals = m.data[m.indptr[r] : m.indptr[r + 1]]
        ranked = sorted(
            zip(cols.tolist(), vals.tolist(), strict=True),
            key=lambda cv: (np.isnan(cv[1]), -cv[1] if not np.isnan(cv[1]) else 0.0, cv[0]),
        )
        kept.update({(r, c): v for c, v in ranked[:k]})
    return kept


@settings(max_examples=80, deadline=None)
@given(
    entries=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 7),
            # few distinct values: ties at the cut are the point
            st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, float("nan")]),
        ),
        max_size=40,
    ),
    k=st.integers(1, 6),
)
def test_top_neighbours_is_a_sort_of_each_row(
    entries: list[tuple[int, int, float]], k: int
) -> None:
    """The partition equals a full sort of each row, ties broken by lower index, NaN last,
    whatever the input's order and duplicates."""
    rows, cols, vals = (list(x) for x in zip(*entries, strict=True)) if entries else ([], [], [])
    # built unsorted, duplicates left in
    m = sp.csr_matrix(
        (np.asarray(vals, np.float64), (np.asarray(rows, int), np.asarray(cols, int))),
        shape=(5, 8),
    )
    expected = _top_by_sorting(m, k)
    got = keep_top_neighbours(m, k)
    assert got.dtype == np.float32 and got.has_sorted_indices
    # the flag is true because it is so: indices strictly increase along each row
    assert all(
        (np.diff(got.indices[got.indptr[r] : got.indptr[r + 1]]) > 0).all() for r in range(5)
    )
    found = {
        (r, int(c)): float(v)
        for r in range(5)
        for c, v in zip(
            got.indices[got.indptr[r] : got.indptr[r + 1]],
            got.data[got.indptr[r] : got.indptr[r + 1]],
            strict=True,
        )
    }
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert np.isnan(found[key]) if np.isnan(value) else found[key] == np.float32(value)


def test_conditional_is_not_symmetric() -> None:
    m = as_matrix([{0, 1}, {0}, {0}, {0, 2}])
    s = cooccurrence_matrix(m, "conditional").toarray()
    assert s[1, 0] == 1.0  # everyone who bought 1 bought 0
    assert s[0, 1] == 0.25


def test_unknown_normalisation_is_named() -> None:
    with pytest.raises(ConfigError, match="'pmi'"):
        cooccurrence_matrix(as_matrix([{0, 1}]), "pmi")


def test_asymmetric_cosine_weighs_down_the_popular_neighbour() -> None:
    # 1 is in 2 baskets, 2 in 4; each is with 0 in 2 of them: P(1 | 0) = P(2 | 0) = 0.5
    m = as_matrix([{0, 1}, {0, 1}, {0, 2}, {0, 2}, {2}, {2}, {3}])
    s = cooccurrence_matrix(m, "asymmetric", alpha=0.75).toarray()
    assert s[0, 1] == pytest.approx(2 / (4**0.75 * 2**0.25))
    assert s[0, 2] == pytest.approx(2 / (4**0.75 * 4**0.25))
    assert s[0, 1] > s[0, 2]
    conditional = cooccurrence_matrix(m, "conditional")
    assert conditional[0, 1] == conditional[0, 2]


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_an_alpha_outside_zero_to_one_is_named(alpha: float, tiny_data: TrainingData) -> None:
    with pytest.raises(ConfigError, match=f"alpha: {alpha}"):
        cooccurrence_matrix(as_matrix([{0, 1}]), "asymmetric", alpha=alpha)
    with pytest.raises(ConfigError, match="alpha"):
        CooccurrenceModel(normalisation="asymmetric", alpha=alpha).fit(tiny_data)


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


@settings(max_examples=60, deadline=None)
@given(
    baskets=baskets_strategy,
    targets=st.lists(st.integers(-1, 9), min_size=N_ITEMS, max_size=N_ITEMS),
    ordered=st.booleans(),
)
def test_carried_counts_are_renumbered_like_pairs(
    baskets: list[set[int]], targets: list[int], ordered: bool
) -> None:
    """The warm start's renumbering of yesterday's counts equals moving each pair (i, j) to
    (new i, new j), whether the new numbering keeps the items' order (the fast way) or not."""
    from recsys.models.cooccurrence import _renumbered

    counts = cooccurrence_counts(as_matrix(baskets))
    # a mapping onto 10 items, one-to-one among those kept; sorted when ``ordered``
    kept = sorted(set(t for t in targets if t >= 0))
    seen: set[int] = set()
    old_to_new = np.array(
        [t if t >= 0 and not (t in seen or seen.add(t)) else -1 for t in targets], dtype=np.intp
    )
    if ordered:
        old_to_new[old_to_new >= 0] = kept[: int((old_to_new >= 0).sum())]
    got = _renumbered(counts, old_to_new, 10).toarray()
    expected = np.zeros((10, 10), dtype=np.int64)
    dense = counts.toarray()
    for i, j in zip(*np.nonzero(dense), strict=True):
        if old_to_new[i] >= 0 and old_to_new[j] >= 0:
            expected[old_to_new[i], old_to_new[j]] = dense[i, j]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64
