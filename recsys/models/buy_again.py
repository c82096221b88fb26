"""Buy again: a customer's own purchases, ranked by how due each one is for replenishment.

For every user-item pair the model keeps the purchase occasions (distinct orders) from the
training events. The *usual interval* between purchases of an item is, in order of
preference: the customer's own median interval when they bought it at least
``min_purchases`` times; otherwise the median over customers of their median intervals for
that item; otherwise unknown. ``r = days since last purchase / usual interval`` says how due
the item is: ``r ≥ due_ratio`` (about 0.8) means "due".

The score is ``log(1 + purchases) · f(r)`` where ``f`` rises linearly from 0 just after a
purchase to 1 at ``r = due_ratio``, stays 1 up to ``r = 2``, then decays as ``1 / (1 + (r −
2) / 4)`` (long-overdue items are probably no longer wanted); with an unknown interval
``f = 0.5``. Items the user never bought get ``NaN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, PURCHASE
from recsys.errors import ArtifactError
from recsys.models.base import (
    COUNT,
    Constraint,
    Interval,
    Recommender,
    load_arrays,
    load_json,
    save_arrays,
    save_json,
    top_k_coo,
)

#: Weight of an item whose usual interval is unknown (between "just bought" and "due").
UNKNOWN_INTERVAL_FACTOR = 0.5


@dataclass(frozen=True)
class PurchaseStats:
    """Per (user, item) purchase facts for a batch of users, in coordinate form.

    Every array has one entry per pair the user bought, sorted by ``row`` then ``item``.

    Attributes
    ----------
    row
        Position of the user in the batch passed to :meth:`BuyAgainModel.purchase_stats`.
    item
        Item index.
    count
        Number of distinct orders the item was bought in (int64).
    days_since_last
        Days from the last purchase to ``now`` (float64, ≥ 0).
    interval_days
        The usual interval between purchases in days (float64; ``NaN`` when unknown).
    due_ratio
        ``days_since_last / interval_days`` (``NaN`` when the interval is unknown).
    """

    row: NDArray[np.intp]
    item: NDArray[np.intp]
    count: NDArray[np.int64]
    days_since_last: NDArray[np.float64]
    interval_days: NDArray[np.float64]
    due_ratio: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.row)


class BuyAgainModel(Recommender):
    """Replenishment: what the customer bought before and is about to need again.

    Parameters
    ----------
    min_purchases
        Purchases of an item a customer needs before their own interval is trusted.
    due_ratio
        ``r`` from which an item counts as due.

    Attributes
    ----------
    indptr_ : numpy.ndarray
        Per user, the slice of the pair arrays holding their items (CSR layout).
    pair_item_, pair_count_, pair_last_, pair_interval_ : numpy.ndarray
        Per bought user-item pair: item, distinct orders, last purchase (micros), the
        customer's own median interval in days (``NaN`` when they bought it too rarely).
    item_interval_ : numpy.ndarray
        Per item, the median over customers of their median interval (``NaN`` if none).
    as_of_ : int
        The training data's ``as_of``: the default ``now``.
    """

    name: ClassVar[str] = "buy_again"
    parameter_constraints: ClassVar[dict[str, tuple[Constraint, ...]]] = {
        "min_purchases": (COUNT,),
        # f(r) rises as r / due_ratio (so > 0) and is 1 from due_ratio up to r = 2, where the
        # overdue decay starts: a ratio above 2 would have that decay begin before "due"
        "due_ratio": (Interval("real", 0, 2, closed="right"),),
    }

    def __init__(self, *, min_purchases: int = 3, due_ratio: float = 0.8) -> None:
        self.min_purchases = min_purchases
        self.due_ratio = due_ratio

    @classmethod
    def contract_factory(cls) -> BuyAgainModel:
        """A configuration that fits the contract suite's tiny data (two orders per item)."""
        return cls(min_purchases=2)

    def fit(self, data: TrainingData) -> Self:
        """Collect purchase occasions per user-item pair; return ``self``.

        Raises
        ------
        InvalidParameterError
            For a constructor argument outside :attr:`parameter_constraints`.
        """
        self._validate_params()
        data.require_customers(self.name)
        ev = data.events
        users = np.asarray(data.event_user)
        items = np.asarray(data.event_item)
        mask = (ev.event_type == PURCHASE) & (users >= 0) & (items >= 0)
        u = users[mask].astype(np.int64)
        i = items[mask].astype(np.int64)
        ts = np.asarray(ev.ts[mask], dtype=np.int64)
        # One occasion per order: lines of the same order share the order's earliest time.
        # Purchases without an order id are their own occasion (one per timestamp).
        order = np.asarray(ev.order_id[mask], dtype=object)
        no_order = np.array([o is None for o in order], dtype=bool)
        occasion = ts.copy()
        if (~no_order).any():
            _, codes = np.unique(order[~no_order].astype(str), return_inverse=True)
            occasion[~no_order] = codes.ravel()
        # within one (user, item, kind, occasion) key the earliest time comes first
        by_key = np.lexsort((ts, occasion, no_order, i, u))
        u, i, ts = u[by_key], i[by_key], ts[by_key]
        key_start = _starts(u, i, no_order[by_key], occasion[by_key])
        u, i, ts = u[key_start], i[key_start], ts[key_start]
        by_time = np.lexsort((ts, i, u))
        u, i, ts = u[by_time], i[by_time], ts[by_time]

        n_items = data.n_items
        if len(u):
            start = _starts(u, i)
            pair_of = np.cumsum(np.r_[False, (u[1:] != u[:-1]) | (i[1:] != i[:-1])])
            n_pairs = len(start)
            count = np.diff(np.r_[start, len(u)])
            last = ts[np.r_[start[1:], len(u)] - 1]
            # gaps between consecutive occasions of the same pair; equal times are no gap
            gaps = np.diff(ts) / MICROS_PER_DAY
            same = pair_of[1:] == pair_of[:-1]
            real = same & (gaps > 0)
            own = _group_median(pair_of[1:][real], gaps[real], n_pairs)
            has_gap = ~np.isnan(own)
            pair_user, pair_item = u[start], i[start]
            item_interval = _group_median(pair_item[has_gap], own[has_gap], n_items)
            pair_interval = np.where(count >= self.min_purchases, own, np.nan)
        else:
            pair_user = pair_item = count = last = np.empty(0, np.int64)
            pair_interval = np.empty(0, np.float64)
            item_interval = np.full(n_items, np.nan)
        self.indptr_ = np.searchsorted(pair_user, np.arange(data.n_users + 1)).astype(np.int64)
        self.pair_item_ = pair_item.astype(np.int64)
        self.pair_count_ = count.astype(np.int64)
        self.pair_last_ = last.astype(np.int64)
        self.pair_interval_ = pair_interval.astype(np.float64)
        self.item_interval_ = item_interval.astype(np.float64)
        self.as_of_ = int(data.as_of)
        return self

    # -- what the ranker and the reasons use --------------------------------------------------

    def purchase_stats(self, users: NDArray[np.intp], now: int | None = None) -> PurchaseStats:
        """Purchase facts of every item each user bought (see :class:`PurchaseStats`).

        Parameters
        ----------
        users
            User indices; ``-1`` (unknown) users contribute no pairs.
        now
            Request time in microseconds UTC; defaults to the training ``as_of``.
        """
        self._check_fitted("indptr_")
        now = self.as_of_ if now is None else int(now)
        users = np.asarray(users, dtype=np.intp)
        n_users = len(self.indptr_) - 1
        rows: list[NDArray[np.intp]] = []
        slices: list[NDArray[np.int64]] = []
        for r, user in enumerate(users.tolist()):
            if 0 <= user < n_users:
                pos = np.arange(self.indptr_[user], self.indptr_[user + 1])
                rows.append(np.full(len(pos), r, dtype=np.intp))
                slices.append(pos)
        pos = np.concatenate(slices) if slices else np.empty(0, np.int64)
        row = np.concatenate(rows) if rows else np.empty(0, np.intp)
        item = self.pair_item_[pos].astype(np.intp)
        days = np.maximum(now - self.pair_last_[pos], 0) / MICROS_PER_DAY
        interval = self.pair_interval_[pos]
        interval = np.where(np.isnan(interval), self.item_interval_[item], interval)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = days / interval
        return PurchaseStats(
            row=row,
            item=item,
            count=self.pair_count_[pos],
            days_since_last=days,
            interval_days=interval,
            due_ratio=ratio,
        )

    def due(self, users: NDArray[np.intp], now: int | None = None) -> sp.csr_matrix:
        """``len(users) × n_items`` boolean CSR: items due again (``r ≥ due_ratio``)."""
        stats = self.purchase_stats(users, now)
        hit = np.nan_to_num(stats.due_ratio, nan=-1.0) >= self.due_ratio
        return sp.csr_matrix(
            (np.ones(int(hit.sum()), dtype=bool), (stats.row[hit], stats.item[hit])),
            shape=(len(users), len(self.item_interval_)),
        )

    def _factor(self, ratio: NDArray[np.float64]) -> NDArray[np.float64]:
        r = np.nan_to_num(ratio, nan=-1.0)
        rising = np.clip(r / self.due_ratio, 0.0, 1.0)
        decaying = 1.0 / (1.0 + np.maximum(r - 2.0, 0.0) / 4.0)
        f = np.where(r < self.due_ratio, rising, decaying)
        return np.where(np.isnan(ratio), UNKNOWN_INTERVAL_FACTOR, f)

    def score(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        *,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """Replenishment scores of the items each user bought; ``NaN`` elsewhere.

        ``history`` is not used: purchase dates come from the training events, so a purchase
        made since training shows up after the next retrain (callers exclude just-bought items).
        """
        stats = self.purchase_stats(users, now)
        out = np.full((len(users), len(self.item_interval_)), np.nan, dtype=np.float32)
        out[stats.row, stats.item] = self._values(stats)
        return out

    def recommend_lists(
        self,
        users: NDArray[np.intp],
        history: sp.csr_matrix,
        k: int,
        *,
        excludes: Sequence[sp.csr_matrix | None],
        now: int | None = None,
    ) -> list[tuple[NDArray[np.intp], NDArray[np.float32]]]:
        """The best of each user's own bought items, ranked from those items alone.

        A customer's row has a score only where they bought, so the lists of
        :func:`~recsys.models.base.top_k` on :meth:`score`'s rows come from those pairs
        (:func:`~recsys.models.base.top_k_coo`), without a catalogue-long row.
        """
        stats = self.purchase_stats(users, now)
        values = self._values(stats)
        shape = (len(users), len(self.item_interval_))
        return [
            top_k_coo(stats.row, stats.item, values, shape, k, exclude=exclude)
            for exclude in excludes
        ]

    def _values(self, stats: PurchaseStats) -> NDArray[np.float32]:
        """The score of each pair of ``stats`` (as :meth:`score` stores it)."""
        return (np.log1p(stats.count) * self._factor(stats.due_ratio)).astype(np.float32)

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write params and ``as_of`` (JSON) and the pair arrays (``.npz``)."""
        directory = self._write_params(directory, "indptr_")
        save_json(directory / "state.json", {"as_of": self.as_of_})
        save_arrays(
            directory / "purchases.npz",
            indptr=self.indptr_,
            pair_item=self.pair_item_,
            pair_count=self.pair_count_,
            pair_last=self.pair_last_,
            pair_interval=self.pair_interval_,
            item_interval=self.item_interval_,
        )

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        model = cls._from_params(directory, "a buy-again model")
        state = load_json(directory / "state.json")
        a = load_arrays(directory / "purchases.npz")
        try:
            model.indptr_ = a["indptr"]
            model.pair_item_ = a["pair_item"]
            model.pair_count_ = a["pair_count"]
            model.pair_last_ = a["pair_last"]
            model.pair_interval_ = a["pair_interval"]
            model.item_interval_ = a["item_interval"]
            model.as_of_ = int(state["as_of"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{directory}: not a buy-again model: {exc}") from None
        return model


def _starts(*keys: NDArray[Any]) -> NDArray[np.intp]:
    """Positions where the tuple of sorted ``keys`` changes (the first row of each run)."""
    n = len(keys[0])
    if n == 0:
        return np.empty(0, np.intp)
    change = np.zeros(n - 1, dtype=bool)
    for k in keys:
        change |= k[1:] != k[:-1]
    return np.flatnonzero(np.r_[True, change])


def _group_median(
    group: NDArray[np.int64], values: NDArray[np.float64], n_groups: int
) -> NDArray[np.float64]:
    """``np.median`` of ``values`` per group (``NaN`` for empty groups), without a loop.

    The middle value, or the mean of the two middle values, as ``np.median`` computes it.
    """
    out = np.full(n_groups, np.nan)
    if len(group) == 0:
        return out
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    start = _starts(g)
    size = np.diff(np.r_[start, len(g)])
    lo = start + (size - 1) // 2
    hi = start + size // 2
    out[g[start]] = (v[lo] + v[hi]) / 2.0
    return out
