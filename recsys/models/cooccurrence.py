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

Which normalisation completes a shop's baskets best depends on the shop: on Online Retail's
orders jaccard leads, on FIMI's, Groceries' and Ta-Feng's the asymmetric cosine
(benchmarks/RESULTS.md, "Forty-fourth session"). With ``choose=True`` the fit tests the
configured normalisation against :data:`CHOICE_CANDIDATES` on the shop's own baskets
(:func:`choose_normalisation`) and keeps the configured one unless another is significantly
better there. An order's items have no order, so the test hides a random one; a session's
do, so it hides the newest and ranks it from the earlier ones: the next-item task that
session lists serve.

The counting, normalising and pruning are :mod:`recsys.models.kernels`' (re-exported here),
which the hybrid's basket generator calls too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

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
    load_json,
    save_arrays,
    save_csr,
    save_json,
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
#: The file of a model folder that says which normalisation ``choose=True`` chose, and why.
CHOICE_FILE = "choice.json"

#: What ``choose=True`` tests beside the configured normalisation: the two symmetric ones
#: that led a shop's basket completion in the benchmark (cosine on none of four shops, but
#: the usual default elsewhere; jaccard on Online Retail's orders).
CHOICE_CANDIDATES: tuple[tuple[str, float], ...] = (("cosine", 0.5), ("jaccard", 0.5))
#: The share of baskets the test holds out; the rest are counted, as the fit counts them all.
CHOICE_HELD_OUT = 0.2
#: At most this many held-out baskets are completed (a random sample of them). With 3,000,
#: Online Retail's orders chose jaccard over the asymmetric cosine at 10 of 10 seeds (p
#: 2e-9 to 7e-3), the other three shops kept it at 10 of 10; 1.2 s (Online Retail) and 0.5 s
#: (Ta-Feng) for the whole test.
CHOICE_BASKETS = 3000
#: Fewer held-out baskets of two or more items than this, and no test: the configured serves.
CHOICE_MIN_BASKETS = 200
#: Hit rate at this depth: the hidden item among the first ``CHOICE_K`` of the list.
CHOICE_K = 10
#: Another normalisation replaces the configured one only when it completes more baskets on
#: the same hidden items at this one-sided p-value (exact McNemar test of the pairs where
#: one hits and the other misses): chance differences between near-equal ones do not switch.
CHOICE_P_VALUE = 0.01


@dataclass(frozen=True)
class NormalisationChoice:
    """What :func:`choose_normalisation` found on a shop's held-out baskets.

    Attributes
    ----------
    normalisation, alpha
        The normalisation the lists use (and ``alpha``, read by ``asymmetric`` only).
    reason
        Why: ``"configured"`` (the configured one scored best, or no other passed the
        test), ``"better"`` (another passed it) or why no test ran.
    baskets
        Held-out baskets completed (0: no test).
    hit_rates
        Hit rate@:data:`CHOICE_K` of each normalisation tried, by its label.
    p_values
        For each other normalisation, the one-sided p-value of its lead over the configured.
    hidden
        The item each tested basket hid: ``"random"``, or ``"newest"`` (a session's newest
        item: the next-item task). A choice saved before sessions hid their newest reads
        ``"random"``, as its test did.
    """

    normalisation: str
    alpha: float
    reason: str
    baskets: int = 0
    hit_rates: dict[str, float] = field(default_factory=dict)
    p_values: dict[str, float] = field(default_factory=dict)
    hidden: str = "random"

    def as_dict(self) -> dict[str, Any]:
        """The choice as JSON-ready data (``choice.json``, the run's manifest)."""
        return asdict(self)


def normalisation_label(normalisation: str, alpha: float) -> str:
    """``"jaccard"``, or ``"asymmetric 0.65"`` for the one that reads ``alpha``."""
    return f"{normalisation} {alpha:g}" if normalisation == "asymmetric" else normalisation


