"""What every item index answers, and the protocols of the models an index serves.

Every index answers :meth:`ItemIndex.search`: ``queries`` (``n × d`` float32) to ``k`` item
indices and scores per row, best first. Rows that cannot be answered (a query with ``NaN``,
the model's marker for a user it knows nothing about, or fewer than ``k`` items) are padded
with :data:`~recsys.models.base.NO_ITEM` and ``-inf``, as
:func:`recsys.models.base.top_k` pads. The base class also remembers recent single-query
answers (:meth:`ItemIndex.remember`) and reads answers kept at publish for known customers
(:class:`KeptAnswers`); each backend (:mod:`recsys.retrieval.exact`,
:mod:`recsys.retrieval.usearch_index`, :mod:`recsys.retrieval.faiss_index`) implements the
search itself and its file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.errors import ArtifactError, ModelError
from recsys.lru import LRU
from recsys.models.base import NO_ITEM, load_arrays, save_arrays

#: Single-query answers a served index remembers (:meth:`ItemIndex.remember`): 1 × k items
#: and scores each, about 1.2 kB at k = 100, so at most about 5 MB a worker.
RECENT_ANSWERS = 4096


@runtime_checkable
class FactorModel(Protocol):
    """A model whose score is ``user vector · item vector`` (ALS, BPR): what an index can serve."""

    item_factors_: NDArray[np.float32]

    def user_vectors(self, users: NDArray[np.intp], history: sp.csr_matrix) -> NDArray[np.float32]:
        """Query vectors of a batch of users (``NaN`` rows for users with nothing to go on)."""
        ...


@runtime_checkable
class SearchesIndex(Protocol):
    """A model that is not a factor model but searches item vectors of its own (the hybrid's
    ALS candidates): training builds an index over :meth:`index_vectors` as for a factor
    model, and the engine hands the loaded index to :meth:`use_index`."""

    def index_vectors(self) -> NDArray[np.float32] | None:
        """The vectors to index (``n_items × d``), or ``None`` for no index."""
        ...

    def use_index(self, index: ItemIndex | None) -> None:
        """Search ``index`` from now on."""
        ...

    def index_queries(self, users: NDArray[np.intp]) -> tuple[NDArray[np.float32], int]:
        """The vectors this model searches for known ``users`` on every request whatever
        their live events (their stored ones), and how many items it asks for: training
        keeps the index's answers to them (:meth:`ItemIndex.keep_answers`)."""
        ...


def indexed_vectors(model: object) -> NDArray[np.float32] | None:
    """The item vectors an index of ``model`` is built over: a factor model's factors, the
    vectors a :class:`SearchesIndex` model names; ``None`` for any other model (or when it
    names none)."""
    if isinstance(model, FactorModel):
        return model.item_factors_
    if isinstance(model, SearchesIndex):
        return model.index_vectors()
    return None


class KeptAnswers:
    """An index's answers to known customers' stored query vectors, searched once at publish.

    A model whose query for a known customer is their stored vector whatever they do next
    (the hybrid's ALS candidates: :meth:`SearchesIndex.index_queries`) asks the index the
    same question on every live request. Training asks it once for each customer it stores
    a list for (the recently active ones), in one multi-threaded batch that the stored lists
    then read instead of searching, and keeps the answers in the version: a customer's first
    live request reads them instead of searching (1.2 ms of a 4-5 ms live list at 10^6
    items), and every worker maps the same file.

    Parameters
    ----------
    keys
        Sorted unique customer indices.
    items, scores
        ``len(keys) × k``: each key's answer as :meth:`ItemIndex.search` gave it.
    """

    def __init__(
        self, keys: NDArray[np.integer], items: NDArray[np.integer], scores: NDArray[np.floating]
    ) -> None:
        keys = np.asarray(keys)
        if keys.ndim != 1 or items.shape != scores.shape or items.shape[:1] != keys.shape:
            raise ArtifactError(
                f"kept answers: {keys.shape} keys for {items.shape} items, {scores.shape} scores"
            )
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ArtifactError("kept answers: keys not sorted and unique")
        self.keys = keys
        self.items = items
        self.scores = scores

    @property
    def k(self) -> int:
        """Items per answer."""
        return int(self.items.shape[1]) if self.items.ndim == 2 else 0

    def find(self, keys: NDArray[np.integer]) -> NDArray[np.intp]:
        """Each key's row in the answers, ``-1`` where none was kept (negative keys too)."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.intp)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, at, -1).astype(np.intp)

    def save(self, path: Path) -> None:
        """Write ``.npz`` (no pickle); items as int32."""
        save_arrays(
            path,
            keys=self.keys.astype(np.int64),
            items=self.items.astype(np.int32),
            scores=self.scores.astype(np.float32),
        )

    @classmethod
    def load(cls, path: Path) -> KeptAnswers:
        """Read :meth:`save`'s file (large arrays memory-mapped; ``ArtifactError`` if bad)."""
        arrays = load_arrays(Path(path))
        try:
            return cls(arrays["keys"], arrays["items"], arrays["scores"])
        except KeyError as exc:
            raise ArtifactError(f"{path}: kept answers without {exc}") from None


