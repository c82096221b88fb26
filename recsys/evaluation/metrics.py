"""Full-catalogue ranking metrics, vectorised over users.

Every metric here scores a top-``k`` list chosen from the *whole* catalogue against the items
the user really went on to buy; nothing is computed against sampled negatives, whose numbers
are known to mislead (Krichene & Rendle, "On sampled metrics for item recommendation", 2020).

Inputs are a top-``k`` index matrix (one row per user, best first, padded with ``-1`` where a
model had fewer than ``k`` items to offer, as :func:`recsys.models.base.top_k` returns it) and a
``users × items`` relevance CSR whose non-zeros are the relevant items. The relevance matrix
may have *more* columns than the model's catalogue: items first seen in the test period count
in the denominators although no model can ever hit them.

Definitions (``rel`` = relevant items of the user, ``hit@r`` = the item at rank ``r`` is relevant):

================  ============================================================================
precision@k       hits / k (padding counts as a miss, so a short list is penalised)
recall@k          hits / \\|rel\\| (plain recall)
capped recall@k   hits / min(k, \\|rel\\|): 1 for a list that is all hits even when the user
                  bought more than ``k`` items (the variant behind the reference numbers in
                  the shared data's README, which plain recall does *not* reproduce)
NDCG@k            DCG / IDCG with binary gains, DCG = Σ hit@r / log2(r + 1),
                  IDCG = Σ_{r ≤ min(k, |rel|)} 1 / log2(r + 1)
MAP@k             Σ_r hit@r · precision@r / min(k, \\|rel\\|)
hit rate@k        1 if any hit, else 0
MRR@k             1 / (rank of the first hit), 0 if none
================  ============================================================================

Users with no relevant item get ``NaN`` for every metric; :func:`mean_metrics` skips them.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.errors import DataError
from recsys.models.kernels import order_within_rows

#: Names of the per-user ranking metrics, in report order.
RANKING_METRICS: Final = ("precision", "recall", "capped_recall", "ndcg", "map", "hit_rate", "mrr")


def hit_matrix(topk: NDArray[np.integer], relevant: sp.csr_matrix) -> NDArray[np.bool_]:
    """Which positions of each top-``k`` list hold a relevant item.

    Parameters
    ----------
    topk
        ``n_users × k`` item indices, best first; ``-1`` pads a short list.
    relevant
        ``n_users × n_items`` sparse matrix; any stored non-zero marks a relevant item.

    Returns
    -------
    numpy.ndarray
        ``n_users × k`` boolean array.

    Raises
    ------
    DataError
        Shapes disagree, an index is out of range, or a list repeats an item.
    """
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise DataError(f"top-k matrix must be 2-D, got shape {topk.shape}")
    rel = sp.csr_matrix(relevant)
    n, k = topk.shape
    if rel.shape[0] != n:
        raise DataError(f"top-k matrix has {n} rows but the relevance matrix has {rel.shape[0]}")
    if topk.size and (topk.min() < -1 or topk.max() >= rel.shape[1]):
        bad = topk[(topk < -1) | (topk >= rel.shape[1])][0]
        raise DataError(f"item index {int(bad)} is outside the catalogue of {rel.shape[1]} items")
    rows, cols = np.nonzero(topk >= 0)
    items = topk[rows, cols]
    if items.size:
        # a repeated item would be counted twice and push precision above 1
        key = np.sort(rows.astype(np.int64) * rel.shape[1] + items)
        repeated = key[1:][np.diff(key) == 0]
        if repeated.size:
            user, item = divmod(int(repeated[0]), rel.shape[1])
            raise DataError(f"the top-k list of user row {user} repeats item {item}")
    rel.eliminate_zeros()
    rel.sum_duplicates()
    # rank j+1 stored as the value, so the element-wise product keeps the position of each hit
    recs = sp.csr_matrix((cols + 1.0, (rows, items)), shape=rel.shape)
    found = recs.multiply(rel != 0).tocoo()
    hits = np.zeros((n, k), dtype=bool)
    hits[found.row, found.data.astype(np.intp) - 1] = True
    return hits


def ranking_metrics(
    topk: NDArray[np.integer], relevant: sp.csr_matrix, k: int | None = None
) -> dict[str, NDArray[np.float64]]:
    """Per-user precision, recall, NDCG, MAP, hit rate and MRR at ``k``.

    Parameters
    ----------
    topk
        ``n_users × K`` item indices, best first, ``-1`` padded (``K >= k``).
    relevant
        ``n_users × n_items`` sparse relevance matrix (non-zero = relevant).
    k
        Cut-off; defaults to the number of columns of ``topk``.

    Returns
    -------
    dict of str to numpy.ndarray
        One ``float64`` array of length ``n_users`` per name in :data:`RANKING_METRICS`;
        ``NaN`` for users with no relevant item.
    """
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise DataError(f"top-k matrix must be 2-D, got shape {topk.shape}")
    if k is None:
        k = topk.shape[1]
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    if topk.shape[1] < k:
        raise DataError(f"top-k matrix of shape {topk.shape} has fewer than k={k} columns")
    hits = hit_matrix(topk[:, :k], relevant)
    stored = sp.csr_matrix(relevant, copy=True)
    stored.sum_duplicates()
    stored.eliminate_zeros()
    n_rel = np.diff(stored.indptr).astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    n_hits = hits.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        discount = 1.0 / np.log2(ranks + 1.0)
        ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k).astype(np.intp)]
        dcg = hits @ discount
        precision_at = np.cumsum(hits, axis=1) / ranks
        ap = (hits * precision_at).sum(axis=1) / np.minimum(n_rel, k)
        first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1.0, np.inf)
        out = {
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "capped_recall": n_hits / np.minimum(n_rel, k),
            "ndcg": dcg / ideal,
            "map": ap,
            "hit_rate": (n_hits > 0).astype(np.float64),
            "mrr": 1.0 / first,
        }
    empty = n_rel == 0
    for values in out.values():
        values[empty] = np.nan
    return out


def grouped_ndcg(
    group: NDArray[np.integer],
    score: NDArray[np.floating],
    relevant: NDArray[np.integer] | NDArray[np.bool_],
    k: int = 10,
) -> float:
    """Mean NDCG@``k`` of ranking each group's rows by ``score``, over groups with a relevant row.

    The mean of :func:`grouped_ndcg_each` (``NaN`` when no group has a relevant row).
    """
    each = grouped_ndcg_each(group, score, relevant, k)
    return float(each.mean()) if len(each) else float("nan")


def grouped_ndcg_each(
    group: NDArray[np.integer],
    score: NDArray[np.floating],
    relevant: NDArray[np.integer] | NDArray[np.bool_],
    k: int = 10,
) -> NDArray[np.float64]:
    """NDCG@``k`` of ranking each group's rows by ``score``, for each group with a relevant row.

    For candidate lists in long form (a row per (user, candidate) pair, as a re-ranker scores
    them): the group is the user, and the relevant rows are the candidates they went on to
    buy. The ideal DCG counts only the group's own relevant rows, so this measures the order
    of the candidates, not their recall. Equal scores keep the rows' order.

    Parameters
    ----------
    group
        Group of each row (any integers; rows of a group need not be adjacent).
    score
        Higher first.
    relevant
        Non-zero: a relevant row.
    k
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per group with a relevant row, in ascending order of the group labels.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    group = np.asarray(group)
    if len(group) == 0:
        return np.empty(0)
    order = order_within_rows(group, np.asarray(score, dtype=np.float64))
    g = group[order]
    rel = (np.asarray(relevant)[order] != 0).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    position = np.arange(len(g)) - np.repeat(starts, sizes)
    discount = np.where(position < k, 1.0 / np.log2(np.minimum(position, k) + 2.0), 0.0)
    gid = np.repeat(np.arange(len(starts)), sizes)
    dcg = np.bincount(gid, weights=rel * discount)
    n_rel = np.bincount(gid, weights=rel).astype(np.intp)
    ideal = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))][np.minimum(n_rel, k)]
    has = n_rel > 0
    return np.asarray(dcg[has] / ideal[has], dtype=np.float64)


