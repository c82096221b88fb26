"""The exact index against brute force (recsys.retrieval.exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.retrieval import (
    ExactIndex,
)
from tests.retrieval.helpers import brute_force, clustered


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(1, 60),
    dim=st.integers(1, 8),
    n_queries=st.integers(1, 5),
    k=st.integers(0, 70),
    seed=st.integers(0, 2**31),
)
def test_exact_index_equals_brute_force(
    n_items: int, dim: int, n_queries: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    idx, vals = ExactIndex(items).search(queries, k)
    take = min(k, n_items)
    want_idx, want_vals = brute_force(items, queries, take)
    assert idx.shape == vals.shape == (n_queries, k)
    np.testing.assert_allclose(vals[:, :take], want_vals, rtol=1e-4, atol=1e-4)
    # indices agree wherever the score is not tied with a neighbour (float ties may swap)
    if take:
        assert (idx[:, :take] == want_idx).mean() > 0.95
    assert (idx[:, take:] == -1).all() and np.isneginf(vals[:, take:]).all()


def test_exact_index_blocks_large_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.retrieval import exact

    items, queries = clustered(500, 8, 30, seed=1)
    whole = ExactIndex(items).search(queries, 5)
    monkeypatch.setattr(exact, "_EXACT_BLOCK_CELLS", 1000)  # 2 queries per block
    blocked = ExactIndex(items).search(queries, 5)
    np.testing.assert_array_equal(whole[0], blocked[0])
    # a matrix product of 2 rows may round differently from one of 30 (last bit)
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-6)
