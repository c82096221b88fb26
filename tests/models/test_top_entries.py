"""The top entries of each row (:mod:`recsys.models.top_entries`): the law of a list (finite
scores by descending value, equal ones by the tie rank, cut at ``k``), and a sparse row ranked
as the same row made dense."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models import top_entries
from recsys.models.top_entries import rank_top, rank_top_sparse


def sparse_ranks(
    scores: sp.csr_matrix, k: int, active: np.ndarray, tie_rank: np.ndarray | None = None
) -> np.ndarray:
    """:func:`rank_top_sparse`'s entries as the users × items ranks :func:`rank_top` gives."""
    rows, items, ranks = rank_top_sparse(scores, k, active, tie_rank)
    out = np.full(scores.shape, k, dtype=np.int32)
    out[rows, items] = ranks
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    m=st.integers(1, 60),
    k=st.integers(0, 70),
    density=st.floats(0.0, 1.0),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_sparse_ranking_equals_dense_ranking_with_ties(
    n: int, m: int, k: int, density: float, levels: int, seed: int
) -> None:
    """Few distinct values: ties everywhere, at the cut and inside the list."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, levels + 1, size=(n, m)).astype(np.float32) / levels
    dense[rng.random((n, m)) > density] = 0.0
    active = rng.random(n) < 0.8
    expected = rank_top(np.where(dense > 0, dense, -np.inf), k, active[:, None])
    # float32 rows take one sort of a packed key, other dtypes a lexsort: the same ranking
    for dtype in (np.float32, np.float64):
        rows, items, _ = rank_top_sparse(sp.csr_matrix(dense, dtype=dtype), k, active)
        assert np.array_equal(sparse_ranks(sp.csr_matrix(dense, dtype=dtype), k, active), expected)
        assert len(set(zip(rows.tolist(), items.tolist(), strict=True))) == len(rows)


@pytest.mark.parametrize("levels", [1, 3, 1000])
def test_long_rows_ranked_from_their_heads_equal_the_dense_ranking(levels: int) -> None:
    # rows far longer than the list: only each row's head is argsorted (ties everywhere with
    # few levels, rarely with many)
    rng = np.random.default_rng(levels)
    n, m, k = 30, 400, 5
    dense = rng.integers(1, levels + 1, size=(n, m)).astype(np.float32) / levels
    dense[rng.random((n, m)) > 0.7] = 0.0
    scores = sp.csr_matrix(dense)
    assert scores.nnz > 2 * n * (k + 1)
    active = rng.random(n) < 0.9
    expected = rank_top(np.where(dense > 0, dense, -np.inf), k, active[:, None])
    assert np.array_equal(sparse_ranks(scores, k, active), expected)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 8),
    m=st.integers(1, 40),
    k=st.integers(0, 45),
    levels=st.integers(1, 5),
    holes=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_entries_rank_by_score_then_the_tie_rank(
    n: int, m: int, k: int, levels: int, holes: float, seed: int
) -> None:
    """The law: a row's list is its finite scores by descending value, equal values by the
    tie rank (the item index without one), cut at ``k``; inactive rows list nothing; the
    sparse ranking of the positive scores is the same list."""
    rng = np.random.default_rng(seed)
    tie_rank = None if seed % 3 == 0 else rng.permutation(m).astype(np.intp)
    place = np.arange(m) if tie_rank is None else tie_rank
    scores = (rng.integers(0, levels + 1, size=(n, m)) / levels).astype(np.float32)
    scores[rng.random((n, m)) < holes / 2] = np.nan
    scores[rng.random((n, m)) < holes / 2] = -np.inf
    active = rng.random(n) < 0.8
    rows, items, ranks = top_entries.top_entries(scores, k, active, tie_rank)
    got = sorted(zip(rows.tolist(), ranks.tolist(), items.tolist(), strict=True))
    expected = []
    for r in range(n):
        if not active[r]:
            continue
        finite = [j for j in range(m) if np.isfinite(scores[r, j])]
        ranked = sorted(finite, key=lambda j: (-float(scores[r, j]), place[j]))[:k]
        expected += [(r, rank, j) for rank, j in enumerate(ranked)]
    assert got == expected
    positive = np.where(np.isfinite(scores) & (scores > 0), scores, 0.0).astype(np.float32)
    dense = rank_top(np.where(positive > 0, positive, -np.inf), k, active[:, None], tie_rank)
    assert np.array_equal(sparse_ranks(sp.csr_matrix(positive), k, active, tie_rank), dense)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 6),
    per_item=st.integers(100, 150),
    k=st.integers(1, 6),
    levels=st.integers(1, 6),
    holes=st.floats(0.0, 1.0),
    signed=st.booleans(),
    wide=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sampled_top_entries_keep_the_law(
    n: int, per_item: int, k: int, levels: int, holes: float, signed: bool, wide: bool, seed: int
) -> None:
    """Where :func:`top_entries.top_entries` bounds rows by a sample (catalogues of ``~100 k``
    items and more), its lists are still the law's: finite scores by descending value,
    equal ones (``-0.0`` and ``0.0`` among them) by the tie rank, cut at ``k``; and exactly
    what partitioning every row gives."""
    m = per_item * k
    rng = np.random.default_rng(seed)
    tie_rank = None if seed % 3 == 0 else rng.permutation(m).astype(np.intp)
    place = np.arange(m) if tie_rank is None else tie_rank
    low = -levels if signed else 0
    scores = (rng.integers(low, levels + 1, size=(n, m)) / levels).astype(
        np.float64 if wide else np.float32
    )
    scores[(scores == 0) & (rng.random((n, m)) < 0.5)] = -0.0
    scores[rng.random((n, m)) < holes / 2] = np.nan
    scores[rng.random((n, m)) < holes / 4] = -np.inf
    scores[rng.random((n, m)) < holes / 4] = np.inf
    active = rng.random(n) < 0.8
    assert top_entries._top_sample_stride(m, k) >= top_entries.TOP_SAMPLE_MIN_STRIDE
    rows, items, ranks = top_entries.top_entries(scores, k, active, tie_rank)
    got = sorted(zip(rows.tolist(), ranks.tolist(), items.tolist(), strict=True))
    expected = []
    for r in range(n):
        if not active[r]:
            continue
        finite = [j for j in range(m) if np.isfinite(scores[r, j])]
        ranked = sorted(finite, key=lambda j: (-float(scores[r, j]), place[j]))[:k]
        expected += [(r, rank, j) for rank, j in enumerate(ranked)]
    assert got == expected
    full = top_entries._top_entries_full(scores, k, active, tie_rank)
    for a, b in zip((rows, items, ranks), full, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
