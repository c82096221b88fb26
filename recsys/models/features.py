"""Candidate generation and pair features for the hybrid model.

The hybrid ranks ``(user, item)`` pairs in two stages. :class:`GeneratorState` holds every
signal stage 1 and 2 need, learned from one slice of the event history (everything before a
time): purchase statistics per user-item pair (distinct orders, first/last purchase day, the
usual interval), per-user and per-item statistics, ALS factors, an EASE item-item matrix
(skipped above ``max_ease_items``) and a basket co-occurrence matrix. :meth:`GeneratorState.pairs`
turns a batch of users into candidate pairs and a feature matrix, fully vectorised over
each chunk of users: no Python loop runs per user or per item. Above ``SPARSE_ABOVE_ITEMS``
items it never builds a users × items array (sparse co-occurrence rows, ALS scored in blocks of
users) and returns exactly what the dense path would.

The same code builds the state twice in :meth:`HybridModel.fit
<recsys.models.hybrid.HybridModel.fit>`: once from the events before an internal cut (the
ranker learns from what happened after it) and once from all events (served), so training
and serving features mean exactly the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.concurrency import beside
from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY
from recsys.models.base import csr_rows, load_arrays, save_arrays
from recsys.models.generator_scores import (
    als_block_top,
    als_blocks,
    als_scores,
    ease_scores,
    ease_scores_blocks,
)
from recsys.models.kernels import (
    EaseStart,
    als_fit,
    als_fold_in,
    als_item_gram,
    cooccurrence_neighbours,
    ease_input_rows,
    ease_solve_from,
    order_within_rows,
)
from recsys.models.pair_keys import (
    few_rows_product,
    merge_keys,
    nonzero_cells,
    positive_union,
    state_positions,
    stats_keys,
    top_sparse_rows,
    values_at_keys,
)
from recsys.models.top_entries import (
    rank_top,
    rank_top_sparse,
    top_entries_chunked,
)

if TYPE_CHECKING:
    from recsys.retrieval.index import ItemIndex


#: Generators that can put an item on a user's candidate list, in flag-bit order.
GENERATORS = ("bought_before", "als", "ease", "cooccurrence", "popular")

#: Column names of the feature matrix built by :meth:`GeneratorState.pairs`.
FEATURES = (
    "als_score",
    "als_rank",
    "ease_score",
    "ease_rank",
    "cooc_score",
    "cooc_rank",
    "n_orders",
    "days_since_last",
    "due_ratio",
    "interval_days",
    "bought_before",
    "user_n_orders",
    "user_n_items",
    "user_tenure_days",
    "user_recency_days",
    "item_pop_recent",
    "item_trend",
    "item_price",
    "item_pop_total",
    "pop_rank",
    "share_of_user_orders",
    "decayed_share",
    "repeat_rank",
    "item_share_recent",
)
#: Each feature's column in the feature matrix.
FEATURE_COLUMN = {name: i for i, name in enumerate(FEATURES)}

#: Weight of one non-purchase event in the generators' signal matrix (a purchase order is 1).
SIGNAL_WEIGHTS = {"purchase": 1.0, "cart": 0.3, "view": 0.1}

#: Above this many items :meth:`GeneratorState.pairs` never builds a users × items array: it
#: ranks co-occurrence on sparse rows and scores ALS in blocks of users (same answer, see there).
#: Measured (benchmarks/RESULTS.md, "Sparse candidates from 3,000 items"), 4,096 customers'
#: pairs: Ta-Feng (23,812 items) 5.4-6.8 s sparse against 8.2-11.3 s dense, Online Retail
#: (3,877 items, EASE included) 4.0-4.1 s against 4.0-4.2 s; the dense path's users × items
#: temporaries cost 6-8 s of system time (page faults) at Ta-Feng's size, the sparse one's 1.
SPARSE_ABOVE_ITEMS = 3_000


#: Batches of at most this many users (a live request is one) multiply their rows with the
#: co-occurrence matrix by :func:`~recsys.models.pair_keys.few_rows_product`, whose cost
#: follows their entries, not the catalogue: scipy's product and a pass through CSC allocate
#: items-long arrays per call, 3.5 ms of a live hybrid request at 10^6 items
#: (benchmarks/RESULTS.md).
FEW_ROWS = 64


@dataclass(frozen=True)
class GeneratorSettings:
    """Sizes of the candidate lists and of the generators (from the hybrid's parameters).

    These defaults are the hybrid's (:class:`~recsys.models.hybrid.HybridModel` takes its
    parameter defaults from here). The ALS ones differ from
    :class:`~recsys.models.als.ALSModel`'s on purpose: the generators factorise
    :func:`collaborative_signal` (``log1p`` of distinct orders, about 0.7 for one purchase),
    where ALSModel factorises the interaction weights (10 a purchase, hence its ``alpha``
    0.1), so the confidence scale ``als_alpha`` is 1 here; ``als_regularization`` 0.05 was
    compared with ALSModel's 0.01 by rolling-origin evaluation (``benchmarks/RESULTS.md``).
    The kernels are the same (:mod:`recsys.models.kernels`).
    """

    n_bought: int = 100
    n_als: int = 50
    n_ease: int = 50
    n_cooc: int = 50
    n_popular: int = 20
    factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 0.05
    als_alpha: float = 1.0
    als_warm_iterations: int = 0
    ease_lambda: float = 500.0
    max_ease_items: int = 15_000
    ease_most_bought: bool = False
    cooc_neighbours: int = 100
    popularity_half_life_days: float = 30.0
    repeat_decay: float = 0.9
    seed: int = 0


class Factors(Protocol):
    """ALS factors to start from (a :class:`GeneratorState`, or a version's mapped onto
    another vocabulary by :meth:`~recsys.models.hybrid.HybridModel.warm_start`)."""

    @property
    def user_factors(self) -> NDArray[np.float32]: ...

    @property
    def item_factors(self) -> NDArray[np.float32]: ...


@dataclass
class EventArrays:
    """The columns of the training events the generators need, in index space."""

    user: NDArray[np.intp]
    item: NDArray[np.intp]
    day: NDArray[np.float64]  # days since the epoch
    order: NDArray[np.intp]  # order code; purchases without an order id: one per user and day
    purchase: NDArray[np.bool_]
    weight: NDArray[np.float64]  # SIGNAL_WEIGHTS per event type
    price: NDArray[np.float64]

    @classmethod
    def from_training_data(cls, data: TrainingData) -> EventArrays:
        """Keep the events whose user and item are in the vocabularies."""
        ev = data.events
        keep = (data.event_user >= 0) & (data.event_item >= 0)
        return cls.from_columns(
            user=np.asarray(data.event_user, dtype=np.intp)[keep],
            item=np.asarray(data.event_item, dtype=np.intp)[keep],
            ts=np.asarray(ev.ts, dtype=np.int64)[keep],
            event_type=np.asarray(ev.event_type, dtype=object)[keep],
            order_id=np.asarray(ev.order_id, dtype=object)[keep],
            price=np.asarray(ev.price, dtype=np.float64)[keep],
        )

    @classmethod
    def from_columns(
        cls,
        *,
        user: NDArray[np.intp],
        item: NDArray[np.intp],
        ts: NDArray[np.int64],
        event_type: NDArray[np.object_],
        order_id: NDArray[np.object_],
        price: NDArray[np.float64],
    ) -> EventArrays:
        """From events in index space (``ts`` in microseconds, ``order_id`` ``None`` where
        the event has none)."""
        day = ts / MICROS_PER_DAY
        missing = np.array([o is None for o in order_id], dtype=bool)
        if missing.any():
            # A purchase without an order id: everything the user bought that day is one order.
            whole_days = (ts[missing] // MICROS_PER_DAY).astype(np.int64)
            order_id = order_id.copy()
            order_id[missing] = [
                f"\0{u}:{d}" for u, d in zip(user[missing], whole_days, strict=True)
            ]
        weight = np.zeros(len(event_type), dtype=np.float64)
        for name, w in SIGNAL_WEIGHTS.items():
            weight[event_type == name] = w
        return cls(
            user=user,
            item=item,
            day=day,
            order=_string_codes(order_id).astype(np.intp),
            purchase=event_type == "purchase",
            weight=weight,
            price=price,
        )

    def before(self, day: float) -> EventArrays:
        """The events strictly before ``day``."""
        m = self.day < day
        return EventArrays(**{f.name: getattr(self, f.name)[m] for f in fields(self)})


@dataclass
class StateCounts:
    """What a :class:`GeneratorState` counts from the events, before ALS and EASE solve:
    :meth:`GeneratorState.build` counts it in memory, the Spark engine on a cluster."""

    #: user-item distinct purchase orders (CSR, sorted indices); the arrays below are
    #: aligned with its data
    stats: sp.csr_matrix
    first_day: NDArray[np.float64]
    last_day: NDArray[np.float64]
    decayed_share: NDArray[np.float64]
    user_n_orders: NDArray[np.float64]
    user_first_day: NDArray[np.float64]  # NaN: no purchase
    user_last_day: NDArray[np.float64]
    #: per item, over the distinct (user, item, order) purchases: decayed, in the last 30
    #: days, in the 90 days before those, in all
    item_pop_recent: NDArray[np.float64]
    item_recent: NDArray[np.float64]
    item_before: NDArray[np.float64]
    item_pop_total: NDArray[np.float64]
    item_price: NDArray[np.float64]  # mean of the events' prices, NaN: none
    signal: sp.csr_matrix  # :func:`collaborative_signal`


class StateBuilder(Protocol):
    """Builds the generators of a training run (:meth:`HybridModel.fit
    <recsys.models.hybrid.HybridModel.fit>` calls it once per label window and once at the
    end): :class:`LocalStates` from events in memory, the Spark engine's from a cluster."""

    @property
    def n_users(self) -> int: ...

    @property
    def n_items(self) -> int: ...

    def __call__(
        self,
        before: float | None,
        as_of_day: float,
        settings: GeneratorSettings,
        warm_from: Factors | None,
        ease_from: EaseStart | None = None,
        notes: list[str] | None = None,
    ) -> GeneratorState:
        """The generators learned from the events before day ``before`` (``None``: all of
        them), as of ``as_of_day``; the other arguments are :meth:`GeneratorState.build`'s."""
        ...


