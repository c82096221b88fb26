"""Co-occurrence neighbour lists read from the stored rows equal a dense top-k."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.base import NO_ITEM, top_k
from recsys.models.cooccurrence import CooccurrenceModel


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 30),
    seed=st.integers(0, 10_000),
    k=st.integers(0, 35),
    n_asked=st.integers(0, 8),
)
def test_neighbours_are_the_dense_top_k(n: int, seed: int, k: int, n_asked: int) -> None:
    rng = np.random.default_rng(seed)
    dense = np.round(rng.random((n, n)), 1).astype(np.float32)  # ties on purpose
    dense[rng.random((n, n)) < 0.6] = 0
    np.fill_diagonal(dense, 0)
    model = CooccurrenceModel()
    model.similarity_ = sp.csr_matrix(dense)
    asked = rng.integers(-2, n + 2, size=n_asked).astype(np.intp)  # some out of range
    idx, vals = model.similar_items(asked, k)
    rows = np.full((n_asked, n), np.nan, dtype=np.float32)
    for r, i in enumerate(asked.tolist()):
        if 0 <= i < n:
            stored = model.similarity_[i]
            rows[r, stored.indices] = stored.data
    want_idx, want_vals = top_k(rows, k)
    assert idx.shape == want_idx.shape == (n_asked, min(k, n))
    assert np.array_equal(vals, want_vals)  # the same scores, best first
    for r in range(n_asked):
        got = idx[r][idx[r] != NO_ITEM]
        assert np.array_equal(np.sort(rows[r, got]), np.sort(want_vals[r][want_vals[r] > -np.inf]))
        # ties in the lower item index first
        for a, b in itertools.pairwise(got.tolist()):
            assert rows[r, a] > rows[r, b] or (rows[r, a] == rows[r, b] and a < b)
