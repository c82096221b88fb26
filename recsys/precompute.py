"""A version's stored lists: the default model's top items of the recently active customers,
written by the publish stage (:mod:`training.publish`) so that the engine answers most requests
without scoring (:class:`recsys.artifacts.Precomputed` is their format; the engine reads them
in :meth:`recsys.engine.Engine.recommend`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.artifacts import Precomputed
from recsys.concurrency import Behind
from recsys.data.vocab import Vocabulary
from recsys.errors import ConfigError
from recsys.explain import reason_codes
from recsys.models.base import Explains, ExplainsArrays, Recommender, candidate_depth
from recsys.retrieval.index import FactorModel, ItemIndex

#: Items stored per user: the longest list a model that explains is asked for at k <= 20
#: (:func:`~recsys.models.base.candidate_depth`).
PRECOMPUTED_DEPTH = candidate_depth(20, 10**9)


#: Customers per model call of :func:`precompute`: a dense model holds ``batch × n_items``
#: float32 scores at a time.
PRECOMPUTE_BATCH = 256
#: The same for a model that lists from its candidate pairs, holding no items-long row (the
#: hybrid: about 150 pairs a customer). Its batches are split among a training run's threads
#: (:func:`recsys.models.hybrid.prediction_threads`), which a batch of 256 (one chunk of
#: pairs) could not be: Online Retail's 4,322 lists took 5.1-5.4 s in batches of 1,024 against
#: 6.8-6.9 s in batches of 256 on 2 threads, the same lists (benchmarks/RESULTS.md,
#: twenty-second session).
PRECOMPUTE_PAIRS_BATCH = 1024


def precompute(
    model: Recommender,
    model_name: str,
    history: sp.csr_matrix,
    items: Vocabulary,
    *,
    depth: int = PRECOMPUTED_DEPTH,
    batch: int | None = None,
    index: ItemIndex | None = None,
    users: NDArray[np.integer] | None = None,
    threads: int = 1,
) -> Precomputed:
    """Every user's top ``depth`` items from ``model`` (with reasons when it explains).

    Parameters
    ----------
    model, model_name
        The fitted default model and its name in the version.
    history
        ``users × items`` training history (the rows the engine serves from).
    items
        The item vocabulary (reason flags name item ids, never indices).
    depth, batch
        List length per user; users scored per model call (bounds memory:
        ``batch × n_items`` float32 scores at a time). By default
        :data:`PRECOMPUTE_BATCH`, or :data:`PRECOMPUTE_PAIRS_BATCH` for a model that lists
        from its candidate pairs (:class:`~recsys.models.base.ExplainsArrays`).
    index
        The version's approximate index of a factor model: the lists then come from it, as
        the engine serves that model, without scoring every item.
    users
        Only these users' lists (indices; the training pipeline passes the recently active
        customers); every other row is left empty (``-1``), and the engine scores those
        customers live, as it does customers with events newer than the version. ``None``:
        every user.
    threads
        From 2, a model that lists from its candidate pairs has each batch's lists stored
        (their reasons coded, :func:`_store_explained`) on a thread of their own while it
        ranks the next batch: the storing is one thread's work (a third of Ta-Feng's
        stored lists), the ranking runs on the training run's threads. The lists are the
        same, codes included: batches are stored one at a time, in order.

    Raises
    ------
    ConfigError
        A user index is outside ``history``.
    """
    history = sp.csr_matrix(history, dtype=np.float32)
    n_users, n_items = history.shape
    if users is None:
        todo = np.arange(n_users, dtype=np.intp)
    else:
        todo = np.unique(np.asarray(users, dtype=np.intp))
        if todo.size and (todo[0] < 0 or todo[-1] >= n_users):
            bad = int(todo[0] if todo[0] < 0 else todo[-1])
            raise ConfigError(f"precompute: user index {bad} is outside the {n_users} users")
    depth = max(1, min(depth, n_items))
    if batch is None:
        batch = PRECOMPUTE_PAIRS_BATCH if isinstance(model, ExplainsArrays) else PRECOMPUTE_BATCH
    out_items = np.full((n_users, depth), -1, dtype=np.int32)
    out_scores = np.full((n_users, depth), np.nan, dtype=np.float32)
    explains = isinstance(model, Explains)
    codes = np.full((n_users, depth), 0, dtype=np.int32) if explains else None
    vocab: dict[tuple[str, ...], int] = {}
    codes_of: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
    by_key: dict[int, int] = {}  # _store_explained's reason keys -> codes
    arrays = isinstance(model, ExplainsArrays) and codes is not None
    with Behind(threads >= 2 and arrays, name="recsys-store") as behind:
        for start in range(0, todo.size, batch):
            chunk = todo[start : start + batch]
            rows = history[chunk]
            if isinstance(model, ExplainsArrays) and codes is not None:
                behind.run(
                    _store_explained,
                    model.explain_arrays(chunk, rows, depth, now=None),
                    chunk,
                    depth,
                    (out_items, out_scores, codes),
                    lambda e: reason_codes(model_name, e, items),
                    (codes_of, vocab, by_key),
                )
                continue
            if isinstance(model, Explains) and codes is not None:
                for r, explained in enumerate(model.explain(chunk, rows, depth, now=None)):
                    u = int(chunk[r])
                    for j, e in enumerate(explained[:depth]):
                        # few distinct (sources, flags) pairs recur across millions of items: build
                        # each one's reason strings once
                        key = (tuple(e.sources), tuple(e.reasons))
                        code = codes_of.get(key)
                        if code is None:
                            why = reason_codes(model_name, e, items)
                            code = codes_of[key] = vocab.setdefault(why, len(vocab))
                        out_items[u, j] = e.item
                        out_scores[u, j] = e.score
                        codes[u, j] = code
                continue
            top: NDArray[np.signedinteger[Any]]
            if index is not None and isinstance(model, FactorModel):
                top, vals = index.search(model.user_vectors(chunk, rows), depth)
            else:
                # the model's own top-k: popular, buy-again and factor models rank without a
                # users x items row (equal to top_k of their scores)
                top, vals = model.recommend(chunk, rows, depth)
            top[~np.isfinite(vals)] = -1
            out_items[chunk] = top
            out_scores[chunk] = np.where(top >= 0, vals, np.nan)
    return Precomputed(model_name, out_items, out_scores, codes, tuple(vocab))


def _store_explained(
    lists: Any,
    chunk: NDArray[np.intp],
    depth: int,
    out: tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int32]],
    why: Callable[[Any], tuple[str, ...]],
    seen: tuple[
        dict[tuple[tuple[str, ...], tuple[str, ...]], int],
        dict[tuple[str, ...], int],
        dict[int, int],
    ],
) -> None:
    """:func:`precompute`'s rows of ``chunk`` from a model's explained lists as arrays
    (:class:`~recsys.models.base.ExplainsArrays`): the codes and the reason vocabulary come
    out as the per-item loop over :meth:`~recsys.models.base.Explains.explain` gives them.

    Each distinct (sources, flags, partner) of the chunk is coded once, in the order of its
    first entry (users in order, each list in rank order), as the loop meets it: the loop
    built and read one object per item (24,701 Ta-Feng customers, 2.4 M items).
    """
    out_items, out_scores, codes = out
    codes_of, vocab, by_key = seen
    rows = np.asarray(lists.rows, dtype=np.intp)
    if len(rows) == 0:
        return
    # each entry's place in its row's list (the entries come row by row, in rank order)
    counts = np.bincount(rows, minlength=len(chunk))
    place = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = np.flatnonzero(place < depth)
    rows, place = rows[keep], place[keep]
    partner = np.asarray(lists.often_bought_with, dtype=np.int64)[keep]
    # one integer per distinct reason (sources: 8 bits, two flags, the partner or -1)
    key = (partner + 1) << 10
    key |= np.asarray(lists.sources, dtype=np.int64)[keep] << 2
    key |= np.asarray(lists.bought_before, dtype=np.int64)[keep] << 1
    key |= np.asarray(lists.due_for_repurchase, dtype=np.int64)[keep]
    distinct, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    code_of = np.empty(len(first), dtype=np.int32)
    for q in np.argsort(first, kind="stable").tolist():
        # a key met in an earlier batch has its code: no reason object built again (a
        # key holds everything the reason is made of)
        code = by_key.get(int(distinct[q]))
        if code is None:
            e = lists.reason(int(keep[first[q]]))
            k = (tuple(e.sources), tuple(e.reasons))
            code = codes_of.get(k)
            if code is None:
                code = codes_of[k] = vocab.setdefault(why(e), len(vocab))
            by_key[int(distinct[q])] = code
        code_of[q] = code
    users = chunk[rows]
    out_items[users, place] = np.asarray(lists.items)[keep]
    out_scores[users, place] = np.asarray(lists.scores)[keep]
    codes[users, place] = code_of[inverse.reshape(-1)]
