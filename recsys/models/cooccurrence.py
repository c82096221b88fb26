"""Item co-occurrence: "bought together" (baskets) and "often viewed with" (sessions).

Two items co-occur when they are in the same basket (an order: complements) or the same
browsing session (views: substitutes). Raw counts favour best-sellers; the normalisations
trade that off in the usual ways:

==============  ======================================  =========
normalisation   ``S[i, j]``                             symmetric
==============  ======================================  =========
count           ``c_ij``                                yes
lift            ``c_ij · N / (n_i · n_j)``              yes
jaccard         ``c_ij / (n_i + n_j − c_ij)``           yes
cosine          ``c_ij / √(n_i · n_j)``                 yes
conditional     ``c_ij / n_i`` = P(j | i)               no
asymmetric      ``c_ij / (n_i^α · n_j^(1−α))``          no
==============  ======================================  =========

where ``c_ij`` counts the baskets holding both, ``n_i`` those holding ``i`` and ``N`` all
baskets. ``asymmetric`` is Aiolli's asymmetric cosine: ``alpha`` (α) 1 is ``conditional``,
0.5 ``cosine``; in between, P(j | i) with a little of the popular items' lead taken off.
Only the ``neighbours`` best of each item are kept, as a sparse matrix.

The counting, normalising and pruning are :mod:`recsys.models.kernels`' (re-exported here),
which the hybrid's basket generator calls too.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.errors import ModelError
from recsys.models.base import (
    BOOLEAN,
    COUNT,
    NO_ITEM,
    PROBABILITY,
    Constraint,
    ItemSimilarity,
    Options,
    Recommender,
    load_arrays,
    load_csr,
    save_arrays,
    save_csr,
)
from recsys.models.kernels import (
    NORMALISATIONS,
    basket_frequencies,
    cooccurrence_counts,
    cooccurrence_matrix,
    keep_top_neighbours,
    normalise_counts,
)

Normalisation = Literal["count", "lift", "jaccard", "cosine", "conditional", "asymmetric"]
SOURCES: tuple[str, ...] = ("basket", "session")

#: Files of a model folder holding the pair counts and the per-item basket counts.
COUNTS_FILE = "counts.npz"
BASKETS_FILE = "baskets.npz"


class CooccurrenceModel(Recommender, ItemSimilarity):
    """Item-to-item co-occurrence from baskets or sessions.

    Parameters
    ----------
    source
        ``"basket"`` (``TrainingData.orders``: bought together) or ``"session"``
        (``TrainingData.sessions``: viewed together).
    normalisation
        One of ``count``, ``lift``, ``jaccard``, ``cosine``, ``conditional``, ``asymmetric``.
    min_support
        Pairs that co-occur in fewer baskets than this are dropped (noise).
    neighbours
        Neighbours kept per item.
    alpha
        The exponent of ``asymmetric`` (in [0, 1]; read by no other normalisation).
    keep_counts
        Keep every pair count (``counts.npz`` in the version) so that the next run can start
        from them and count only the new baskets (:meth:`warm_start`).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix
        ``items × items`` float32; row ``i`` holds the kept neighbours of ``i``.
    counts_ : scipy.sparse.csr_matrix or None
        ``items × items`` int32: baskets holding each pair (every pair, before
        ``min_support``); ``None`` unless ``keep_counts``.
    item_baskets_ : numpy.ndarray or None
        Baskets holding each item (int64); ``None`` unless ``keep_counts``.
    n_baskets_ : int
        Baskets counted.
    """

    name: ClassVar[str] = "cooccurrence"

    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "source": (Options(*SOURCES),),
        "normalisation": (Options(*NORMALISATIONS),),
        "min_support": (COUNT,),
        "neighbours": (COUNT,),
        "alpha": (PROBABILITY,),
        "keep_counts": (BOOLEAN,),
    }

    def __init__(
        self,
        *,
        source: Literal["basket", "session"] = "basket",
        normalisation: Normalisation = "cosine",
        min_support: int = 2,
        neighbours: int = 50,
        alpha: float = 0.5,
        keep_counts: bool = True,
    ) -> None:
        self.source = source
        self.normalisation = normalisation
        self.min_support = min_support
        self.neighbours = neighbours
        self.alpha = alpha
        self.keep_counts = keep_counts

    #: What :meth:`warm_start` carried over, consumed by the next :meth:`fit`.
    _carried: tuple[sp.csr_matrix, NDArray[np.int64], int] | None = None

    def warm_start(
        self, previous: CooccurrenceModel, items: NDArray[np.intp], new_baskets: sp.csr_matrix
    ) -> Self:
        """Make the next :meth:`fit` add ``new_baskets`` to ``previous``'s counts instead of
        counting every basket again.

        Parameters
        ----------
        previous
            The current version's model, fitted with ``keep_counts``.
        items
            For each item of the data the next fit will see, its index in ``previous``
            (``-1``: new since then).
        new_baskets
            ``baskets × items`` (the next fit's item indices): the baskets (orders or
            sessions, as ``source`` says) that ``previous`` did not count.

        Returns
        -------
        Self

        Raises
        ------
        ModelError
            ``previous`` kept no counts (``keep_counts=False``, or a version from before they
            were kept).
        """
        old_counts = getattr(previous, "counts_", None)
        if old_counts is None or previous.item_baskets_ is None:
            raise ModelError(
                f"cooccurrence(source={self.source!r}): the previous version kept no pair "
                "counts to start from (keep_counts=false or an older version)"
            )
        items = np.asarray(items, dtype=np.intp)
        n_items = len(items)
        known = np.flatnonzero(items >= 0)
        # old index -> new index, so the carried counts land in the new item order
        old_to_new = np.full(old_counts.shape[0], -1, dtype=np.intp)
        old_to_new[items[known]] = known
        carried = _renumbered(sp.csr_matrix(old_counts), old_to_new, n_items)
        item_baskets = np.zeros(n_items, dtype=np.int64)
        item_baskets[known] = previous.item_baskets_[items[known]]
        new = sp.csr_matrix(new_baskets)
        if new.shape[1] != n_items:
            raise ModelError(
                f"cooccurrence: the new baskets have {new.shape[1]} item columns, "
                f"the item mapping {n_items}"
            )
        counts = sp.csr_matrix(carried + cooccurrence_counts(new), dtype=np.int64)
        counts.sort_indices()
        self._carried = (
            counts,
            item_baskets + basket_frequencies(new),
            int(previous.n_baskets_) + int(new.shape[0]),
        )
        return self

    @classmethod
    def contract_factory(cls) -> CooccurrenceModel:
        """A small configuration that fits the contract suite's tiny data."""
        return cls(min_support=1)

    def fit(self, data: TrainingData) -> Self:
        """Count and normalise co-occurrences; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints` (an unknown
            ``source`` or ``normalisation``...).
        ModelError
            When the chosen source has no baskets (no orders, or no view sessions).
        """
        self._validate_params()
        if self.source == "basket":
            baskets, what = data.orders, "orders with a purchased item"
        else:
            baskets, what = data.sessions, "sessions with viewed items"
        baskets = sp.csr_matrix(baskets)
        if baskets.shape[0] == 0 or baskets.nnz == 0:
            raise ModelError(
                f"cooccurrence(source={self.source!r}): the training data has no {what}; "
                "nothing co-occurs"
            )
        if self._carried is not None and self._carried[0].shape[0] == data.n_items:
            counts, item_baskets, n_baskets = self._carried
        else:
            counts = cooccurrence_counts(baskets)
            item_baskets, n_baskets = basket_frequencies(baskets), int(baskets.shape[0])
        self._carried = None
        full = normalise_counts(
            counts,
            item_baskets,
            n_baskets,
            self.normalisation,
            min_support=self.min_support,
            alpha=self.alpha,
        )
        self.similarity_ = keep_top_neighbours(full, self.neighbours)
        self.counts_ = sp.csr_matrix(counts, dtype=np.int32) if self.keep_counts else None
        self.item_baskets_ = item_baskets if self.keep_counts else None
        self.n_baskets_ = n_baskets
        return self

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """``history · S``; ``NaN`` for items no history item co-occurs with.

        Items related to nothing the user touched get no score (rather than 0), so
        recommendations stop where the evidence stops and the caller's fallback fills in.
        """
        self._check_fitted("similarity_")
        h = sp.csr_matrix(history, dtype=np.float32)
        product = sp.csr_matrix(h @ self.similarity_)
        out = np.full(product.shape, np.nan, dtype=np.float32)
        coo = product.tocoo()
        out[coo.row, coo.col] = coo.data
        return out

    def similar_items(
        self, items: NDArray[np.intp], k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """The ``k`` best neighbours of each item, padded with ``-1``/``-inf`` (ties: the lower
        item index first).

        Read from each item's stored row only: no items × catalogue array, so asking for every
        item's neighbours (the offers' complements) costs the stored pairs, at any catalogue.
        """
        self._check_fitted("similarity_")
        items = np.asarray(items, dtype=np.intp)
        sim = self.similarity_
        k = max(0, min(int(k), sim.shape[1]))
        idx = np.full((len(items), k), NO_ITEM, dtype=np.intp)
        vals = np.full((len(items), k), -np.inf, dtype=np.float32)
        if k == 0:
            return idx, vals
        for r, i in enumerate(items.tolist()):
            if not 0 <= i < sim.shape[0]:
                continue
            lo, hi = sim.indptr[i], sim.indptr[i + 1]
            cols = sim.indices[lo:hi]
            data = sim.data[lo:hi].astype(np.float32, copy=False)
            keep = np.isfinite(data)
            cols, data = cols[keep], data[keep]
            order = np.lexsort((cols, -data))[:k]
            idx[r, : len(order)] = cols[order]
            vals[r, : len(order)] = data[order]
        return idx, vals

    def save(self, directory: Path) -> None:
        """Write params (JSON) and the neighbour matrix (``.npz``)."""
        directory = self._write_params(directory, "similarity_")
        save_csr(directory / "similarity.npz", self.similarity_)
        if getattr(self, "counts_", None) is not None and self.item_baskets_ is not None:
            save_csr(directory / COUNTS_FILE, self.counts_)
            save_arrays(
                directory / BASKETS_FILE,
                item_baskets=self.item_baskets_,
                n_baskets=np.array([self.n_baskets_], dtype=np.int64),
            )

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        model = cls._from_params(directory, "a co-occurrence model")
        directory = Path(directory)
        # float32 as stored: no copy, the workers share the memory-mapped arrays
        model.similarity_ = load_csr(directory / "similarity.npz").astype(np.float32, copy=False)
        model.counts_, model.item_baskets_, model.n_baskets_ = None, None, 0
        if (directory / COUNTS_FILE).exists() and (directory / BASKETS_FILE).exists():
            # versions before the counts were kept have neither: such a model serves the
            # same, it only cannot be warm-started from
            model.counts_ = load_csr(directory / COUNTS_FILE)
            arrays = load_arrays(directory / BASKETS_FILE)
            model.item_baskets_ = np.asarray(arrays["item_baskets"], dtype=np.int64)
            model.n_baskets_ = int(arrays["n_baskets"][0])
        return model


def _renumbered(m: sp.csr_matrix, old_to_new: NDArray[np.intp], n: int) -> sp.csr_matrix:
    """Square ``m`` with its items renumbered by ``old_to_new`` (``-1``: dropped), ``n × n``
    int64.

    When the renumbering keeps the items' order (the usual case: the vocabulary sorts ids, so
    new items slot in between) the CSR arrays are carried as they are, without the sort of
    every pair that a COO round trip makes (13M pairs: 0.24-0.66 s against 1.1-1.4 s).
    """
    kept = old_to_new[old_to_new >= 0]
    if m.has_canonical_format and (np.diff(kept) > 0).all():
        row_of = np.repeat(old_to_new, np.diff(m.indptr))
        cols = old_to_new[m.indices]
        keep = (row_of >= 0) & (cols >= 0)
        per_row = np.bincount(row_of[keep], minlength=n)
        out = sp.csr_matrix(
            (
                m.data[keep].astype(np.int64),
                cols[keep],
                np.concatenate(([0], np.cumsum(per_row))),
            ),
            shape=(n, n),
        )
        out.has_sorted_indices = True
        return out
    old = m.tocoo()
    keep = (old_to_new[old.row] >= 0) & (old_to_new[old.col] >= 0)
    return sp.csr_matrix(
        (old.data[keep], (old_to_new[old.row[keep]], old_to_new[old.col[keep]])),
        shape=(n, n),
        dtype=np.int64,
    )


__all__ = [
    "BASKETS_FILE",
    "COUNTS_FILE",
    "NORMALISATIONS",
    "SOURCES",
    "CooccurrenceModel",
    "Normalisation",
    "basket_frequencies",
    "cooccurrence_counts",
    "cooccurrence_matrix",
    "keep_top_neighbours",
    "normalise_counts",
]