def completion_hits(
    rest: sp.csr_matrix,
    hidden: NDArray[np.intp],
    similarity: sp.csr_matrix,
    popularity: NDArray[np.number],
    k: int,
) -> NDArray[np.bool_]:
    """Whether each basket's ``hidden`` item is among the ``k`` best of its completion list.

    Row ``r`` of ``rest`` is a basket without its hidden item; its list ranks every item by
    the sum of the basket's items' rows of ``similarity`` (as a cart's "bought together"
    does), without the basket's own items, ties by ``popularity`` (higher first). An item
    no row reaches is not in the list (the list stops where the evidence stops), so a hidden
    item without a score is a miss. Sparse throughout: the cost is the lists', not the
    catalogue's.
    """
    rest = sp.csr_matrix(rest, dtype=np.float64)
    own = rest.astype(bool).astype(np.float64)
    scores = sp.csr_matrix(rest @ sp.csr_matrix(similarity, dtype=np.float64))
    scores = sp.csr_matrix(scores - scores.multiply(own))  # the basket's own items are not listed
    scores.eliminate_zeros()
    rows = np.arange(len(hidden))
    mine = np.asarray(scores[rows, hidden], dtype=np.float64).ravel()
    pop = np.asarray(popularity, dtype=np.float64)
    row_of = np.repeat(rows, np.diff(scores.indptr))
    at = mine[row_of]
    ahead = (scores.data > at) | ((scores.data == at) & (pop[scores.indices] > pop[hidden][row_of]))
    rank = 1 + np.bincount(row_of[ahead], minlength=len(hidden))
    return np.asarray((mine > 0) & (rank <= k))


