"""usearch's HNSW inner-product index, served memory-mapped.

A loaded index is usearch's read-only ``view`` of its file: graph and vectors are
memory-mapped, so every server worker searches the same pages of the page cache and a second
worker adds no second copy (``benchmarks/bench_memory.py``). A mapped file must never be
rewritten in place (readers would see the new bytes, or fault past a shorter file):
:meth:`UsearchIndex.save` writes a new file and renames it over the old one, and a published
version is never written again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from recsys.errors import ArtifactError, ModelError
from recsys.models.base import NO_ITEM
from recsys.retrieval.head import NormHead
from recsys.retrieval.index import ItemIndex, check_items

#: HNSW candidate list while searching when nothing else says (usearch's file does not hold
#: it): :class:`~recsys.retrieval.ann.AnnConfig`'s default too.
EF_SEARCH = 128


def usearch_index() -> ModuleType:
    """``usearch.index``, imported after LightGBM's library where LightGBM is installed.

    usearch's compiled module carries its own static copy of libstdc++, whose locale facet ids
    it exports as GNU-unique symbols: the dynamic loader binds every library loaded after it
    to those ids, RTLD_LOCAL or not. LightGBM's library (loaded by ``import lightgbm``) then
    asks the system libstdc++'s locale for facets under ids it never registered, so its
    numbers format as nothing, and a LightGBM fit in that process fails with "Feature
    (Column_) appears more than one time". A process that maps an index and then learns the
    hybrid's ranker (a library user's, a test run's) would fail so. Loaded first, LightGBM
    binds to the system's ids, and usearch's copy changes nothing for it.
    """
    with contextlib.suppress(ImportError):
        import lightgbm  # noqa: F401  (its library loaded first: see above)
    import usearch.index

    return usearch.index


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
        graph's candidates (see :attr:`~recsys.retrieval.ann.AnnConfig.exact_head`).
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
        if index.metric_kind != usearch_index().MetricKind.IP:
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
        self._head: NormHead | None = None
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
        us = usearch_index()
        items = check_items(item_factors)
        index = us.Index(
            ndim=items.shape[1],
            metric=us.MetricKind.IP,
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
        from usearch import __version__  # usearch_index() has run: this index is built

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
                    self._head = NormHead(self.item_factors, size)
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
        :data:`EF_SEARCH`). ``item_factors`` (the model's, in item order) are needed
        when ``exact_head > 0``. ``n_items``: the catalogue's size, which the file does not
        hold when zero vectors were left out (``None``: the rows of ``item_factors``, else
        the vectors in the file).
        """
        us = usearch_index()
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such index file")
        try:
            meta = us.Index.metadata(str(path))
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a usearch index: {exc}") from None
        if not meta or not meta.get("matrix_included"):
            raise ArtifactError(f"{path}: not a usearch index with its vectors")
        if meta["kind_metric"] != us.MetricKind.IP or meta["kind_scalar"] != us.ScalarKind.F32:
            raise ArtifactError(
                f"{path}: a usearch index of {meta['kind_metric'].name} / "
                f"{meta['kind_scalar'].name}; serving needs inner product on float32"
            )
        index = us.Index(
            ndim=int(meta["dimensions"]),
            metric=us.MetricKind.IP,
            dtype="f32",
            expansion_search=ef_search if ef_search is not None else EF_SEARCH,
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


def _nonzero_mask(items: NDArray[np.floating[Any]], block: int = 1 << 16) -> NDArray[np.bool_]:
    """Which rows have a non-zero entry (by blocks of rows: no items-long temporary matrix)."""
    out = np.empty(items.shape[0], dtype=bool)
    for start in range(0, items.shape[0], block):
        out[start : start + block] = np.any(items[start : start + block] != 0, axis=1)
    return out


def _nonzero_rows(items: NDArray[np.floating[Any]]) -> int:
    return int(np.count_nonzero(_nonzero_mask(items)))


__all__ = ["EF_SEARCH", "UsearchIndex", "usearch_index"]
