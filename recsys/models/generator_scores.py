"""The hybrid's ALS and EASE candidate scores, computed by blocks of users.

:class:`~recsys.models.features.GeneratorState` scores a batch of users against the whole
catalogue on its dense path, and block by block on its sparse path (above
:data:`~recsys.models.features.SPARSE_ABOVE_ITEMS` items), where no users × items array is
kept. Both paths cut the batch into the same blocks (:func:`als_blocks`), so their scores
agree to the last bit; from an approximate index (:func:`als_block_top`) a live request
touches no catalogue-long array at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.models.top_entries import top_entries_chunked

if TYPE_CHECKING:
    from recsys.retrieval.index import ItemIndex

#: Bytes of float32 ALS scores one matrix product may produce. Both paths cut the batch into
#: the same blocks of users: BLAS gives a row's dot products different last bits depending on
#: the shape of the product, so the sparse path only reproduces the dense path's scores and
#: ranks exactly because they share the blocks. 256 MiB is one block for every hybrid batch
#: (1,024 users) up to 65,536 items, so the dense path's product is unchanged by the split.
ALS_BLOCK_BYTES = 256 << 20

#: A block of users' EASE scores (``basis @ B``) is one dense BLAS product when the block has
#: at least this many rows and :data:`EASE_DENSE_MIN_DENSITY` of its entries stored; otherwise
#: scipy's sparse-times-dense product. scipy's product is one thread with a floor of writing
#: the output, and reads a row of ``B`` per stored entry; BLAS reads ``B`` once per block.
#: Measured on 1,024 Online Retail customers (3,921 items, 2 cores, benchmarks/RESULTS.md):
#: 0.10 s dense against 0.18 s sparse at 60 entries a row, 0.10 against 0.13 at 6; one live
#: customer's row stays sparse (a dense one would read all of ``B`` for a few entries).
EASE_DENSE_MIN_ROWS = 256
#: See :data:`EASE_DENSE_MIN_ROWS`. Not measured on other machines: the estimate is that one
#: with a quarter of this one's BLAS speed still breaks even around this density.
EASE_DENSE_MIN_DENSITY = 1 / 128


@dataclass
class AlsBlock:
    """One block of users' ALS top lists (local rows) and their scores for every item: a
    dense ``scores`` block, or (from an index) the block's vectors to score pairs with."""

    rows: NDArray[np.intp]
    items: NDArray[np.intp]
    ranks: NDArray[np.int32]
    scores: NDArray[np.float32] | None
    user_vecs: NDArray[np.float32] | None = None
    item_factors: NDArray[np.float32] | None = None

    def at(self, local: NDArray[np.intp], items: NDArray[np.intp]) -> NDArray[np.float32]:
        """The ALS score of each ``(local row, item)`` pair."""
        if self.scores is not None:
            return self.scores[local, items]
        assert self.user_vecs is not None and self.item_factors is not None
        return np.einsum(
            "ij,ij->i", self.user_vecs[local], self.item_factors[items], dtype=np.float32
        )


def als_blocks(n: int, m: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` blocks of users whose ALS scores are computed in one product."""
    size = max(1, ALS_BLOCK_BYTES // (4 * max(m, 1)))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def als_scores(uf: NDArray[np.float32], item_factors: NDArray[np.float32]) -> NDArray[np.float32]:
    """All users × items ALS scores, one product per block of :func:`als_blocks`."""
    blocks = als_blocks(len(uf), len(item_factors))
    if len(blocks) <= 1:
        return np.asarray(uf @ item_factors.T, dtype=np.float32)
    out = np.empty((len(uf), len(item_factors)), dtype=np.float32)
    for start, stop in blocks:
        out[start:stop] = uf[start:stop] @ item_factors.T
    return out


def als_block_top(
    user_vecs: NDArray[np.float32],
    item_factors: NDArray[np.float32],
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
    index: ItemIndex | None = None,
    keys: NDArray[np.intp] | None = None,
) -> AlsBlock:
    """ALS top ``k`` of one block of users: exact, by brute force over every item, or from
    an approximate ``index`` over ``item_factors``.

    Brute force keeps the sparse path equal to the dense one bit for bit at
    ``len(user_vecs) × n_items`` float32 a block. From an index, each active user's list is
    its search (equal scores in the index's order, not ``tie_rank``'s) and the other
    generators' candidates get their ALS score from per-pair dot products, which differ from
    a matrix product in the last bits: a live request then touches no catalogue-long array.
    ``keys`` (per row: the user whose stored vector it is, or -1) lets the index answer
    from the answers it kept (:meth:`~recsys.retrieval.index.ItemIndex.keep_answers`).
    """
    if index is not None:
        act = np.flatnonzero(active)
        found, _ = index.search(
            user_vecs[act], min(k, len(item_factors)), None if keys is None else keys[act]
        )
        r, rank = np.nonzero(found >= 0)
        return AlsBlock(
            rows=act[r].astype(np.intp),
            items=found[r, rank].astype(np.intp),
            ranks=rank.astype(np.int32),
            scores=None,
            user_vecs=user_vecs,
            item_factors=item_factors,
        )
    scores = np.asarray(user_vecs @ item_factors.T, dtype=np.float32)
    rows, items, ranks = top_entries_chunked(scores, k, active, tie_rank)
    return AlsBlock(rows=rows, items=items, ranks=ranks, scores=scores)


def ease_scores(block: sp.csr_matrix, ease: NDArray[np.float32]) -> NDArray[np.float32]:
    """``block @ ease`` for one block of users (:data:`EASE_DENSE_MIN_ROWS`)."""
    n, m = block.shape
    if n >= EASE_DENSE_MIN_ROWS and block.nnz >= EASE_DENSE_MIN_DENSITY * n * m:
        return np.asarray(block.toarray() @ ease, dtype=np.float32)
    return np.asarray(block @ ease, dtype=np.float32)


def ease_scores_blocks(
    basis: sp.csr_matrix, ease: NDArray[np.float32], n_items: int
) -> NDArray[np.float32]:
    """All users × EASE columns scores by the blocks of :func:`als_blocks` over ``n_items``
    (the catalogue's, which EASE may cover a part of): the sparse path scores the same
    blocks, so both give every row the same last bits (see :data:`ALS_BLOCK_BYTES`)."""
    blocks = als_blocks(basis.shape[0], n_items)
    if len(blocks) <= 1:
        return ease_scores(basis, ease)
    out = np.empty((basis.shape[0], ease.shape[1]), dtype=np.float32)
    for start, stop in blocks:
        out[start:stop] = ease_scores(basis[start:stop], ease)
    return out