def choose_normalisation(
    baskets: sp.csr_matrix,
    *,
    normalisation: str,
    alpha: float,
    min_support: int,
    neighbours: int,
    counts: sp.csr_matrix | None = None,
    item_baskets: NDArray[np.integer] | None = None,
    hide: NDArray[np.integer] | None = None,
    seed: int = 0,
) -> NormalisationChoice:
    """Test the configured normalisation against :data:`CHOICE_CANDIDATES` on held-out baskets.

    A random :data:`CHOICE_HELD_OUT` of ``baskets`` is held out; the others' pair counts are
    ``counts`` (every basket's, as the fit counted them) minus the held-out ones'. From each of
    up to :data:`CHOICE_BASKETS` held-out baskets of two or more items one item is hidden
    (``hide``'s, or a random one), and each normalisation's lists (pruned to ``neighbours``,
    with ``min_support``, as served) complete the basket from the others
    (:func:`completion_hits`). The best by hit rate replaces the configured one only if its
    lead on the same baskets passes an exact one-sided McNemar test at
    :data:`CHOICE_P_VALUE`.

    Parameters
    ----------
    baskets
        ``baskets × items``.
    normalisation, alpha
        The configured normalisation, which serves unless another is significantly better.
    min_support, neighbours
        As the lists are built.
    counts, item_baskets
        :func:`cooccurrence_counts` (without ``min_support``) and
        :func:`basket_frequencies` of ``baskets``, when the caller has them (a fit does);
        counted here otherwise.
    hide
        Per basket, the item to hide: a session's newest item
        (``TrainingData.session_newest``), so that the test ranks a session's next item from
        the earlier ones, as session lists do. A basket whose item is ``-1`` or not in it is
        not tested. ``None``: a random item of each basket (an order's items have no order).
    seed
        The held-out baskets and hidden items.

    Returns
    -------
    NormalisationChoice
    """
    from scipy.stats import binomtest

    configured = (normalisation, float(alpha))
    b = sp.csr_matrix(baskets)
    b.data = (b.data != 0).astype(np.int64)
    b.eliminate_zeros()
    which = "random" if hide is None else "newest"
    rng = np.random.default_rng(seed)
    held_out = rng.random(b.shape[0]) < CHOICE_HELD_OUT
    held = b[held_out]
    sizes = np.diff(held.indptr)
    held.sort_indices()
    if hide is not None:
        # the position of each held-out basket's item to hide (-1 where it has none)
        wanted = np.asarray(hide, dtype=np.intp)[held_out]
        row = np.repeat(np.arange(held.shape[0]), sizes)
        found = np.flatnonzero(held.indices == wanted[row])
        position = np.full(held.shape[0], -1, dtype=np.intp)
        position[row[found]] = found
        sizes = np.where(position >= 0, sizes, 0)
    tests = np.flatnonzero(sizes >= 2)
    if len(tests) < CHOICE_MIN_BASKETS:
        why = f"no test: {len(tests)} held-out baskets of two or more items"
        return NormalisationChoice(
            *configured, reason=f"{why} (< {CHOICE_MIN_BASKETS})", hidden=which
        )
    if len(tests) > CHOICE_BASKETS:
        tests = np.sort(rng.choice(tests, CHOICE_BASKETS, replace=False))
    test = held[tests]
    if hide is None:
        at = test.indptr[:-1] + rng.integers(np.diff(test.indptr))
    else:
        at = position[tests] - held.indptr[tests] + test.indptr[:-1]
    hidden = test.indices[at].astype(np.intp)
    keep = np.ones(test.nnz, dtype=bool)
    keep[at] = False
    rest = sp.csr_matrix(
        (test.data[keep], test.indices[keep], test.indptr - np.arange(test.shape[0] + 1)),
        shape=test.shape,
    )

    if counts is None:
        counts = cooccurrence_counts(b)
    if item_baskets is None:
        item_baskets = basket_frequencies(b)
    train = sp.csr_matrix(sp.csr_matrix(counts, dtype=np.int64) - cooccurrence_counts(held))
    train.sort_indices()
    train_items = np.asarray(item_baskets, dtype=np.int64) - basket_frequencies(held)
    # only the rows of the items the lists start from, with min_support applied once
    needed = np.zeros(b.shape[1], dtype=bool)
    needed[rest.indices] = True
    row = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    keep = needed[row] & (train.data >= min_support)
    per_row = np.bincount(row[keep], minlength=train.shape[0])
    train = sp.csr_matrix(
        (train.data[keep], train.indices[keep], np.concatenate(([0], np.cumsum(per_row)))),
        shape=train.shape,
    )
    n_train = int(b.shape[0] - held.shape[0])

    tried = [configured] + [c for c in CHOICE_CANDIDATES if c != configured]
    hits: dict[tuple[str, float], NDArray[np.bool_]] = {}
    for norm, a in tried:
        similarity = keep_top_neighbours(
            normalise_counts(train, train_items, n_train, norm, alpha=a), neighbours
        )
        hits[(norm, a)] = completion_hits(rest, hidden, similarity, train_items, CHOICE_K)
    rates = {normalisation_label(*c): float(h.mean()) for c, h in hits.items()}
    p_values: dict[str, float] = {}
    better: list[tuple[float, tuple[str, float]]] = []
    base = hits[configured]
    for c in tried[1:]:
        wins = int(np.count_nonzero(hits[c] & ~base))
        losses = int(np.count_nonzero(base & ~hits[c]))
        p = 1.0
        if wins:
            p = float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)
        p_values[normalisation_label(*c)] = p
        if p < CHOICE_P_VALUE:
            better.append((float(hits[c].mean()), c))
    chosen, reason = (max(better)[1], "better") if better else (configured, "configured")
    return NormalisationChoice(
        *chosen,
        reason=reason,
        baskets=len(hidden),
        hit_rates=rates,
        p_values=p_values,
        hidden=which,
    )


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
    choose
        Test ``normalisation`` against :data:`CHOICE_CANDIDATES` on a held-out fifth of the
        baskets and use another where it is significantly better
        (:func:`choose_normalisation`). A warm start keeps the previous version's choice.
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
    normalisation_, alpha_ : str, float
        The normalisation the lists use: ``normalisation`` and ``alpha``, or what ``choose``
        chose.
    choice_ : NormalisationChoice or None
        What the test found (``None`` without ``choose``).
    """

    name: ClassVar[str] = "cooccurrence"

    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "source": (Options(*SOURCES),),
        "normalisation": (Options(*NORMALISATIONS),),
        "min_support": (COUNT,),
        "neighbours": (COUNT,),
        "alpha": (PROBABILITY,),
        "choose": (BOOLEAN,),
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
        choose: bool = False,
        keep_counts: bool = True,
    ) -> None:
        self.source = source
        self.normalisation = normalisation
        self.min_support = min_support
        self.neighbours = neighbours
        self.alpha = alpha
        self.choose = choose
        self.keep_counts = keep_counts

    #: What :meth:`warm_start` carried over, consumed by the next :meth:`fit`: the counts,
    #: the per-item basket counts, the baskets counted and the previous version's choice.
    _carried: tuple[sp.csr_matrix, NDArray[np.int64], int, NormalisationChoice | None] | None = None
    choice_: NormalisationChoice | None = None

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
        same_test = (previous.normalisation, previous.alpha) == (self.normalisation, self.alpha)
        counts = sp.csr_matrix(carried + cooccurrence_counts(new), dtype=np.int64)
        counts.sort_indices()
        self._carried = (
            counts,
            item_baskets + basket_frequencies(new),
            int(previous.n_baskets_) + int(new.shape[0]),
            # a choice made from another configured normalisation is not this one's
            getattr(previous, "choice_", None) if same_test else None,
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
        carried, self._carried = self._carried, None
        previous: NormalisationChoice | None = None
        if carried is not None and carried[0].shape[0] == data.n_items:
            counts, item_baskets, n_baskets, previous = carried
        else:
            counts = cooccurrence_counts(baskets)
            item_baskets, n_baskets = basket_frequencies(baskets), int(baskets.shape[0])
        self.choice_ = None
        if self.choose:
            hide = None
            if self.source == "session" and len(data.session_newest) == baskets.shape[0]:
                # a session has an order: the test ranks its newest item from the earlier
                # ones, the next-item task that session lists serve
                hide = data.session_newest
            # a warm start's few new baskets would not tell the normalisations apart better
            # than the full run that chose (the hybrid's order tests do the same)
            self.choice_ = previous or choose_normalisation(
                baskets,
                normalisation=self.normalisation,
                alpha=self.alpha,
                min_support=self.min_support,
                neighbours=self.neighbours,
                counts=counts,
                item_baskets=item_baskets,
                hide=hide,
            )
            self.normalisation_, self.alpha_ = self.choice_.normalisation, self.choice_.alpha
        else:
            self.normalisation_, self.alpha_ = self.normalisation, self.alpha
        full = normalise_counts(
            counts,
            item_baskets,
            n_baskets,
            self.normalisation_,
            min_support=self.min_support,
            alpha=self.alpha_,
        )
        self.similarity_ = keep_top_neighbours(full, self.neighbours)
        self.counts_ = sp.csr_matrix(counts, dtype=np.int32) if self.keep_counts else None
        self.item_baskets_ = item_baskets if self.keep_counts else None
        self.n_baskets_ = n_baskets
        return self

    def fit_report(self) -> dict[str, Any] | None:
        """``{"choice": ...}``: what ``choose`` found (:class:`NormalisationChoice`)."""
        return None if self.choice_ is None else {"choice": self.choice_.as_dict()}

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
        if self.choice_ is not None:
            save_json(directory / CHOICE_FILE, self.choice_.as_dict())
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
        model.normalisation_, model.alpha_ = model.normalisation, model.alpha
        if (directory / CHOICE_FILE).exists():
            choice = NormalisationChoice(**load_json(directory / CHOICE_FILE))
            model.choice_ = choice
            model.normalisation_, model.alpha_ = choice.normalisation, choice.alpha
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
    "CHOICE_CANDIDATES",
    "CHOICE_FILE",
    "COUNTS_FILE",
    "NORMALISATIONS",
    "SOURCES",
    "CooccurrenceModel",
    "Normalisation",
    "NormalisationChoice",
    "basket_frequencies",
    "choose_normalisation",
    "completion_hits",
    "cooccurrence_counts",
    "cooccurrence_matrix",
    "keep_top_neighbours",
    "normalisation_label",
    "normalise_counts",
]
