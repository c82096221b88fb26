"""The exact head of a graph index: the items of largest norm, scored by brute force.

An inner-product graph misses some of the items with the largest norms, and those are where
ALS top lists concentrate (popular items). :attr:`~recsys.retrieval.ann.AnnConfig.exact_head`
scores the ``exact_head`` largest-norm items by brute force on every search and merges them
with the graph's candidates: a few hundred microseconds per query that the graph alone cannot
buy at any ``ef_search`` (at 10^6 items faiss's recall@10 stops near 0.95). Both graph
backends (usearch and faiss HNSW) merge through :class:`NormHead`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.models.base import NO_ITEM

#: cells (rows × head × graph candidates) compared at once when merging the head
MERGE_CHUNK_CELLS = 1 << 20


class NormHead:
    """The ``size`` items of largest norm, scored by brute force and merged with a graph's
    candidates (:attr:`~recsys.retrieval.ann.AnnConfig.exact_head`).

    Parameters
    ----------
    vectors
        All ``n_items × dim`` item vectors (read once, for the norms).
    size
        Head size, ``1 <= size``; capped at ``n_items``.
    """

    def __init__(self, vectors: NDArray[np.float32], size: int) -> None:
        import faiss

        n, dim = vectors.shape
        size = min(size, n)
        norms = np.einsum("ij,ij->i", vectors, vectors)
        top = np.argpartition(-norms, size - 1)[:size] if size < n else np.arange(size)
        self.items: NDArray[np.int64] = np.sort(top).astype(np.int64)
        # faiss's own brute force: no BLAS thread juggling per call, which costs more than
        # scoring a head of a few thousand items for one query
        self.flat: Any = faiss.IndexFlatIP(dim)
        self.flat.add(np.ascontiguousarray(vectors[self.items], dtype=np.float32))

    @property
    def size(self) -> int:
        """Items in the head."""
        return int(self.items.size)

    def merge(
        self,
        queries: NDArray[np.float32],
        k: int,
        idx: NDArray[np.int64],
        scores: NDArray[np.float32],
        *,
        threads: int,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The best ``k`` of a graph's candidates (``idx``, ``scores``, each item at most
        once per row, as HNSW searches give them) and the head's top ``k``, each item once:
        a head item the graph also found keeps the graph's entry. Best first; equal scores
        in the graph's order, then the head's."""
        import faiss

        take = min(k, self.size)
        faiss.omp_set_num_threads(threads)
        head_scores, local = self.flat.search(queries, take)
        head_idx = np.where(local >= 0, self.items[np.maximum(local, 0)], NO_ITEM)
        # the head's items the graph found too, compared pairwise (a few thousand cells a
        # row: less than sorting each row, and a few numpy calls for a request's one row)
        dup = np.empty(head_idx.shape, dtype=bool)
        step = max(1, MERGE_CHUNK_CELLS // max(1, take * idx.shape[1]))
        for r in range(0, len(dup), step):
            dup[r : r + step] = (head_idx[r : r + step, :, None] == idx[r : r + step, None, :]).any(
                axis=2
            )
        cand = np.concatenate([idx, head_idx], axis=1)
        vals = np.concatenate([scores, np.where(dup, -np.inf, head_scores)], axis=1)
        vals[cand < 0] = -np.inf
        best = np.argsort(-vals, axis=1, kind="stable")[:, :k]
        out_idx = np.take_along_axis(cand, best, axis=1)
        out_val = np.take_along_axis(vals, best, axis=1).astype(np.float32, copy=False)
        out_idx[~np.isfinite(out_val)] = NO_ITEM
        return out_idx, out_val


__all__ = ["MERGE_CHUNK_CELLS", "NormHead"]
