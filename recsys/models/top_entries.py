"""The top ``k`` entries of each row of a score matrix, dense or sparse, ranked exactly.

Every list the hybrid's candidate generators propose is such a top: ALS and EASE scores per
customer (dense blocks), co-occurrence rows (sparse). A row's list depends on its own scores
only, equal scores in a given tie order (:func:`top_entries`), so a sparse row ranks as the
same row made dense would (:func:`rank_top_sparse`), and splitting rows into blocks changes
nothing (:func:`top_entries_chunked`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.models.kernels import descending_keys

#: Bytes of temporaries (scores, their negation, argpartition's int64 indices) one top-k pass
#: over dense rows may use; rows are ranked independently, so splitting them changes nothing.
TOP_K_BYTES = 64 << 20


def top_entries(
    scores: NDArray[np.floating],
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """Row, item and rank (0 = best) of the top ``k`` finite scores of each active row.

    Equal scores rank by ``tie_rank`` (a permutation of the items, 0 first; ``None``: the
    item index), in the list and at its cut: a row's list depends on its own scores only, so
    :func:`rank_top_sparse` ranks a sparse row the same without making it dense.

    Parameters
    ----------
    scores
        Dense ``rows × items`` scores; NaN and infinities are never listed.
    k
        List length (at most the item count).
    active
        Rows that get a list (one flag a row).
    tie_rank
        Order of equal scores.

    Returns
    -------
    tuple of NDArray
        Rows, items and ranks of the listed entries, by row and then rank.
    """
    n, m = scores.shape
    k_eff = min(k, m)
    stride = _top_sample_stride(m, k_eff)
    if n == 0 or k_eff == 0 or stride < TOP_SAMPLE_MIN_STRIDE:
        return _top_entries_full(scores, k, active, tie_rank)
    act = np.flatnonzero(np.asarray(active).reshape(n))
    z = np.empty(0, np.intp)
    if len(act) == 0:
        return z, z, np.empty(0, np.int32)
    sub = scores if len(act) == n else scores[act]
    # The k-th largest score of every stride-th item bounds the row's k-th largest from below
    # (a subset's k-th largest is never larger): only the scores reaching it can be listed,
    # about k * stride of a row, and those are sorted exactly instead of partitioning it all.
    sample = sub[:, ::stride]
    sample = np.where(np.isfinite(sample), sample, -np.inf)
    cut = sample.shape[1] - k_eff
    bound = np.partition(sample, cut, axis=1)[:, cut]
    # rows whose sample has fewer than k finite scores have no bound
    bounded = np.isfinite(bound)
    parts: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]] = []
    if not bounded.all():
        rest = act[~bounded]
        r, i, rank = _top_entries_full(scores[rest], k, np.ones(len(rest), bool), tie_rank)
        parts.append((rest[r], i, rank))
    if bounded.any():
        b = np.flatnonzero(bounded)
        block = sub if len(b) == len(sub) else sub[b]
        r, i, rank = _top_above(block, bound[b], k_eff, tie_rank)
        parts.append((act[b][r], i, rank))
    if len(parts) == 1:
        return parts[0]
    rows, items, ranks = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.lexsort((ranks, rows))
    return rows[order], items[order], ranks[order]


#: :func:`top_entries` bounds a row's k-th largest score by its sample of every
#: ``stride``-th item when the stride is at least this; below, the sample saves too little
#: over partitioning the whole row.
TOP_SAMPLE_MIN_STRIDE = 2

#: Sample scores partitioned at the cost of sorting one survivor, for
#: :func:`_top_sample_stride` (fitted, not derived). Ta-Feng's ALS blocks (24 of up to
#: 117 × 23,812, k = 50) took 0.14-0.15 s at strides 4-5 (about ``sqrt(m / (25 k))``),
#: 0.21 s at 2-3, 0.18-0.19 s at 6, 0.26-0.53 s at 8-16, and 0.41 s partitioning every row
#: whole.
TOP_SAMPLE_SORT_COST = 25


def _top_sample_stride(m: int, k: int) -> int:
    """The sampling stride of :func:`top_entries`: the sample costs about ``m / stride`` a
    row to partition and leaves about ``k * stride`` scores to sort, each of those dearer
    (:data:`TOP_SAMPLE_SORT_COST`), so the balance is near ``sqrt(m / (cost * k))``."""
    return int(np.sqrt(m / (TOP_SAMPLE_SORT_COST * k))) if k > 0 else 0


def _top_above(
    scores: NDArray[np.floating],
    bound: NDArray[np.floating],
    k: int,
    tie_rank: NDArray[np.intp] | None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """:func:`top_entries` of rows with at least ``k`` finite scores reaching ``bound``
    (finite, one a row, at most the row's k-th largest finite score)."""
    n, m = scores.shape
    # by row, then item: the tie order of equal scores when there is no tie rank
    flat = np.flatnonzero(scores >= bound[:, None])
    rows, cols = np.divmod(flat, m)
    vals = scores.ravel()[flat]
    finite = vals != np.inf  # NaN and -inf never reach a finite bound
    return rank_entries(n, rows[finite], cols[finite], vals[finite], k, tie_rank)


def rank_entries(
    n: int,
    rows: NDArray[np.integer],
    cols: NDArray[np.integer],
    vals: NDArray[np.floating],
    k: int,
    tie_rank: NDArray[np.intp] | None,
    *,
    cut_long_rows: bool = False,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """Row, item and rank of the ``k`` best of scattered ``(row, item, value)`` entries of
    ``n`` rows: by value, equal values by ``tie_rank`` (``None``: the item index).

    ``cut_long_rows`` first drops what cannot reach a row's head when the entries are many
    (about ``2 k`` a row or more): the keys alone sort several times faster than their
    argsort (numpy's SIMD sort), so each row's k-th key is found that way and only the heads
    are ordered.
    """
    rows = np.asarray(rows, dtype=np.intp)
    cols = np.asarray(cols, dtype=np.intp)
    tie = cols if tie_rank is None else np.asarray(tie_rank, np.intp)[cols]
    desc = descending_keys(vals) if vals.dtype == np.float32 else None
    if desc is not None:
        # (row, value descending) packed in one int64
        key = (rows.astype(np.int64) << 32) | desc
        if cut_long_rows and len(key) > 2 * n * (k + 1):
            counts = np.bincount(rows, minlength=n)
            has = counts > 0
            last = np.cumsum(counts) - counts + np.minimum(counts, k) - 1
            cut = np.zeros(n, dtype=np.int64)
            cut[has] = np.sort(key)[last[has]]
            near = key <= cut[rows]
            rows, cols, key, tie = rows[near], cols[near], key[near], tie[near]
        order = np.argsort(key, kind="stable")
        if np.any(key[order[1:]] == key[order[:-1]]):  # equal values: the tie order decides
            order = np.lexsort((tie, key))
    else:
        order = np.lexsort((tie, -vals, rows))
    rows, cols = rows[order], cols[order]
    counts = np.bincount(rows, minlength=n)
    # each entry's place in its row: rows are in order now
    within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = within < k
    return (
        rows[keep].astype(np.intp, copy=False),
        cols[keep].astype(np.intp, copy=False),
        within[keep].astype(np.int32),
    )


def _top_entries_full(
    scores: NDArray[np.floating],
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """:func:`top_entries` by partitioning every row whole."""
    n, m = scores.shape
    k_eff = min(k, m)
    if k_eff == 0 or n == 0:
        z = np.empty(0, np.intp)
        return z, z, np.empty(0, np.int32)
    tie = np.arange(m, dtype=np.intp) if tie_rank is None else np.asarray(tie_rank, np.intp)
    s = np.where(np.isfinite(scores), scores, -np.inf)
    if k_eff < m:
        part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
        head = np.take_along_axis(s, part, axis=1)
        kth = head.min(axis=1, keepdims=True)  # each row's k-th largest score
        # introselect keeps an arbitrary subset of the items equal to the k-th score; where
        # it had to choose (more of them in the row than in the list), the first by tie
        # rank take the places (rows whose k-th score is -inf list none of them anyway)
        over = np.flatnonzero(
            ((s == kth).sum(axis=1) > (head == kth).sum(axis=1)) & np.isfinite(kth[:, 0])
        )
        if len(over):
            by_tie = np.argsort(tie)  # the items in tie order
            sub, cut = s[over][:, by_tie], kth[over]
            above, equal = sub > cut, sub == cut
            need = k_eff - above.sum(axis=1, keepdims=True)
            first = np.cumsum(equal, axis=1, dtype=np.int32) <= need
            chosen = np.nonzero(above | (equal & first))[1].reshape(len(over), k_eff)
            part[over] = by_tie[chosen]
        # in tie order before the stable sort by score
        part = np.take_along_axis(part, np.argsort(tie[part], axis=1), axis=1)
    else:
        part = np.tile(np.argsort(tie), (n, 1))
    vals = np.take_along_axis(s, part, axis=1)
    # stable: equal scores keep the tie order
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    r = np.broadcast_to(np.arange(k_eff, dtype=np.int32), part.shape)
    ok = np.isfinite(vals) & np.asarray(active).reshape(n, 1)
    rr = np.broadcast_to(np.arange(n)[:, None], part.shape)
    return rr[ok].astype(np.intp), part[ok].astype(np.intp), r[ok]


def top_entries_chunked(
    scores: NDArray[np.floating],
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """:func:`top_entries` a few rows at a time (its temporaries within :data:`TOP_K_BYTES`)."""
    n, m = scores.shape
    step = max(1, TOP_K_BYTES // (24 * max(m, 1)))
    # each list starts with an empty part: no rows concatenate to empty arrays of the dtype
    out_r, out_i, out_k = [np.empty(0, np.intp)], [np.empty(0, np.intp)], [np.empty(0, np.int32)]
    for start in range(0, n, step):
        r, i, rank = top_entries(
            scores[start : start + step], k, active[start : start + step], tie_rank
        )
        out_r.append(r + start)
        out_i.append(i)
        out_k.append(rank)
    return np.concatenate(out_r), np.concatenate(out_i), np.concatenate(out_k)


def rank_top(
    scores: NDArray[np.floating],
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
) -> NDArray[np.int32]:
    """Per row, the rank (0 = best) of the top ``k`` finite scores; ``k`` for every other item.

    Rows where ``active`` is false rank nothing (a user with no history gets no
    personalised candidates).
    """
    n, m = scores.shape
    ranks = np.full((n, m), k, dtype=np.int32)
    rows, items, r = top_entries(scores, k, active, tie_rank)
    ranks[rows, items] = r
    return ranks


def rank_top_sparse(
    scores: sp.csr_matrix,
    k: int,
    active: NDArray[np.bool_],
    tie_rank: NDArray[np.intp] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32]]:
    """:func:`top_entries` of ``where(scores > 0, scores, -inf)`` read from sparse rows.

    The ranking is the order of the positive values, equal ones by ``tie_rank``, whatever
    the row's other entries: no row is made dense.
    """
    n, m = scores.shape
    k_eff = min(k, m)
    z = np.empty(0, np.intp)
    if k_eff == 0 or n == 0 or scores.nnz == 0:
        return z, z, np.empty(0, np.int32)
    rows = np.repeat(np.arange(n, dtype=np.intp), np.diff(scores.indptr))
    pos = (scores.data > 0) & np.asarray(active)[rows]
    return rank_entries(
        n, rows[pos], scores.indices[pos], scores.data[pos], k_eff, tie_rank, cut_long_rows=True
    )
