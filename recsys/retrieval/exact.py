"""Exact top-k: one matrix product with every item vector, then a partial sort.

Its cost grows with the catalogue and is bound by memory bandwidth (about 10 ms per request at
10^6 items × 64 float32 factors on one core); :func:`recsys.retrieval.ann.build_index` builds
it below :attr:`~recsys.retrieval.ann.AnnConfig.min_items` items. Saved as ``.npz`` (no
pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from recsys.errors import ArtifactError, ModelError
from recsys.models.base import NO_ITEM, load_arrays, save_arrays
from recsys.retrieval.index import ItemIndex

#: Rows of ``queries × n_items`` scores the exact index computes at once (bounds its memory).
_EXACT_BLOCK_CELLS = 8_000_000


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


__all__ = ["ExactIndex"]
