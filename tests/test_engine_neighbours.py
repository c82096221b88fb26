"""Neighbour sums ("often viewed with", baskets, sessions): the candidates equal the dense sum."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from recsys.engine import neighbour_candidates, neighbour_scores
from recsys.models.base import ItemSimilarity


class _Lists(ItemSimilarity):
    """Neighbour lists from a fixed similarity matrix (the protocol, not a model)."""

    def __init__(self, sim: NDArray[np.float32]) -> None:
        self.sim = sim

    def similar_items(
        self, items: NDArray[np.intp], k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        idx = np.full((len(items), k), -1, dtype=np.intp)
        vals = np.full((len(items), k), -np.inf, dtype=np.float32)
        for r, i in enumerate(items.tolist()):
            row = self.sim[i].copy()
            row[i] = np.nan
            order = [j for j in np.argsort(-np.nan_to_num(row, nan=-np.inf)) if row[j] > 0][:k]
            idx[r, : len(order)] = order
            vals[r, : len(order)] = row[order]
        return idx, vals


def _dense_reference(
    model: ItemSimilarity, items: NDArray[np.intp], n: int, fetch: int, w: NDArray[np.float32]
) -> NDArray[np.float32]:
    """The accumulation the engine did before: a catalogue-long float32 vector."""
    idx, vals = model.similar_items(items, fetch)
    scores = np.full(n, np.nan, dtype=np.float32)
    for r in range(idx.shape[0]):
        ok = idx[r] >= 0
        cur = scores[idx[r][ok]]
        scores[idx[r][ok]] = np.where(np.isnan(cur), 0, cur) + float(w[r]) * vals[r][ok]
    return scores


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    seed=st.integers(0, 10_000),
    n_items=st.integers(1, 6),
    fetch=st.integers(1, 12),
)
def test_candidates_equal_the_dense_sum(n: int, seed: int, n_items: int, fetch: int) -> None:
    rng = np.random.default_rng(seed)
    sim = rng.random((n, n)).astype(np.float32)
    sim[rng.random((n, n)) < 0.5] = 0
    model = _Lists(sim)
    items = rng.integers(0, n, size=n_items).astype(np.intp)  # repeats allowed, as in sessions
    weights = rng.random(n_items).astype(np.float32)
    want = _dense_reference(model, items, n, fetch, weights)
    cand = neighbour_candidates(model, items, fetch, weights)
    assert np.array_equal(np.flatnonzero(np.isfinite(want)), cand.index)
    assert np.array_equal(want[cand.index], cand.score)  # bit for bit
    got = neighbour_scores(model, items, n, fetch, weights)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
