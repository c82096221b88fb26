"""Top-k retrieval by maximum inner product: exact below a catalogue size, approximate above.

Scoring a user with a factor model is a dot product with every item vector followed by a
top-k. Exact search reads the whole ``n_items × d`` matrix per request, so its cost grows with
the catalogue and is bound by memory bandwidth (about 10 ms per request at 10^6 items × 64
float32 factors on one core). Above a configurable size (:attr:`AnnConfig.min_items`) a graph
index (HNSW, inner-product metric) answers the same question while visiting a few thousand
items; ``benchmarks/bench_ann.py`` measures its recall@10 against exact search and its
speed-up, and picked the defaults below.

Two graph implementations answer the same protocol. :class:`UsearchIndex` (the default) is read
with usearch's ``view``: the file is memory-mapped, graph and vectors alike, so every server
worker searches the same pages of the page cache and a second worker adds no second copy
(``benchmarks/bench_memory.py``). :class:`FaissIndex` (faiss HNSW or IVF) is read into each
process's private memory (``faiss.read_index`` copies an HNSW graph even with ``IO_FLAG_MMAP``);
it stays for versions trained before and for ``kind = "hnsw"`` / ``"ivf"``.

An inner-product graph misses some of the items with the largest norms, and those are where
ALS top lists concentrate (popular items). :attr:`AnnConfig.exact_head` scores the
``exact_head`` largest-norm items by brute force on every search and merges them with the
graph's candidates: a few hundred microseconds per query that the graph alone cannot buy at any
``ef_search`` (at 10^6 items faiss's recall@10 stops near 0.95).

Every index answers :meth:`ItemIndex.search`: ``queries`` (``n × d`` float32) to ``k`` item
indices and scores per row, best first. Rows that cannot be answered (a query with ``NaN``,
the model's marker for a user it knows nothing about, or fewer than ``k`` items) are padded
with :data:`~recsys.models.base.NO_ITEM` and ``-inf``, as
:func:`recsys.models.base.top_k` pads. :func:`search_excluding` adds the business-rule
pattern: fetch ``k`` plus some spare candidates, drop excluded items, fetch more only for the
rows that came up short.

Indexes are saved without pickle: the exact index as ``.npz``, faiss indexes with
``faiss.write_index``, usearch indexes with usearch's own format (each file is hashed by the
model manifest like any other file). A mapped file must never be rewritten in place (readers
would see the new bytes, or fault past a shorter file): :meth:`UsearchIndex.save` writes a new
file and renames it over the old one, and a published version is never written again.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recsys.config import StrictModel, validate
from recsys.errors import ArtifactError, ModelError
from recsys.lru import LRU
from recsys.models.base import NO_ITEM, load_arrays, save_arrays

#: Rows of ``queries × n_items`` scores the exact index computes at once (bounds its memory).
_EXACT_BLOCK_CELLS = 8_000_000

#: Single-query answers a served index remembers (:meth:`ItemIndex.remember`): 1 × k items
#: and scores each, about 1.2 kB at k = 100, so at most about 5 MB a worker.
RECENT_ANSWERS = 4096

IndexKind = Literal["auto", "exact", "usearch", "hnsw", "ivf"]

#: File suffix of each saved index kind (:func:`load_index` reads the kind back from it).
_SUFFIXES = {"exact": ".npz", "faiss": ".faiss", "usearch": ".usearch"}


class AnnConfig(StrictModel):
    """Which index :func:`build_index` builds, and its parameters.

    The defaults were chosen with ``benchmarks/bench_ann.py`` on ALS factors (64 factors,
    synthetic power-law catalogue of 10^6 items), with ``ef_construction=200``: graph alone
    (``ef_search=128``) recall@10 0.940; with ``exact_head=10_000`` 1.000 at 52x the exact
    throughput (recall@100 0.999). ``ef_construction=100`` builds in half the time with the
    same recall with the head, on the hybrid's ALS vectors of 65k and 650k items (recall@10
    0.9995 and 0.9997 either way; the graph alone 0.914 against 0.922 at 65k, 0.870 against
    0.885 at 650k); see ``benchmarks/RESULTS.md``, "Twelfth session".
    The head's share of the recall depends on how much top lists concentrate on large-norm
    items: on that catalogue all exact top-10 items lie within the 10,000 largest norms; on
    Online Retail's ALS factors the top 10% of items by norm hold 82% of them, so there the
    graph does more of the work. See ``benchmarks/RESULTS.md``.

    Parameters
    ----------
    kind
        ``"auto"``: exact below ``min_items`` items, usearch HNSW from ``min_items`` up; or
        force one: ``"exact"``, ``"usearch"`` (HNSW, memory-mapped when served), ``"hnsw"``
        (faiss HNSW, read into each worker) or ``"ivf"`` (faiss IVF-Flat).
    min_items
        Catalogue size from which ``"auto"`` switches to the approximate index.
    m
        HNSW (both libraries): graph neighbours per node (memory grows ``~ 2 * m * 4`` bytes
        per item; usearch calls it ``connectivity``).
    ef_construction
        HNSW: candidate list size while building (build time vs graph quality; usearch's
        ``expansion_add``).
    ef_search
        HNSW: candidate list size while searching (raised to ``k`` when ``k`` is larger;
        usearch's ``expansion_search``, which is not stored in its file: the manifest keeps
        it and :func:`load_index` sets it).
    nlist
        IVF: number of k-means cells; ``None`` means ``4 * sqrt(n_items)``.
    nprobe
        IVF: cells visited per query.
    exact_head
        HNSW: also score this many items exactly, those with the largest vector norms, and
        merge them with the graph's candidates (``0``: graph only). ALS top lists concentrate
        on the items with the largest norms, which are the ones an inner-product graph search
        most often misses.
    threads
        Threads faiss and BLAS may use per search; one per request in a serving process,
        where parallelism comes from concurrent requests.
    """

    kind: IndexKind = "auto"
    min_items: int = Field(default=50_000, ge=1)
    m: int = Field(default=32, ge=4, le=256)
    ef_construction: int = Field(default=100, ge=8)
    ef_search: int = Field(default=128, ge=1)
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=32, ge=1)
    exact_head: int = Field(default=10_000, ge=0)
    threads: int = Field(default=1, ge=1)

    def wants_approximate(self, n_items: int) -> bool:
        """Whether :func:`build_index` builds an approximate index for ``n_items`` items."""
        return self.kind in ("usearch", "hnsw", "ivf") or (
            self.kind == "auto" and n_items >= self.min_items
        )


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


class ExactIndex(ItemIndex):
    """Brute force: one matrix product with every item, then ``argpartition``.

    Parameters
    ----------
    item_factors
        ``n_items × d`` item vectors (copied to C-contiguous float32).
    threads
        BLAS threads per search (``None`` leaves BLAS as configured).
    """

    kind: ClassVar[str] = "exact"

    def __init__(self, item_factors: NDArray[np.floating[Any]], *, threads: int | None = 1):
        items = np.asarray(item_factors)
        if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
            raise ModelError(f"item factors must be a non-empty matrix, got {items.shape}")
        self.item_factors = np.ascontiguousarray(items, dtype=np.float32)
        self.threads = threads

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.item_factors.shape[0])

    @property
    def dim(self) -> int:
        """Factor length."""
        return int(self.item_factors.shape[1])

    def _search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        with _blas_threads(self.threads):
            return self._search_blocks(queries, k)

    def _search_blocks(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        n, m = queries.shape[0], self.n_items
        idx = np.empty((n, k), dtype=np.int64)
        vals = np.empty((n, k), dtype=np.float32)
        step = max(1, _EXACT_BLOCK_CELLS // m)
        for start in range(0, n, step):
            scores = queries[start : start + step] @ self.item_factors.T
            # NaN/inf item vectors would poison argpartition; they are never chosen
            scores[~np.isfinite(scores)] = -np.inf
            if k < m:
                part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(m), scores.shape)
            top = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            idx[start : start + step] = np.take_along_axis(part, order, axis=1)
            vals[start : start + step] = np.take_along_axis(top, order, axis=1)
        idx[~np.isfinite(vals)] = NO_ITEM
        return idx, vals

    def save(self, path: Path) -> None:
        """Write the item vectors as ``.npz`` (``path`` should end in ``.npz``)."""
        save_arrays(Path(path), item_factors=self.item_factors)

    @classmethod
    def load(cls, path: Path, *, threads: int | None = 1) -> ExactIndex:
        """Read an index written by :meth:`save`."""
        arrays = load_arrays(Path(path))
        if "item_factors" not in arrays:
            raise ArtifactError(f"{path}: not an exact index (no 'item_factors' array)")
        try:
            return cls(arrays["item_factors"], threads=threads)
        except ModelError as exc:
            raise ArtifactError(f"{path}: {exc}") from None


class FaissIndex(ItemIndex):
    """An approximate maximum-inner-product index from faiss (HNSW or IVF-Flat).

    Build it with :meth:`hnsw` or :meth:`ivf`, or read one with :meth:`load`.

    Parameters
    ----------
    index
        A faiss index with ``METRIC_INNER_PRODUCT`` holding the item vectors in index order.
    threads
        OpenMP threads faiss uses per search (faiss's setting is process-wide; it is set
        before every search so that another user of faiss in the process cannot change it).
    exact_head
        HNSW only: items with the largest norms scored exactly on every search and merged
        with the graph's candidates (see :attr:`AnnConfig.exact_head`). A search parameter,
        not part of the file: the head is read from the vectors the index stores.
    """

    kind: ClassVar[str] = "faiss"

    def __init__(self, index: Any, *, threads: int = 1, exact_head: int = 0) -> None:
        import faiss

        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ModelError("a FaissIndex needs an inner-product index (METRIC_INNER_PRODUCT)")
        self.index = index
        self.threads = threads
        self._head: _NormHead | None = None
        self.set_search_params(exact_head=exact_head)

    @classmethod
    def hnsw(
        cls,
        item_factors: NDArray[np.floating[Any]],
        *,
        m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 256,
        exact_head: int = 0,
        threads: int = 1,
        build_threads: int | None = None,
    ) -> FaissIndex:
        """A graph index (``IndexHNSWFlat``, inner product); ``build_threads`` default: all."""
        import faiss

        items = _check_items(item_factors)
        index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        with _faiss_threads(build_threads):
            index.add(items)
        return cls(index, threads=threads, exact_head=exact_head)

    @classmethod
    def ivf(
        cls,
        item_factors: NDArray[np.floating[Any]],
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        threads: int = 1,
        build_threads: int | None = None,
        seed: int = 0,
    ) -> FaissIndex:
        """An inverted-file index (``IndexIVFFlat``, inner product, k-means cells)."""
        import faiss

        items = _check_items(item_factors)
        n, d = items.shape
        cells = nlist if nlist is not None else max(1, int(4 * np.sqrt(n)))
        # faiss wants >= 39 training points per cell; fewer cells beats a poor clustering
        cells = max(1, min(cells, n // 39))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        # k-means on 64 points per cell: enough for the cells, and it keeps a 10^6 build short
        rng = np.random.default_rng(seed)
        sample = items if n <= 64 * cells else items[rng.choice(n, 64 * cells, replace=False)]
        with _faiss_threads(build_threads):
            index.train(np.ascontiguousarray(sample))
            index.add(items)
        index.nprobe = min(nprobe, cells)
        # faiss's Python constructor keeps a reference to the quantizer, so it lives as long
        # as the index; read_index gives the loaded index its own copy
        return cls(index, threads=threads)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """Factor length."""
        return int(self.index.d)

    @property
    def params(self) -> dict[str, Any]:
        """The index type and its search parameters (for manifests and reports)."""
        import faiss

        out: dict[str, Any] = {"type": type(self.index).__name__}
        if isinstance(self.index, faiss.IndexHNSW):
            out.update(
                m=int(self.index.hnsw.nb_neighbors(1)),  # type: ignore[attr-defined]
                ef_construction=int(self.index.hnsw.efConstruction),
                ef_search=int(self.index.hnsw.efSearch),
                exact_head=self.exact_head,
            )
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            out.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
        return out

    @property
    def exact_head(self) -> int:
        """Items with the largest norms scored exactly on every search (``0``: none)."""
        return 0 if self._head is None else self._head.size

    def set_search_params(
        self,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        exact_head: int | None = None,
    ) -> None:
        """Change the speed/recall trade-off (HNSW ``ef_search`` and ``exact_head``, IVF
        ``nprobe``) in place."""
        try:
            import faiss

            if exact_head is not None:
                self._set_exact_head(int(exact_head))

            if ef_search is not None:
                if not isinstance(self.index, faiss.IndexHNSW):
                    raise ModelError(f"ef_search applies to HNSW, not {type(self.index).__name__}")
                self.index.hnsw.efSearch = int(ef_search)
            if nprobe is not None:
                ivf = faiss.try_extract_index_ivf(self.index)
                if ivf is None:
                    raise ModelError(f"nprobe applies to IVF, not {type(self.index).__name__}")
                ivf.nprobe = int(nprobe)
        finally:
            # after the change: no answer searched with the old parameters stays
            self._forget()

    def _set_exact_head(self, head: int) -> None:
        import faiss

        if head < 0:
            raise ModelError(f"exact_head must be >= 0, got {head}")
        if min(head, self.n_items) == 0:
            self._head = None
            return
        if not isinstance(self.index, faiss.IndexHNSWFlat):
            raise ModelError(f"exact_head applies to HNSW, not {type(self.index).__name__}")
        # a view of the vectors the index stores: the head needs no copy of the catalogue
        storage = faiss.downcast_index(self.index.storage)
        xb = storage.get_xb()  # type: ignore[attr-defined]
        vectors = faiss.rev_swig_ptr(xb, self.n_items * self.dim)
        self._head = _NormHead(vectors.reshape(self.n_items, self.dim), head)

    def _search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        import faiss

        params = None
        if isinstance(self.index, faiss.IndexHNSW) and self.index.hnsw.efSearch < k:
            # a candidate list shorter than k cannot return k items
            params = faiss.SearchParametersHNSW(efSearch=k)  # type: ignore[attr-defined]
        faiss.omp_set_num_threads(self.threads)
        scores, idx = self.index.search(queries, k, params=params)
        idx = idx.astype(np.int64, copy=False)
        if self._head is None:
            return idx, scores
        return self._head.merge(queries, k, idx, scores, threads=self.threads)

    def save(self, path: Path) -> None:
        """Write the index with ``faiss.write_index`` (search parameters included)."""
        import faiss

        try:
            faiss.write_index(self.index, str(path))
        except RuntimeError as exc:
            raise ArtifactError(f"{path}: cannot write the faiss index: {exc}") from None

    @classmethod
    def load(cls, path: Path, *, threads: int = 1, exact_head: int = 0) -> FaissIndex:
        """Read an index written by :meth:`save` (``ArtifactError`` if unreadable)."""
        import faiss

        if not Path(path).is_file():
            raise ArtifactError(f"{path}: no such index file")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            raise ArtifactError(f"{path}: not a faiss index: {first}") from None
        try:
            return cls(index, threads=threads, exact_head=exact_head)
        except ModelError as exc:
            raise ArtifactError(f"{path}: {exc}") from None


class UsearchIndex(ItemIndex):
    """An HNSW inner-product index from usearch, served memory-mapped.

    Build it with :meth:`hnsw`, read one with :meth:`load`. A loaded index is usearch's
    read-only ``view`` of the file: graph and vectors stay in the page cache, shared by every
    process that maps the same file, instead of one private copy per server worker.

    Parameters
    ----------
    index
        A ``usearch.index.Index`` with the inner-product metric and float32 vectors, item
        index ``i`` stored under key ``i``; items whose vector is zero may be left out (see
        :meth:`hnsw`).
    item_factors
        The same ``n_items × dim`` vectors in item order (the model's factors, themselves
        memory-mapped by :func:`~recsys.models.base.load_arrays`); needed for an exact head.
        usearch's file holds the vectors too, but in the order a multi-threaded build
        inserted them, which its file does not let us map back to items cheaply.
    threads
        Threads usearch uses per search.
    exact_head
        Items with the largest norms scored exactly on every search and merged with the
        graph's candidates (see :attr:`AnnConfig.exact_head`).
    ef_construction
        Build-time candidate list size, when known (reported in :attr:`params`).
    n_items
        Items of the catalogue (keys ``0 .. n_items - 1``); ``None``: the rows of
        ``item_factors``, else the vectors in the index.
    """

    kind: ClassVar[str] = "usearch"

    def __init__(
        self,
        index: Any,
        item_factors: NDArray[np.float32] | None = None,
        *,
        threads: int = 1,
        exact_head: int = 0,
        ef_construction: int | None = None,
        n_items: int | None = None,
    ) -> None:
        from usearch.index import MetricKind

        if index.metric_kind != MetricKind.IP:
            raise ModelError(f"a UsearchIndex needs the inner-product metric, not {index.metric}")
        if n_items is None:
            n_items = len(index) if item_factors is None else int(item_factors.shape[0])
        shape = (n_items, index.ndim)
        if item_factors is not None and item_factors.shape != shape:
            raise ModelError(
                f"item factors of shape {item_factors.shape} do not match the index "
                f"({shape[0]} × {shape[1]})"
            )
        # the graph holds exactly the non-zero vectors (hnsw), or every item (an index built
        # before zero vectors were left out): an index of another model version is told apart
        # by the count, which the file alone cannot give
        graphed = len(index) if item_factors is None else _nonzero_rows(item_factors)
        if len(index) not in (graphed, n_items) or len(index) > n_items:
            raise ModelError(
                f"the index holds {len(index)} vectors, the model {graphed} non-zero of "
                f"{n_items} items"
            )
        self.index = index
        self.item_factors = item_factors
        self.threads = threads
        self.ef_construction = ef_construction
        self._n_items, self._dim = shape
        self._head: _NormHead | None = None
        self.set_search_params(exact_head=exact_head)

    @classmethod
    def hnsw(
        cls,
        item_factors: NDArray[np.floating[Any]],
        *,
        m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
        exact_head: int = 0,
        threads: int = 1,
        build_threads: int | None = None,
    ) -> UsearchIndex:
        """Build a graph over ``item_factors`` (``build_threads`` default: all cores).

        Items whose vector is all zeros are left out of the graph: every query scores them 0,
        so they could only fill a list that has fewer positive scores than asked for, and many
        equal vectors make the build crawl. An ALS item nobody interacted with has a zero
        vector; on a synthetic 10^6-item shop with 2 * 10^6 events 74 % of the hybrid's ALS
        items had one, and the build of the whole set had not finished after 8.5 minutes
        (``benchmarks/RESULTS.md``, "Eighth session").
        """
        from usearch.index import Index, MetricKind

        items = _check_items(item_factors)
        index = Index(
            ndim=items.shape[1],
            metric=MetricKind.IP,
            dtype="f32",  # usearch would pick f16 where the CPU has it: recall first
            connectivity=m,
            expansion_add=ef_construction,
            expansion_search=ef_search,
            enable_key_lookups=False,  # searched by vector only; the table costs memory
        )
        keep = np.flatnonzero(_nonzero_mask(items))
        if len(keep) == items.shape[0]:
            index.add(np.arange(len(keep), dtype=np.uint64), items, threads=build_threads or 0)
        elif len(keep):
            index.add(keep.astype(np.uint64), items[keep], threads=build_threads or 0)
        return cls(
            index, items, threads=threads, exact_head=exact_head, ef_construction=ef_construction
        )

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self._n_items)

    @property
    def dim(self) -> int:
        """Factor length."""
        return int(self._dim)

    @property
    def exact_head(self) -> int:
        """Items with the largest norms scored exactly on every search (``0``: none)."""
        return 0 if self._head is None else self._head.size

    @property
    def params(self) -> dict[str, Any]:
        """The index type and its parameters (for manifests and reports)."""
        from usearch import __version__

        out: dict[str, Any] = {
            "type": "usearch HNSW",
            "library": f"usearch {__version__}",
            "m": int(self.index.connectivity),
            "ef_search": int(self.index.expansion_search),
            "exact_head": self.exact_head,
        }
        if self.ef_construction is not None:
            out["ef_construction"] = self.ef_construction
        return out

    def set_search_params(
        self, *, ef_search: int | None = None, exact_head: int | None = None
    ) -> None:
        """Change ``ef_search`` and ``exact_head`` in place."""
        try:
            if exact_head is not None:
                if exact_head < 0:
                    raise ModelError(f"exact_head must be >= 0, got {exact_head}")
                size = min(int(exact_head), self.n_items)
                if size == 0:
                    self._head = None
                elif self.item_factors is None:
                    raise ModelError("an exact head needs the item factors (give item_factors)")
                else:
                    self._head = _NormHead(self.item_factors, size)
            if ef_search is not None:
                if ef_search < 1:
                    raise ModelError(f"ef_search must be >= 1, got {ef_search}")
                self.index.expansion_search = int(ef_search)
        finally:
            # after the change: no answer searched with the old parameters stays
            self._forget()

    def _search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        # usearch widens its candidate list to k itself (measured: k > ef_search still fills k)
        found = self.index.search(queries, k, threads=self.threads)
        n = queries.shape[0]
        keys = np.zeros((n, k), dtype=np.uint64)
        distances = np.zeros((n, k), dtype=np.float32)
        if hasattr(found, "counts"):  # a batch: n × k arrays, each row valid up to its count
            counts = np.asarray(found.counts).reshape(-1)
            keys[:] = np.asarray(found.keys).reshape(n, k)
            distances[:] = np.asarray(found.distances).reshape(n, k)
        else:  # one query (usearch answers a 1-row batch so): only the items it found
            got = len(found.keys)
            counts = np.array([got])
            keys[0, :got] = found.keys
            distances[0, :got] = found.distances
        valid = (np.arange(k)[None, :] < counts[:, None]) & (keys < self.n_items)
        idx = np.where(valid, keys, 0).astype(np.int64)
        idx[~valid] = NO_ITEM
        # usearch's inner-product distance is 1 - dot, best (smallest) first; the slots past a
        # row's count hold whatever usearch left there (may be NaN), so only valid ones count
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        scores[valid] = np.float32(1.0) - distances[valid]
        if self._head is None:
            return idx, scores
        return self._head.merge(queries, k, idx, scores, threads=self.threads)

    def save(self, path: Path) -> None:
        """Write usearch's file; a new file renamed over ``path``, never ``path`` rewritten.

        A process that has ``path`` mapped keeps the old file (its inode) and its answers.
        """
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        try:
            self.index.save(str(partial))
            os.replace(partial, path)
        except (OSError, RuntimeError) as exc:
            partial.unlink(missing_ok=True)
            raise ArtifactError(f"{path}: cannot write the usearch index: {exc}") from None

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        threads: int = 1,
        exact_head: int = 0,
        ef_search: int | None = None,
        item_factors: NDArray[np.float32] | None = None,
        n_items: int | None = None,
    ) -> UsearchIndex:
        """Map an index written by :meth:`save`, read-only (``ArtifactError`` if unreadable).

        ``ef_search`` is not in usearch's file: the manifest keeps it (``None``: the
        :class:`AnnConfig` default). ``item_factors`` (the model's, in item order) are needed
        when ``exact_head > 0``. ``n_items``: the catalogue's size, which the file does not
        hold when zero vectors were left out (``None``: the rows of ``item_factors``, else
        the vectors in the file).
        """
        from usearch.index import Index, MetricKind, ScalarKind

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such index file")
        try:
            meta = Index.metadata(str(path))
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a usearch index: {exc}") from None
        if not meta or not meta.get("matrix_included"):
            raise ArtifactError(f"{path}: not a usearch index with its vectors")
        if meta["kind_metric"] != MetricKind.IP or meta["kind_scalar"] != ScalarKind.F32:
            raise ArtifactError(
                f"{path}: a usearch index of {meta['kind_metric'].name} / "
                f"{meta['kind_scalar'].name}; serving needs inner product on float32"
            )
        index = Index(
            ndim=int(meta["dimensions"]),
            metric=MetricKind.IP,
            dtype="f32",
            expansion_search=ef_search if ef_search is not None else AnnConfig().ef_search,
            enable_key_lookups=False,  # a per-process hash table of every key: not needed
        )
        try:
            index.view(str(path))
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a usearch index: {exc}") from None
        try:
            return cls(index, item_factors, threads=threads, exact_head=exact_head, n_items=n_items)
        except ModelError as exc:
            raise ArtifactError(f"{path}: {exc}") from None


#: cells (rows × head × graph candidates) compared at once when merging the head
MERGE_CHUNK_CELLS = 1 << 20


class _NormHead:
    """The ``size`` items of largest norm, scored by brute force and merged with a graph's
    candidates (:attr:`AnnConfig.exact_head`).

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


def build_index(
    item_factors: NDArray[np.floating[Any]],
    *,
    config: AnnConfig | None = None,
    **params: Any,
) -> ItemIndex:
    """The index for a catalogue: exact below ``min_items`` items, approximate from there.

    Parameters
    ----------
    item_factors
        ``n_items × d`` item vectors.
    config
        An :class:`AnnConfig`; ``params`` (its field names: ``kind``, ``min_items``, ``m``,
        ``ef_search``...) override its values.
    **params
        Overrides; an unknown name is a :class:`~recsys.errors.ConfigError` naming it.

    Returns
    -------
    ItemIndex
        :class:`ExactIndex`, :class:`UsearchIndex` or :class:`FaissIndex`.
    """
    base = (config or AnnConfig()).model_dump()
    cfg = validate(AnnConfig, {**base, **params}, "retrieval index")
    items = _check_items(item_factors)
    kind = cfg.kind
    if kind == "auto":
        kind = "exact" if items.shape[0] < cfg.min_items else "usearch"
    if kind == "exact":
        return ExactIndex(items, threads=cfg.threads)
    if kind == "usearch":
        return UsearchIndex.hnsw(
            items,
            m=cfg.m,
            ef_construction=cfg.ef_construction,
            ef_search=cfg.ef_search,
            exact_head=cfg.exact_head,
            threads=cfg.threads,
        )
    if kind == "hnsw":
        return FaissIndex.hnsw(
            items,
            m=cfg.m,
            ef_construction=cfg.ef_construction,
            ef_search=cfg.ef_search,
            exact_head=cfg.exact_head,
            threads=cfg.threads,
        )
    return FaissIndex.ivf(items, nlist=cfg.nlist, nprobe=cfg.nprobe, threads=cfg.threads)


def save_index(index: ItemIndex, path: Path) -> Path:
    """Write ``index`` to ``path`` with the suffix its kind needs (returned).

    ``.npz`` for :class:`ExactIndex`, ``.usearch`` for :class:`UsearchIndex`, ``.faiss`` for
    :class:`FaissIndex`; :func:`load_index` reads the kind back from the suffix.
    """
    path = Path(path)
    path = path.with_suffix(_SUFFIXES[index.kind])
    index.save(path)
    return path


def load_index(
    path: Path,
    *,
    threads: int = 1,
    n_items: int | None = None,
    dim: int | None = None,
    exact_head: int = 0,
    ef_search: int | None = None,
    item_factors: NDArray[np.floating[Any]] | None = None,
) -> ItemIndex:
    """Read an index written by :func:`save_index`, checking it fits the model if asked.

    Parameters
    ----------
    path
        A ``.npz`` (exact), ``.usearch`` (memory-mapped, read-only) or ``.faiss`` file.
    threads
        Threads per search.
    n_items, dim
        When given, the index must hold exactly this many items of this length (an index
        left over from another model version is an :class:`~recsys.errors.ArtifactError`).
    exact_head
        The exact head of an HNSW index (ignored by the exact index and IVF).
    ef_search
        A usearch index's ``ef_search`` (its file does not hold it; ``None``: the
        :class:`AnnConfig` default). A faiss file carries its own and ignores this.
    item_factors
        The model's item vectors, in item order: a usearch index draws its exact head from
        them (a faiss index reads its own copy).

    Raises
    ------
    ArtifactError
        The file is missing, unreadable, of an unknown kind, or does not fit the model.
    """
    path = Path(path)
    index: ItemIndex
    if path.suffix == ".npz":
        index = ExactIndex.load(path, threads=threads)
    elif path.suffix == ".usearch":
        vectors = None if item_factors is None else _check_items(item_factors)
        index = UsearchIndex.load(
            path,
            threads=threads,
            exact_head=exact_head,
            ef_search=ef_search,
            item_factors=vectors,
            # the file holds the non-zero vectors only: the model's factors tell how many
            # items there are and check the count; without them the file's count must match
            n_items=n_items if vectors is not None else None,
        )
    elif path.suffix == ".faiss":
        index = FaissIndex.load(path, threads=threads, exact_head=exact_head)
    else:
        raise ArtifactError(f"{path}: unknown index file type (expected .npz, .usearch or .faiss)")
    if n_items is not None and index.n_items != n_items:
        raise ArtifactError(f"{path}: index holds {index.n_items} items, the model {n_items}")
    if dim is not None and index.dim != dim:
        raise ArtifactError(f"{path}: index vectors have length {index.dim}, the model {dim}")
    return index


def search_excluding(
    index: ItemIndex,
    queries: NDArray[np.floating[Any]],
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    extra: int = 20,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Top ``k`` per query with the items marked in ``exclude`` removed.

    Fetches ``k + extra`` candidates (plus each row's number of exclusions), drops excluded
    items, and fetches again with twice as many candidates for rows still short of ``k``,
    up to the whole catalogue, so a row is only padded when fewer than ``k`` items remain.

    Parameters
    ----------
    index
        Any :class:`ItemIndex`.
    queries
        ``n × dim`` query vectors.
    k
        Items wanted per row.
    exclude
        ``n × n_items`` sparse matrix; a stored non-zero marks an item not to return for that
        row (already bought, out of stock, blocked by a rule).
    extra
        Spare candidates fetched beyond ``k``, for rules applied after this call.

    Returns
    -------
    tuple of numpy.ndarray
        ``n × k`` indices (``-1`` padded) and scores (``-inf`` padded), best first.
    """
    q = index._check_queries(queries)
    n = q.shape[0]
    if exclude is None:
        return index.search(q, k)
    exclude = sp.csr_matrix(exclude)
    if exclude.shape != (n, index.n_items):
        raise ModelError(
            f"exclude must be {n} × {index.n_items} (queries × items), got {exclude.shape}"
        )
    exclude.eliminate_zeros()
    out_idx = np.full((n, k), NO_ITEM, dtype=np.int64)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    per_row = np.diff(exclude.indptr)
    pending = np.arange(n)
    fetch = k + max(extra, 0) + per_row
    while pending.size:
        want = int(min(fetch[pending].max(), index.n_items))
        idx, vals = index.search(q[pending], want)
        short = []
        for r, row in enumerate(pending):
            banned = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
            keep = (idx[r] != NO_ITEM) & ~np.isin(idx[r], banned)
            got = idx[r][keep][:k]
            out_idx[row, : got.size] = got
            out_val[row, : got.size] = vals[r][keep][:k]
            # a row whose search was not cut short by want has nothing more to give
            exhausted = want >= index.n_items or (idx[r] == NO_ITEM).any()
            if got.size < k and not exhausted:
                short.append(row)
        pending = np.asarray(short, dtype=np.intp)
        fetch[pending] = 2 * want
    return out_idx, out_val


def _nonzero_mask(items: NDArray[np.floating[Any]], block: int = 1 << 16) -> NDArray[np.bool_]:
    """Which rows have a non-zero entry (by blocks of rows: no items-long temporary matrix)."""
    out = np.empty(items.shape[0], dtype=bool)
    for start in range(0, items.shape[0], block):
        out[start : start + block] = np.any(items[start : start + block] != 0, axis=1)
    return out


def _nonzero_rows(items: NDArray[np.floating[Any]]) -> int:
    return int(np.count_nonzero(_nonzero_mask(items)))


def _check_items(item_factors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    items = np.asarray(item_factors)
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
        raise ModelError(f"item factors must be a non-empty matrix, got shape {items.shape}")
    if not np.isfinite(items).all():
        bad = int(np.flatnonzero(~np.isfinite(items).all(axis=1))[0])
        raise ModelError(f"item factors: row {bad} is not finite (NaN or inf)")
    return np.ascontiguousarray(items, dtype=np.float32)


class _blas_threads:
    """Limit BLAS threads for a block (``None``: leave as is); the controller is made once."""

    _controller: ClassVar[Any] = None

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._limit: Any = None

    def __enter__(self) -> None:
        if self.threads is None:
            return
        if _blas_threads._controller is None:
            from threadpoolctl import ThreadpoolController

            _blas_threads._controller = ThreadpoolController()
        self._limit = _blas_threads._controller.limit(limits=self.threads, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self._limit is not None:
            self._limit.restore_original_limits()
            self._limit = None


class _faiss_threads:
    """Set faiss's (process-wide) OpenMP threads for a block, restoring them after."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._before = 0

    def __enter__(self) -> None:
        import faiss

        self._before = faiss.omp_get_max_threads()
        if self.threads is not None:
            faiss.omp_set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        import faiss

        faiss.omp_set_num_threads(self._before)


__all__ = [
    "AnnConfig",
    "ExactIndex",
    "FactorModel",
    "FaissIndex",
    "ItemIndex",
    "KeptAnswers",
    "UsearchIndex",
    "build_index",
    "load_index",
    "save_index",
    "search_excluding",
]
