"""faiss's HNSW and IVF-Flat inner-product indexes.

A faiss index is read into each process's private memory (``faiss.read_index`` copies an HNSW
graph even with ``IO_FLAG_MMAP``), so every server worker holds its own copy; it stays for
versions trained before usearch became the default and for ``kind = "hnsw"`` / ``"ivf"``.
Saved with ``faiss.write_index`` (no pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from recsys.errors import ArtifactError, ModelError
from recsys.retrieval.head import NormHead
from recsys.retrieval.index import ItemIndex, check_items


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
        with the graph's candidates (see :attr:`~recsys.retrieval.ann.AnnConfig.exact_head`).
        A search parameter, not part of the file: the head is read from the vectors the index
        stores.
    """

    kind: ClassVar[str] = "faiss"

    def __init__(self, index: Any, *, threads: int = 1, exact_head: int = 0) -> None:
        import faiss

        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ModelError("a FaissIndex needs an inner-product index (METRIC_INNER_PRODUCT)")
        self.index = index
        self.threads = threads
        self._head: NormHead | None = None
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

        items = check_items(item_factors)
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

        items = check_items(item_factors)
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
        self._head = NormHead(vectors.reshape(self.n_items, self.dim), head)

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


__all__ = ["FaissIndex"]
