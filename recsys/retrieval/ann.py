"""Top-k retrieval by maximum inner product: exact below a catalogue size, approximate above.

Scoring a user with a factor model is a dot product with every item vector followed by a
top-k. Exact search (:mod:`recsys.retrieval.exact`) reads the whole ``n_items × d`` matrix
per request, so its cost grows with the catalogue. Above a configurable size
(:attr:`AnnConfig.min_items`) a graph index (HNSW, inner-product metric) answers the same
question while visiting a few thousand items; ``benchmarks/bench_ann.py`` measures its
recall@10 against exact search and its speed-up, and picked the defaults below.

Two graph implementations answer the same protocol (:class:`~recsys.retrieval.index.ItemIndex`):
:class:`~recsys.retrieval.usearch_index.UsearchIndex` (the default, memory-mapped and shared
by every worker) and :class:`~recsys.retrieval.faiss_index.FaissIndex` (faiss HNSW or IVF,
read into each process). Both merge an exact head of the largest-norm items
(:mod:`recsys.retrieval.head`) with the graph's candidates.

This module chooses and builds the index (:func:`build_index`), saves and loads it by file
suffix (:func:`save_index`, :func:`load_index`; each file is hashed by the model manifest like
any other), and adds the business-rule pattern (:func:`search_excluding`): fetch ``k`` plus
some spare candidates, drop excluded items, fetch more only for the rows that came up short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recsys.config import StrictModel, validate
from recsys.errors import ArtifactError, ModelError
from recsys.models.base import NO_ITEM
from recsys.retrieval.exact import ExactIndex
from recsys.retrieval.faiss_index import FaissIndex
from recsys.retrieval.index import ItemIndex, check_items
from recsys.retrieval.usearch_index import EF_SEARCH, UsearchIndex

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
    ef_search: int = Field(default=EF_SEARCH, ge=1)
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=32, ge=1)
    exact_head: int = Field(default=10_000, ge=0)
    threads: int = Field(default=1, ge=1)

    def wants_approximate(self, n_items: int) -> bool:
        """Whether :func:`build_index` builds an approximate index for ``n_items`` items."""
        return self.kind in ("usearch", "hnsw", "ivf") or (
            self.kind == "auto" and n_items >= self.min_items
        )


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
    items = check_items(item_factors)
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
        A usearch index's ``ef_search`` (its file does not hold it; ``None``:
        :data:`~recsys.retrieval.usearch_index.EF_SEARCH`). A faiss file carries its own and
        ignores this.
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
        vectors = None if item_factors is None else check_items(item_factors)
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


__all__ = [
    "AnnConfig",
    "IndexKind",
    "build_index",
    "load_index",
    "save_index",
    "search_excluding",
]