def mean_metrics(per_user: dict[str, NDArray[np.float64]]) -> dict[str, float]:
    """Average each metric over the users that have relevant items (``NaN`` skipped).

    A metric with no scored user at all averages to ``NaN``.
    """
    out: dict[str, float] = {}
    for name, values in per_user.items():
        valid = values[~np.isnan(values)]
        out[name] = float(valid.mean()) if valid.size else float("nan")
    return out


def mean_ci(values: NDArray[np.floating], level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the mean of the non-``NaN`` per-user values (normal approximation).

    ``mean ± z · s / √n`` with the sample standard deviation ``s``: how far the mean over these
    customers may be from the mean over customers like them, which is what a seeded sample of
    a shop's customers (and the promotion gate reading it) has to allow for. Per-user metrics
    are bounded in [0, 1] and averaged over thousands of customers, where the normal
    approximation holds. ``(NaN, NaN)`` without a value; ``(mean, mean)`` with a single one.

    Raises
    ------
    DataError
        ``level`` is not strictly between 0 and 1.
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"confidence level must be between 0 and 1, got {level}")
    from scipy.stats import norm

    valid = np.asarray(values, dtype=np.float64)
    valid = valid[~np.isnan(valid)]
    if valid.size == 0:
        return float("nan"), float("nan")
    mean = float(valid.mean())
    if valid.size == 1:
        return mean, mean
    half = float(norm.ppf(0.5 + level / 2) * valid.std(ddof=1) / np.sqrt(valid.size))
    return mean - half, mean + half