class ItemIndex(ABC):
    """Top-k items by inner product with a query vector."""

    #: What :func:`load_index` and manifests call this kind of index.
    kind: ClassVar[str]
    #: The remembered answers by ``(k, query bytes)`` (:meth:`remember`); ``None``: every
    #: query is searched.
    _answers: LRU[tuple[int, bytes], tuple[NDArray[np.int64], NDArray[np.float32]]] | None = None
    #: Answers kept for known customers (:meth:`keep_answers`, :meth:`use_answers`).
    _kept: KeptAnswers | None = None

    @property
    @abstractmethod
    def n_items(self) -> int:
        """Number of items indexed (indices ``0 .. n_items - 1``)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the item and query vectors."""

    @abstractmethod
    def _search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Search checked, finite queries with ``1 <= k <= n_items``."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the index to one file (no pickle)."""

    def remember(self, size: int = RECENT_ANSWERS) -> None:
        """Keep the answers to the last ``size`` single-vector queries (``0``: none).

        A customer's query vector does not change between their requests: a known customer's
        is their stored factors whatever they do next, so a customer browsing asks the same
        search on every page. A remembered answer is the one the index gave, returned without
        searching again (searches are deterministic, so it is the same answer). Serving turns
        it on (:class:`recsys.engine.Engine` on load); a benchmark of search speed must not.
        """
        self._answers = LRU(size) if size > 0 else None

    def _forget(self) -> None:
        """Drop the remembered and kept answers (the search parameters changed)."""
        if self._answers is not None:
            self._answers.clear()
        self._kept = None

    def keep_answers(
        self, keys: NDArray[np.integer], queries: NDArray[np.floating[Any]], k: int
    ) -> KeptAnswers:
        """Search ``queries`` (one batch) and keep each answer under its key (a customer
        index): :meth:`search` with ``keys`` then reads them instead of searching. Returns
        them (to save with the version; :meth:`use_answers` hands them to a loaded index)."""
        keys = np.asarray(keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ModelError("keep_answers: keys repeat")
        q = self._check_queries(queries)
        if q.shape[0] != len(keys):
            raise ModelError(f"keep_answers: {len(keys)} keys for {q.shape[0]} queries")
        if k < 0:
            raise ModelError(f"k must be >= 0, got {k}")
        items, scores = self._search_checked(np.ascontiguousarray(q[order]), k)
        kept = KeptAnswers(keys, items, scores)
        self._kept = kept
        return kept

    def use_answers(self, kept: KeptAnswers | None) -> None:
        """Read ``kept`` (answers :meth:`keep_answers` gave for this index) from now on."""
        self._kept = kept

    def search(
        self,
        queries: NDArray[np.floating[Any]],
        k: int,
        keys: NDArray[np.integer] | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The ``k`` items with the largest inner product per query, best first.

        Parameters
        ----------
        queries
            ``n × dim`` (or one ``dim`` vector, read as ``1 × dim``); rows containing ``NaN``
            are the marker of a user with no factors and come back empty.
        k
            Items wanted per query.
        keys
            Per query, the customer index whose stored vector it is (``-1``: none, e.g. a
            vector folded in from live events): a query whose key has a kept answer for
            ``k`` (:meth:`keep_answers`) is answered from it, unsearched. The caller vouches
            that the query is the vector the answer was kept for.

        Returns
        -------
        indices : numpy.ndarray
            ``n × k`` int64, padded with ``-1`` where fewer than ``k`` items were found.
        scores : numpy.ndarray
            ``n × k`` float32 inner products, ``-inf`` where padded.

        Raises
        ------
        ModelError
            ``queries`` is not a matrix of ``dim`` columns, or ``k`` is negative.
        """
        q = self._check_queries(queries)
        if k < 0:
            raise ModelError(f"k must be >= 0, got {k}")
        kept = self._kept
        if keys is not None and kept is not None and kept.k == k and len(kept.keys):
            at = kept.find(np.asarray(keys).reshape(-1))
            if len(at) != q.shape[0]:
                raise ModelError(f"{len(at)} keys for {q.shape[0]} queries")
            if (at >= 0).any():
                return self._with_kept(q, k, kept, at)
        answers = self._answers
        if answers is None or q.shape[0] != 1:
            return self._search_checked(q, k)
        key = (k, q.tobytes())
        hit = answers.get(key)
        if hit is None:
            hit = self._search_checked(q, k)
            answers.put(key, hit)
        # copies: the remembered arrays stay as the index gave them whatever a caller does
        return hit[0].copy(), hit[1].copy()

    def _with_kept(
        self, q: NDArray[np.float32], k: int, kept: KeptAnswers, at: NDArray[np.intp]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Answers read from ``kept`` where ``at >= 0``, searched for the other rows."""
        hit = at >= 0
        idx = np.empty((q.shape[0], k), dtype=np.int64)
        vals = np.empty((q.shape[0], k), dtype=np.float32)
        idx[hit] = kept.items[at[hit]]
        vals[hit] = kept.scores[at[hit]]
        if not hit.all():
            rest = np.flatnonzero(~hit)
            idx[rest], vals[rest] = self.search(q[rest], k)
        return idx, vals

    def _search_checked(
        self, q: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        n = q.shape[0]
        idx = np.full((n, k), NO_ITEM, dtype=np.int64)
        vals = np.full((n, k), -np.inf, dtype=np.float32)
        take = min(k, self.n_items)
        ok = np.isfinite(q).all(axis=1)
        if take == 0 or not ok.any():
            return idx, vals
        # faiss returns garbage for NaN queries; answer only the rows that have a vector
        rows = q if ok.all() else np.ascontiguousarray(q[ok])
        found, scores = self._search(rows, take)
        missing = found < 0
        scores = scores.astype(np.float32, copy=False)
        scores[missing] = -np.inf
        found[missing] = NO_ITEM
        idx[ok, :take] = found
        vals[ok, :take] = scores
        return idx, vals

    def _check_queries(self, queries: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ModelError(
                f"{type(self).__name__}: queries must be n × {self.dim} vectors "
                f"(the item factor length), got shape {tuple(np.shape(queries))}"
            )
        if not np.issubdtype(q.dtype, np.number):
            raise ModelError(f"{type(self).__name__}: queries must be numbers, got {q.dtype}")
        return np.ascontiguousarray(q, dtype=np.float32)


def check_items(item_factors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    items = np.asarray(item_factors)
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
        raise ModelError(f"item factors must be a non-empty matrix, got shape {items.shape}")
    if not np.isfinite(items).all():
        bad = int(np.flatnonzero(~np.isfinite(items).all(axis=1))[0])
        raise ModelError(f"item factors: row {bad} is not finite (NaN or inf)")
    return np.ascontiguousarray(items, dtype=np.float32)


__all__ = [
    "RECENT_ANSWERS",
    "FactorModel",
    "ItemIndex",
    "KeptAnswers",
    "SearchesIndex",
    "check_items",
    "indexed_vectors",
]