@dataclass(frozen=True)
class LocalStates:
    """:class:`StateBuilder` over events in memory: :meth:`GeneratorState.build`."""

    events: EventArrays
    n_users: int
    n_items: int
    threads: int = 1

    def __call__(
        self,
        before: float | None,
        as_of_day: float,
        settings: GeneratorSettings,
        warm_from: Factors | None,
        ease_from: EaseStart | None = None,
        notes: list[str] | None = None,
    ) -> GeneratorState:
        """See :class:`StateBuilder`."""
        return GeneratorState.build(
            self.events if before is None else self.events.before(before),
            self.n_users,
            self.n_items,
            as_of_day,
            settings,
            warm_from=warm_from,
            ease_from=ease_from,
            notes=notes,
            threads=self.threads,
        )


@dataclass
class GeneratorState:
    """Everything the candidate generators and the feature builder learned from one slice."""

    n_users: int
    n_items: int
    as_of_day: float
    # user-item purchase stats: CSR pattern (sorted indices) + arrays aligned with its data
    stats: sp.csr_matrix  # data = number of distinct orders
    first_day: NDArray[np.float64]
    last_day: NDArray[np.float64]
    decayed_share: NDArray[np.float64]  # see :func:`decayed_order_share`
    user_n_orders: NDArray[np.float64]
    user_n_items: NDArray[np.float64]
    user_first_day: NDArray[np.float64]
    user_last_day: NDArray[np.float64]
    item_pop_recent: NDArray[np.float64]
    item_trend: NDArray[np.float64]
    item_price: NDArray[np.float64]
    item_pop_total: NDArray[np.float64]
    popular: NDArray[np.intp]  # the most popular items (decayed), best first
    user_factors: NDArray[np.float32]
    item_factors: NDArray[np.float32]
    ease: NDArray[np.float32] | None  # items × items, or None when the catalogue is too big
    cooc: sp.csr_matrix  # items × items, row j = items bought with j (cosine), diagonal 0
    # diag(P) of the EASE solve, a warm start's way back to P (None: no EASE, or written
    # before it was kept)
    ease_diagonal: NDArray[np.float64] | None = None
    # the rows the EASE solve read (its binary pattern), for a warm start to find which
    # changed (None: no EASE, or written before they were kept)
    ease_rows: sp.csr_matrix | None = None
    # the items ``ease`` is over, ascending, when the catalogue is above max_ease_items and
    # EASE was solved on its most bought ones (None: every item, or no EASE)
    ease_items: NDArray[np.intp] | None = None

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ev: EventArrays,
        n_users: int,
        n_items: int,
        as_of_day: float,
        settings: GeneratorSettings,
        *,
        warm_from: Factors | None = None,
        ease_from: EaseStart | None = None,
        notes: list[str] | None = None,
        threads: int = 1,
    ) -> GeneratorState:
        """Learn every generator from the events ``ev`` (all before ``as_of_day``).

        With ``warm_from`` (factors of the same users and items, learned from fewer events)
        and a positive ``settings.als_warm_iterations``, ALS starts from its factors and runs
        that many sweeps instead of ``als_iterations`` from random ones. With ``ease_from``
        the EASE generator corrects that solution instead of solving again
        (:func:`~recsys.models.kernels.ease_solve_from`); why it could not is appended to
        ``notes``.

        From 2 ``threads`` (a training run's), the basket co-occurrence is counted on a
        thread of its own while ALS and EASE solve: its sparse product is one thread's
        work, theirs leaves part of the cores idle (Online Retail: 0.78x the time of the
        three one after another). The state is the same.
        """
        p = ev.purchase
        pu, pi, po, pd = ev.user[p], ev.item[p], ev.order[p], ev.day[p]
        # distinct (user, item, order) triples: one purchase of an item per order
        key = (pu.astype(np.int64) * n_items + pi) * (int(po.max(initial=0)) + 1) + po
        _, first = np.unique(key, return_index=True)
        tu, ti, tday = pu[first], pi[first], pd[first]
        stats = sp.csr_matrix(
            (np.ones(len(tu)), (tu, ti)), shape=(n_users, n_items), dtype=np.float64
        )
        stats.sum_duplicates()
        stats.sort_indices()
        flat = stats_keys(stats, n_items)
        pos = np.searchsorted(flat, tu.astype(np.int64) * n_items + ti)
        first_day = np.full(stats.nnz, np.inf)
        last_day = np.full(stats.nnz, -np.inf)
        np.minimum.at(first_day, pos, tday)
        np.maximum.at(last_day, pos, tday)
        decayed_share = decayed_order_share(
            tu, po[first], tday, pos, stats.nnz, n_users, settings.repeat_decay
        )

        # users: distinct orders, first/last purchase
        _, ord_first = np.unique(po, return_index=True)
        user_n_orders = np.bincount(pu[ord_first], minlength=n_users).astype(np.float64)
        user_first_day = np.full(n_users, np.nan)
        user_last_day = np.full(n_users, np.nan)
        if len(pu):
            uf = np.full(n_users, np.inf)
            ul = np.full(n_users, -np.inf)
            np.minimum.at(uf, pu, pd)
            np.maximum.at(ul, pu, pd)
            seen = np.isfinite(uf)
            user_first_day[seen] = uf[seen]
            user_last_day[seen] = ul[seen]

        # items: decayed popularity (distinct user-orders), the last 30 days, the 90 before
        age = np.maximum(as_of_day - tday, 0.0)
        decay = 0.5 ** (age / settings.popularity_half_life_days)
        price_sum = np.bincount(ev.item, weights=np.nan_to_num(ev.price), minlength=n_items)
        price_n = np.bincount(ev.item, weights=np.isfinite(ev.price), minlength=n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            item_price = np.where(price_n > 0, price_sum / np.maximum(price_n, 1), np.nan)
        counts = StateCounts(
            stats=stats,
            first_day=first_day,
            last_day=last_day,
            decayed_share=decayed_share,
            user_n_orders=user_n_orders,
            user_first_day=user_first_day,
            user_last_day=user_last_day,
            item_pop_recent=np.bincount(ti, weights=decay, minlength=n_items).astype(np.float64),
            item_recent=np.bincount(ti, minlength=n_items, weights=age < 30).astype(np.float64),
            item_before=np.bincount(
                ti, weights=(age >= 30) & (age < 120), minlength=n_items
            ).astype(np.float64),
            item_pop_total=np.bincount(ti, minlength=n_items).astype(np.float64),
            item_price=item_price,
            # the collaborative signal: purchase orders, plus carts and views at a lower weight
            signal=collaborative_signal(ev, stats),
        )
        # basket co-occurrence (cosine), kept sparse: the top neighbours of each item
        baskets = sp.csr_matrix(
            (np.ones(len(ti), np.float32), (po[first], ti)),
            shape=(int(po.max(initial=-1)) + 1, n_items),
        )
        cooc_of = partial(
            cooccurrence_neighbours,
            baskets,
            normalisation="cosine",
            min_support=1,
            neighbours=settings.cooc_neighbours,
        )
        return cls.from_counts(
            counts,
            cooc_of,
            as_of_day,
            settings,
            warm_from=warm_from,
            ease_from=ease_from,
            notes=notes,
            beside_solves=threads >= 2,
        )

    @classmethod
    def from_counts(
        cls,
        counts: StateCounts,
        cooc_of: Callable[[], sp.csr_matrix],
        as_of_day: float,
        settings: GeneratorSettings,
        *,
        warm_from: Factors | None = None,
        ease_from: EaseStart | None = None,
        notes: list[str] | None = None,
        beside_solves: bool = False,
    ) -> GeneratorState:
        """The state from what was counted of the events (:meth:`build`'s first part, or
        the Spark engine's jobs): ALS and EASE solve ``counts.signal`` here, and
        ``cooc_of`` gives the co-occurrence neighbours (``beside_solves``: on a thread of
        its own while they solve). See :meth:`build` for the other arguments."""
        stats, signal = counts.stats, counts.signal
        n_users, n_items = stats.shape
        item_trend = (counts.item_recent + 1.0) / (counts.item_before / 3.0 + 1.0)
        popular = np.argsort(
            -(counts.item_pop_recent + 1e-9 * counts.item_pop_total), kind="stable"
        )
        popular = popular[: settings.n_popular].astype(np.intp)
        with beside(cooc_of, beside_solves) as cooc_result:
            warm = (
                warm_from is not None
                and settings.als_warm_iterations > 0
                and warm_from.user_factors.shape == (n_users, settings.factors)
                and warm_from.item_factors.shape == (n_items, settings.factors)
            )
            user_factors, item_factors = als_fit(
                signal,
                factors=settings.factors,
                regularization=settings.als_regularization,
                alpha=settings.als_alpha,
                iterations=settings.als_warm_iterations if warm else settings.als_iterations,
                seed=settings.seed,
                threads=0,
                init=(warm_from.user_factors, warm_from.item_factors)
                if warm and warm_from is not None
                else None,
            )
            ease = ease_diagonal = ease_rows = None
            ease_input, ease_items = signal, ease_subset(signal, counts.item_pop_total, settings)
            if ease_items is not None:
                # the solve and its warm start see the most bought items only
                ease_input = sp.csr_matrix(signal[:, ease_items])
                if ease_from is not None:
                    ease_from = replace(ease_from, items=ease_from.items[ease_items])
            if 0 < ease_input.shape[1] <= settings.max_ease_items:
                ease, ease_diagonal, note = ease_solve_from(
                    ease_input, regularization=settings.ease_lambda, binary=True, start=ease_from
                )
                ease_rows = ease_input_rows(ease_input, binary=True)
                if note is not None and notes is not None:
                    notes.append(f"EASE generator {note}")
        cooc = cooc_result()

        return cls(
            n_users=n_users,
            n_items=n_items,
            as_of_day=as_of_day,
            stats=stats,
            first_day=counts.first_day,
            last_day=counts.last_day,
            decayed_share=counts.decayed_share,
            user_n_orders=counts.user_n_orders,
            user_n_items=np.diff(stats.indptr).astype(np.float64),
            user_first_day=counts.user_first_day,
            user_last_day=counts.user_last_day,
            item_pop_recent=counts.item_pop_recent,
            item_trend=item_trend,
            item_price=counts.item_price,
            item_pop_total=counts.item_pop_total,
            popular=popular,
            user_factors=user_factors,
            item_factors=item_factors,
            ease=ease,
            cooc=cooc,
            ease_diagonal=ease_diagonal,
            ease_rows=ease_rows,
            ease_items=ease_items if ease is not None else None,
        )

    # -- stage 1 + features -----------------------------------------------------------------

    def pairs(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        now_day: float,
        settings: GeneratorSettings,
        index: ItemIndex | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32], NDArray[np.uint8]]:
        """Candidates and their features for a batch of users.

        Above :data:`SPARSE_ABOVE_ITEMS` items the candidates come from sparse rows and blocks
        of users (memory bounded by :data:`~recsys.models.generator_scores.ALS_BLOCK_BYTES`,
        not by users × items); the answer is the same, pair for pair and bit for bit, as the
        dense path's, unless ``index`` is given.

        Parameters
        ----------
        users
            User indices of this state (``-1`` or beyond the state's users = unknown).
        history
            ``len(users) × n_items`` interactions (live events included); unknown users are
            folded in from it.
        now_day
            The request time in days since the epoch.
        settings
            Sizes of the candidate lists.
        index
            An approximate index over :attr:`item_factors` (the version's, from
            ``[ann] min_items`` items): the sparse path then takes each user's ALS list from it
            and scores the other generators' candidates by one dot product per pair, so a
            request touches no catalogue-long array. The lists are then approximate (the
            index's recall) and the scores differ from the dense product in the last bits.

        Returns
        -------
        rows, items, features, sources
            Per candidate pair, sorted by row then item: its row in ``users``, the item, the
            feature row (:data:`FEATURES` order) and a bit mask of the :data:`GENERATORS` that
            proposed it.
        """
        n, m = len(users), self.n_items
        users = np.asarray(users, dtype=np.intp)
        known = (users >= 0) & (users < self.n_users)
        safe = np.where(known, users, 0)
        hist = sp.csr_matrix(history, dtype=np.float32)
        if hist.shape != (n, m):
            raise ValueError(f"history has shape {hist.shape}, expected {(n, m)}")

        # purchase stats of the batch (known users only; unknown users have none)
        stats_b = csr_rows(self.stats, safe)
        if not known.all():
            # the unknown users' rows emptied (not a product with a diagonal matrix: scipy's
            # sparse product allocates an items-long work array per call)
            lengths = np.diff(stats_b.indptr)
            counts = np.where(known, lengths, 0)
            keep = np.repeat(known, lengths)
            stats_b = sp.csr_matrix(
                (
                    stats_b.data[keep],
                    stats_b.indices[keep],
                    np.concatenate([[0], np.cumsum(counts)]),
                ),
                shape=stats_b.shape,
            )
        stats_b.eliminate_zeros()
        stats_b.sort_indices()
        # what the generators condition on: purchases, plus whatever the live history holds
        basis = positive_union(stats_b, hist)
        has_any = np.diff(basis.indptr) > 0

        # ALS: stored factors for known users, folded in from the history for the others (the
        # fit's own weighted system, on the binary basis: the history's scale is the caller's)
        uf = self.user_factors[safe].copy()
        fold = ~known & has_any
        if fold.any():
            uf[fold] = als_fold_in(
                basis[fold],
                self.item_factors,
                self._item_gram(settings.als_regularization),
                alpha=settings.als_alpha,
            )
        uf[~known & ~has_any] = 0.0
        # bought before: the most-ordered items (capped, for wholesalers with huge histories)
        bought = top_sparse_rows(stats_b, settings.n_bought)
        hr, hc = nonzero_cells(hist)

        if m > SPARSE_ABOVE_ITEMS:
            # a known user's ALS query is their stored vector: the index may have kept its
            # answer (ItemIndex.keep_answers); a folded-in vector has no key
            row_users = np.where(known, users, -1) if index is not None else None
            rows, items, src, gen = self._sparse_candidates(
                basis, has_any, uf, bought, (hr, hc), settings, index, row_users
            )
        else:
            rows, items, src, gen = self._dense_candidates(
                basis, has_any, uf, bought, (hr, hc), settings
            )
        feats = self._features(rows, items, gen, stats_b, known, safe, now_day)
        return rows, items, feats, src

    @cached_property
    def _recent_total(self) -> float:
        """The items' recent popularity summed (kept: an items-long sum per request)."""
        return max(float(self.item_pop_recent.sum()), 1e-12)

    @cached_property
    def _pop_rank(self) -> NDArray[np.int32]:
        """Each item's place in :attr:`popular`, ``len(popular)`` for the others (kept)."""
        rank = np.full(self.n_items, len(self.popular), dtype=np.int32)
        rank[self.popular] = np.arange(len(self.popular), dtype=np.int32)
        return rank

    @cached_property
    def tie_rank(self) -> NDArray[np.intp]:
        """Each item's place when generator scores are equal: the more popular first, by the
        order of the popular generator (decayed popularity, then all-time), then the item
        index. A deterministic order that means something: which of equally scored items a
        list gets used to depend on where introselect left them."""
        order = np.lexsort((-self.item_pop_total, -self.item_pop_recent))
        rank = np.empty(self.n_items, dtype=np.intp)
        rank[order] = np.arange(self.n_items, dtype=np.intp)
        return rank

    @cached_property
    def ease_columns(self) -> NDArray[np.intp] | None:
        """Each item's column in :attr:`ease`, ``-1`` for the others (``None``: every item
        has its own column, or there is no EASE; kept)."""
        if self.ease_items is None:
            return None
        pos = np.full(self.n_items, -1, dtype=np.intp)
        pos[self.ease_items] = np.arange(len(self.ease_items), dtype=np.intp)
        return pos

    @cached_property
    def _ease_tie(self) -> NDArray[np.intp]:
        """:attr:`tie_rank` of the columns of :attr:`ease`, as a permutation of them (kept)."""
        if self.ease_items is None:
            return self.tie_rank
        rank = np.empty(len(self.ease_items), dtype=np.intp)
        rank[np.argsort(self.tie_rank[self.ease_items], kind="stable")] = np.arange(
            len(self.ease_items), dtype=np.intp
        )
        return rank

    def _ease_basis(self, basis: sp.csr_matrix) -> sp.csr_matrix:
        """``basis`` on the columns of :attr:`ease` (itself when EASE is over every item):
        one pass over its entries, nothing items-long (a live request is one row)."""
        pos, sub = self.ease_columns, self.ease_items
        if pos is None or sub is None:
            return basis
        col = pos[basis.indices]
        keep = col >= 0
        # the position map is increasing, so each row's kept columns stay sorted
        kept = np.concatenate([[0], np.cumsum(keep)])[basis.indptr]
        return sp.csr_matrix((basis.data[keep], col[keep], kept), shape=(basis.shape[0], len(sub)))

    def _ease_at(
        self, scores: NDArray[np.float32], rows: NDArray[np.intp], items: NDArray[np.intp]
    ) -> NDArray[np.float32]:
        """The EASE scores of pairs from ``rows × ease columns`` scores; NaN for an item
        outside :attr:`ease_items` (it has no EASE score, as in a state without EASE)."""
        pos = self.ease_columns
        if pos is None:
            return scores[rows, items]
        col = pos[items]
        out = np.full(len(rows), np.nan, dtype=np.float32)
        ok = col >= 0
        out[ok] = scores[rows[ok], col[ok]]
        return out

    def _dense_candidates(
        self,
        basis: sp.csr_matrix,
        has_any: NDArray[np.bool_],
        uf: NDArray[np.float32],
        bought: tuple[NDArray[np.intp], NDArray[np.intp]],
        live: tuple[NDArray[np.intp], NDArray[np.intp]],
        settings: GeneratorSettings,
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.uint8], _GeneratorColumns]:
        """The candidates through users × items arrays (fastest on small catalogues)."""
        n, m = basis.shape[0], self.n_items
        als = als_scores(uf, self.item_factors)
        ease = None
        if self.ease is not None:
            ease = ease_scores_blocks(self._ease_basis(basis), self.ease, m)
            if self.ease_items is not None:
                # items outside the EASE list have no score: never listed, NaN as a feature
                full = np.full((n, m), np.nan, dtype=np.float32)
                full[:, self.ease_items] = ease
                ease = full
        cooc = np.asarray((basis @ self.cooc).todense(), dtype=np.float32)

        mask = np.zeros((n, m), dtype=np.uint8)
        mask[bought[0], bought[1]] |= 1
        mask[live[0], live[1]] |= 1
        active = has_any[:, None]
        tie = self.tie_rank
        als_rank = rank_top(als, settings.n_als, active, tie)
        mask[als_rank < settings.n_als] |= 2
        if ease is not None:
            ease_rank = rank_top(ease, settings.n_ease, active, tie)
            mask[ease_rank < settings.n_ease] |= 4
        else:
            ease_rank = np.full((n, m), settings.n_ease, dtype=np.int32)
        cooc_rank = rank_top(np.where(cooc > 0, cooc, -np.inf), settings.n_cooc, active, tie)
        mask[cooc_rank < settings.n_cooc] |= 8
        # popular fills a personal list; a user with no history at all gets no row (the
        # caller's fallback says which list it served instead)
        mask[np.ix_(has_any, self.popular)] |= 16

        rows, items = np.nonzero(mask)
        rows = rows.astype(np.intp)
        items = items.astype(np.intp)
        gen = _GeneratorColumns(
            als_score=als[rows, items],
            als_rank=als_rank[rows, items],
            ease_score=ease[rows, items] if ease is not None else None,
            ease_rank=ease_rank[rows, items],
            cooc_score=cooc[rows, items],
            cooc_rank=cooc_rank[rows, items],
        )
        return rows, items, mask[rows, items], gen

    def _sparse_candidates(
        self,
        basis: sp.csr_matrix,
        has_any: NDArray[np.bool_],
        uf: NDArray[np.float32],
        bought: tuple[NDArray[np.intp], NDArray[np.intp]],
        live: tuple[NDArray[np.intp], NDArray[np.intp]],
        settings: GeneratorSettings,
        index: ItemIndex | None = None,
        row_users: NDArray[np.intp] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.uint8], _GeneratorColumns]:
        """The same candidates as :meth:`_dense_candidates` without a users × items array.

        Co-occurrence is ranked on the sparse rows of ``basis @ cooc``; ALS (and EASE, when
        the state has it) is scored and ranked one block of users at a time, the blocks the
        dense path's product uses, and each pair's scores are read from its block. With an
        ``index`` the ALS lists come from it instead (see :meth:`pairs`), searched under
        ``row_users`` (per row, the user whose stored vector it is, or -1).
        """
        n, m = basis.shape[0], self.n_items
        if n <= FEW_ROWS:
            # its rows unsorted, as a product's: sorted below
            cooc = few_rows_product(basis, self.cooc)
        else:
            cooc = sp.csr_matrix(basis @ self.cooc, dtype=np.float32)
            # A product's rows come in no column order. Through CSC and back, each conversion
            # a linear pass, they come out sorted: 2,048 Ta-Feng customers' rows (505k entries
            # per 256) took about 0.10 s that way against 0.15-0.19 s sorting every row
            # (csr_sort_indices); the passes are items-long, which a few rows do not amortise.
            cooc = cooc.tocsc().tocsr()
        # a product has no duplicates: sum_duplicates only checks (and sorts the few rows)
        cooc.sum_duplicates()
        cooc.sort_indices()
        tie = self.tie_rank
        c_rows, c_items, c_ranks = rank_top_sparse(cooc, settings.n_cooc, has_any, tie)
        pop_rows = np.repeat(np.flatnonzero(has_any), len(self.popular))
        pop_items = np.tile(self.popular, int(has_any.sum()))
        # everything but ALS and EASE is known before the blocks: merged once, sliced per block
        pre_keys, pre_bits = merge_keys(
            m,
            (bought[0], bought[1], 1),
            (live[0], live[1], 1),
            (c_rows, c_items, 8),
            (pop_rows, pop_items, 16),
        )
        keys_l: list[NDArray[np.int64]] = []
        bits_l: list[NDArray[np.uint8]] = []
        als_l: list[NDArray[np.float32]] = []
        als_rank_l: list[NDArray[np.int32]] = []
        ease_l: list[NDArray[np.float32]] = []
        ease_rank_l: list[NDArray[np.int32]] = []
        ease_basis = self._ease_basis(basis) if self.ease is not None else None
        for start, stop in als_blocks(n, m):
            block = als_block_top(
                uf[start:stop],
                self.item_factors,
                settings.n_als,
                has_any[start:stop],
                tie,
                index,
                None if row_users is None else row_users[start:stop],
            )
            parts = [(block.rows + start, block.items, 2)]
            ease_block = None
            if self.ease is not None and ease_basis is not None:
                ease_block = ease_scores(ease_basis[start:stop], self.ease)
                er, ei, e_rank = top_entries_chunked(
                    ease_block, settings.n_ease, has_any[start:stop], self._ease_tie
                )
                if self.ease_items is not None:
                    ei = self.ease_items[ei]
                parts.append((er + start, ei, 4))
            lo, hi = np.searchsorted(pre_keys, [start * m, stop * m])
            keys, bits = merge_keys(m, *parts, keys=pre_keys[lo:hi], bits=pre_bits[lo:hi])
            local = (keys // m - start).astype(np.intp)
            it = (keys % m).astype(np.intp)
            keys_l.append(keys)
            bits_l.append(bits)
            als_l.append(block.at(local, it))
            als_rank_l.append(
                values_at_keys(
                    m, block.rows + start, block.items, block.ranks, keys, settings.n_als
                )
            )
            if ease_block is not None:
                ease_l.append(self._ease_at(ease_block, local, it))
                ease_rank_l.append(values_at_keys(m, er + start, ei, e_rank, keys, settings.n_ease))
        keys = _concat(keys_l, np.int64)
        rows = (keys // m).astype(np.intp)
        items = (keys % m).astype(np.intp)
        cooc_keys = stats_keys(cooc, m)
        pos = np.clip(np.searchsorted(cooc_keys, keys), 0, max(len(cooc_keys) - 1, 0))
        hit = cooc_keys[pos] == keys if len(cooc_keys) else np.zeros(len(keys), bool)
        cooc_score = np.zeros(len(keys), dtype=np.float32)
        cooc_score[hit] = cooc.data[pos[hit]]
        gen = _GeneratorColumns(
            als_score=_concat(als_l, np.float32),
            als_rank=_concat(als_rank_l, np.int32),
            ease_score=_concat(ease_l, np.float32) if self.ease is not None else None,
            ease_rank=(
                _concat(ease_rank_l, np.int32)
                if self.ease is not None
                else np.full(len(keys), settings.n_ease, dtype=np.int32)
            ),
            cooc_score=cooc_score,
            cooc_rank=values_at_keys(m, c_rows, c_items, c_ranks, keys, settings.n_cooc),
        )
        return rows, items, _concat(bits_l, np.uint8), gen

    def _features(
        self,
        rows: NDArray[np.intp],
        items: NDArray[np.intp],
        gen: _GeneratorColumns,
        stats_b: sp.csr_matrix,
        known: NDArray[np.bool_],
        safe: NDArray[np.intp],
        now_day: float,
    ) -> NDArray[np.float32]:
        """The :data:`FEATURES` matrix of the candidate pairs."""
        m = self.n_items
        # pair lookups in the batch's purchase stats
        n_orders = np.zeros(len(rows))
        share = np.zeros(len(rows))
        days_since = np.full(len(rows), np.nan)
        interval = np.full(len(rows), np.nan)
        if stats_b.nnz:
            flat = stats_keys(stats_b, m)
            want = rows.astype(np.int64) * m + items
            pos = np.clip(np.searchsorted(flat, want), 0, len(flat) - 1)
            hit = flat[pos] == want
            # map batch positions back to the state's arrays
            orig_pos = state_positions(self._stats_keys(), safe, stats_b, m)
            sp_idx = orig_pos[pos[hit]]
            n_orders[hit] = stats_b.data[pos[hit]]
            share[hit] = self.decayed_share[sp_idx]
            days_since[hit] = now_day - self.last_day[sp_idx]
            span = self.last_day[sp_idx] - self.first_day[sp_idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                interval[hit] = np.where(n_orders[hit] > 1, span / (n_orders[hit] - 1), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            due_ratio = days_since / np.maximum(interval, 1.0)

        repeat_rank = _rank_within_rows(rows, share, n_orders > 0)
        recent_total = self._recent_total
        pop_rank = self._pop_rank
        ur = safe[rows]
        kn = known[rows]
        u_orders = np.where(kn, self.user_n_orders[ur], 0.0)
        nan = np.nan
        columns = (
            gen.als_score,
            gen.als_rank,
            gen.ease_score if gen.ease_score is not None else np.full(len(rows), nan),
            gen.ease_rank,
            gen.cooc_score,
            gen.cooc_rank,
            n_orders,
            days_since,
            due_ratio,
            interval,
            (n_orders > 0).astype(np.float64),
            u_orders,
            np.where(kn, self.user_n_items[ur], 0.0),
            np.where(kn, now_day - self.user_first_day[ur], nan),
            np.where(kn, now_day - self.user_last_day[ur], nan),
            self.item_pop_recent[items],
            self.item_trend[items],
            self.item_price[items],
            self.item_pop_total[items],
            pop_rank[items],
            np.where(u_orders > 0, n_orders / np.maximum(u_orders, 1.0), 0.0),
            share,
            repeat_rank,
            # the share, not the count: the count grows with the history's length, which
            # differs between the ranker's cut and serving (most on a short log)
            self.item_pop_recent[items] / recent_total,
        )
        return _stack_float32(columns, len(rows))

    def _stats_keys(self) -> NDArray[np.int64]:
        """:func:`~recsys.models.pair_keys.stats_keys` of ``stats``, computed on the first
        batch and kept (a state is not modified after it is built or loaded; a new ``stats``
        matrix is keyed anew).
        Every batch of :meth:`pairs` looks its entries up in them, and building them for
        Ta-Feng's 743k user-item pairs took 3-5 ms a batch, whatever its size: one customer's
        candidates (a live request) took 23.5 ms with it against 16.9 ms kept (medians of
        200), a run's stored lists (97 batches of 256) about 0.4 s."""
        stats = self.stats
        cached: tuple[Any, ...] | None = getattr(self, "_stats_keys_cache", None)
        if cached is None or cached[0] is not stats.indices or cached[1] is not stats.indptr:
            keys = stats_keys(stats, self.n_items)
            keys.flags.writeable = False
            cached = (stats.indices, stats.indptr, keys)
            self._stats_keys_cache = cached
        keys_out: NDArray[np.int64] = cached[2]
        return keys_out

    def _item_gram(self, regularization: float) -> NDArray[np.float64]:
        """:func:`~recsys.models.kernels.als_item_gram` of the item factors, computed on the
        first fold-in and kept (it is not saved: the factors and the settings determine it)."""
        cached: tuple[float, NDArray[np.float64]] | None = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] != regularization:
            cached = (regularization, als_item_gram(self.item_factors, regularization))
            self._gram_cache = cached
        return cached[1]

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the state as one ``.npz`` (no pickle)."""
        arrays: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, sp.csr_matrix):
                arrays[f"{f.name}__data"] = value.data
                arrays[f"{f.name}__indices"] = value.indices
                arrays[f"{f.name}__indptr"] = value.indptr
                arrays[f"{f.name}__shape"] = np.array(value.shape)
            elif value is None:
                arrays[f"{f.name}__none"] = np.zeros(0)
            else:
                arrays[f.name] = np.asarray(value)
        save_arrays(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> GeneratorState:
        """Read a state written by :meth:`save`; raises ``ArtifactError`` when unreadable."""
        from recsys.errors import ArtifactError

        a = load_arrays(path)
        values: dict[str, Any] = {}
        try:
            for f in fields(cls):
                if f"{f.name}__none" in a:
                    values[f.name] = None
                elif f"{f.name}__data" in a:
                    values[f.name] = sp.csr_matrix(
                        (a[f"{f.name}__data"], a[f"{f.name}__indices"], a[f"{f.name}__indptr"]),
                        shape=tuple(a[f"{f.name}__shape"]),
                    )
                elif f.name in ("n_users", "n_items"):
                    values[f.name] = int(a[f.name])
                elif f.name == "as_of_day":
                    values[f.name] = float(a[f.name])
                elif f.name in ("ease_diagonal", "ease_rows", "ease_items") and f.name not in a:
                    values[f.name] = None  # written before it was kept: no warm EASE
                elif f.name == "decayed_share" and f.name not in a:
                    # written before the decayed repeat features: a model of that release
                    # does not read them (its ranker has no such column)
                    values[f.name] = np.zeros(values["stats"].nnz)
                else:
                    values[f.name] = a[f.name]
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: incomplete generator state: {exc}") from None
        if values["ease"] is not None and not values["ease"].flags.c_contiguous:
            # written in Fortran order by an earlier release: scipy's sparse product would
            # copy all of it per call (see kernels._ease_solve), so once here instead
            values["ease"] = np.ascontiguousarray(values["ease"])
        return cls(**values)


# -- helpers ------------------------------------------------------------------------------------


def ease_subset(
    signal: sp.csr_matrix, item_pop_total: NDArray[np.float64], settings: GeneratorSettings
) -> NDArray[np.intp] | None:
    """The items the EASE generator is solved on when the catalogue is above
    ``settings.max_ease_items`` and ``settings.ease_most_bought``: the ``max_ease_items``
    items most customers have in ``signal`` (more purchases first, then the lower index),
    ascending. ``None``: every item (a catalogue within the limit), or none (no EASE).

    A dense EASE costs items² memory and items³ time, so a large catalogue has none; its
    most bought items are where the co-purchase signal EASE learns is (on Ta-Feng's 18,210
    items, the 5,000 most bought hold most purchases: ``benchmarks/RESULTS.md``)."""
    n_items, k = signal.shape[1], settings.max_ease_items
    if n_items <= k or k == 0 or not settings.ease_most_bought:
        return None
    customers = np.bincount(signal.indices, minlength=n_items)
    order = np.lexsort((np.arange(n_items), -item_pop_total, -customers))
    return np.sort(order[:k]).astype(np.intp)


def collaborative_signal(ev: EventArrays, stats: sp.csr_matrix) -> sp.csr_matrix:
    """What the ALS and EASE generators learn from: ``log1p`` of the distinct purchase orders
    (``stats``) plus the carts and views at their :data:`SIGNAL_WEIGHTS`, ``users × items``
    float32 (``log1p`` so a wholesaler's hundred orders do not dwarf everyone's one)."""
    extra_mask = ~ev.purchase & (ev.weight > 0)
    extra = None
    if extra_mask.any():
        extra = sp.csr_matrix(
            (ev.weight[extra_mask], (ev.user[extra_mask], ev.item[extra_mask])),
            shape=stats.shape,
            dtype=np.float32,
        )
    return signal_of(stats, extra)


def signal_of(stats: sp.csr_matrix, extra: sp.csr_matrix | None) -> sp.csr_matrix:
    """:func:`collaborative_signal` from its two parts: the distinct purchase orders and the
    summed weights of the other events (``None``: none)."""
    signal = sp.csr_matrix(stats, dtype=np.float32, copy=True)
    if extra is not None:
        signal = sp.csr_matrix(signal + extra)
    signal.data = np.log1p(signal.data).astype(np.float32)
    return signal


def decayed_order_share(
    user: NDArray[np.intp],
    order: NDArray[np.intp],
    day: NDArray[np.float64],
    pos: NDArray[np.intp],
    n_pairs: int,
    n_users: int,
    decay: float,
) -> NDArray[np.float64]:
    """Time-decayed personal item frequency, as TIFU-KNN's repeat vector (Hu et al., SIGIR 2020).

    A user's order ``j`` orders before their last one weighs ``decay ** j``; an item's value is
    the weight of the orders that held it over the weight of all the user's orders, in
    ``[0, 1]``. Unlike the count of orders it forgets what the customer stopped buying, and
    unlike days since the last purchase it does not depend on when the question is asked.

    Parameters
    ----------
    user, order, day
        One entry per distinct (user, item, order) purchase: its user, order code and day.
    pos
        Each entry's position in the user-item pairs (the ``stats`` CSR data).
    n_pairs, n_users
        Number of user-item pairs and of users.
    decay
        Weight ratio of an order to the next one, in ``(0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``n_pairs`` float64 values, aligned with ``pos``'s pairs.
    """
    out = np.zeros(n_pairs)
    if len(user) == 0:
        return out
    # each distinct order once, with its user and its (first) day, newest last per user
    orders, first = np.unique(order, return_index=True)
    o_user, o_day = user[first], day[first]
    seq = np.lexsort((orders, o_day, o_user))
    per_user = np.bincount(o_user, minlength=n_users)
    start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    back = np.empty(len(orders), dtype=np.int64)
    # orders before the user's last one: 0 for the last
    back[seq] = per_user[o_user[seq]] - 1 - (np.arange(len(seq)) - start[o_user[seq]])
    weight = decay ** back.astype(np.float64)
    total = np.bincount(o_user, weights=weight, minlength=n_users)
    entry_weight = weight[np.searchsorted(orders, order)]
    np.add.at(out, pos, entry_weight / total[user])
    return out


def _rank_within_rows(
    rows: NDArray[np.intp], values: NDArray[np.float64], mask: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Per pair where ``mask`` holds, the rank (0 = largest, ties by position) of its value
    among its row's masked pairs; ``NaN`` elsewhere."""
    out = np.full(len(rows), np.nan)
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return out
    order = idx[order_within_rows(rows[idx], values[idx])]
    r = rows[order]
    first = np.searchsorted(r, r, side="left")
    out[order] = np.arange(len(order)) - first
    return out


@dataclass
class _GeneratorColumns:
    """The generator features of the candidate pairs (ease_score None: the state has no EASE)."""

    als_score: NDArray[np.float32]
    als_rank: NDArray[np.integer]
    ease_score: NDArray[np.float32] | None
    ease_rank: NDArray[np.integer]
    cooc_score: NDArray[np.float32]
    cooc_rank: NDArray[np.integer]


def _string_codes(values: NDArray[np.object_]) -> NDArray[np.intp]:
    """``np.unique(values.astype(str), return_inverse=True)[1]``: each value's index among the
    sorted distinct strings, by a dict over the strings (as ``recsys.data.interactions``'
    ``_factorize``) instead of numpy's sort of fixed-width strings. Python orders strings
    by code point as numpy does. Ta-Feng's 817,741 order ids: 0.51-1.05 s that way, 0.41-0.45 s
    this way (CPU, one process, loaded machine)."""
    strings = values.astype(str).tolist()
    lookup = {k: i for i, k in enumerate(sorted(dict.fromkeys(strings)))}
    return np.fromiter(map(lookup.__getitem__, strings), dtype=np.intp, count=len(strings))


def _stack_float32(columns: Sequence[NDArray[Any]], n: int) -> NDArray[np.float32]:
    """``np.column_stack(columns).astype(np.float32)`` (C order) for ``n``-long columns of
    floats and integers, without the float64 matrix.

    Each column is cast to float32 into a row of the transpose, then transposed once:
    column_stack's float64 matrix and its astype took 19 ms a 125k feature rows (1,024
    Ta-Feng customers' pairs), this 5 ms. The same values: a float is rounded to float32 once
    either way, and an integer goes through float64 as column_stack takes it.
    """
    out = np.empty((len(columns), n), dtype=np.float32)
    for j, column in enumerate(columns):
        out[j] = column if column.dtype.kind == "f" else column.astype(np.float64)
    return np.ascontiguousarray(out.T)


def _concat(parts: list[Any], dtype: Any) -> NDArray[Any]:
    """``np.concatenate`` that also takes an empty list."""
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