def catalog_coverage(topk: NDArray[np.integer], n_items: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one list."""
    if n_items < 1:
        raise DataError(f"the catalogue must hold at least one item, got {n_items}")
    items = np.asarray(topk).ravel()
    return float(np.unique(items[items >= 0]).size / n_items)


def exposure(topk: NDArray[np.integer], n_items: int) -> NDArray[np.int64]:
    """How many lists each of the ``n_items`` items appears in."""
    items = np.asarray(topk).ravel()
    return np.bincount(items[items >= 0], minlength=n_items).astype(np.int64)


def novelty(topk: NDArray[np.integer], item_users: NDArray[np.integer], n_users: int) -> float:
    """Mean self-information (bits) of the recommended items w.r.t. training popularity.

    An item bought by ``c`` of ``n_users`` training customers carries
    ``-log2((c + 1) / (n_users + 1))`` bits: the add-one keeps items nobody bought finite.
    Higher means the lists reach further into the long tail. ``NaN`` when no list holds an item.

    Parameters
    ----------
    topk
        ``n_lists × k`` item indices, ``-1`` padded.
    item_users
        Per item index, the number of training users who interacted with it.
    n_users
        Number of training users.
    """
    items = np.asarray(topk).ravel()
    items = items[items >= 0]
    if items.size == 0:
        return float("nan")
    counts = np.asarray(item_users, dtype=np.float64)[items]
    return float(np.mean(-np.log2((counts + 1.0) / (n_users + 1.0))))


def gini(values: NDArray[np.number]) -> float:
    """Gini coefficient of non-negative values: 0 = spread evenly, towards 1 = concentrated.

    Applied to :func:`exposure` over the whole catalogue it measures how unequally a model
    shows items (items never shown count as zeros). ``0`` for an all-zero input.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size and x[0] < 0:
        raise DataError("Gini is defined for non-negative values only")
    total = x.sum()
    if x.size == 0 or total == 0:
        return 0.0
    n = x.size
    weights = 2.0 * np.arange(1, n + 1) - n - 1.0
    return float(weights @ x / (n * total))
