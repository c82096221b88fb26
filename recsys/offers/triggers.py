"""The right moment: triggers that say *when* a customer should get an offer, and why.

Every function takes an explicit ``today`` (a :class:`datetime.date`, UTC); nothing here reads
the wall clock, so a campaign for a past date is reproducible and tests use a fixed clock.
Day arithmetic is in whole UTC days: a purchase on day ``d`` is ``today - d`` days old.

==================  =========================================================================
trigger             fires when
==================  =========================================================================
``birthday``        from ``days_before`` (30) days before the birthday up to the day itself.
                    A 29 February birthday falls on 28 February in non-leap years.
``replenishment``   an item's days since its last purchase reached ``due_ratio`` (0.8) of
                    the usual interval and not yet ``max_ratio`` (2.0) of it (longer overdue
                    is a lapse: win-back's business). The usual interval is the customer's
                    own median when they bought it ``min_purchases`` (3) times, else the
                    median over customers of their own medians (the rule of
                    :class:`~recsys.models.buy_again.BuyAgainModel`, whose stats are used
                    when a fitted one is given).
``winback``         days since the last order exceed ``factor`` (2) × the usual gap between
                    orders: the customer's own median gap with at least ``min_orders`` (3)
                    orders, else the norm of their segment, else the global norm (a
                    customer with one order has no gap of their own).
``cross_sell``      ``min_days`` (3) to ``max_days`` (14) days after the last order, for the
                    bought-together neighbours of its items not already bought in it.
==================  =========================================================================
"""

from __future__ import annotations

import calendar
import functools
import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, EventFrame
from recsys.data.vocab import Vocabulary
from recsys.models.base import ItemSimilarity
from recsys.models.buy_again import BuyAgainModel
from recsys.offers.catalog import REDEMPTION_PREFIX

_EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    """Days since 1970-01-01 (the unit every history array here is in)."""
    return (day - _EPOCH).days


def day_start_micros(day: date) -> int:
    """Microseconds UTC of ``day``'s midnight."""
    return day_number(day) * MICROS_PER_DAY


# -- purchase history -------------------------------------------------------------------------


@dataclass
class CustomerHistory:
    """One customer's orders, oldest first (days are :func:`day_number` values)."""

    order_days: list[int] = field(default_factory=list)
    order_values: list[float] = field(default_factory=list)
    order_items: list[tuple[str, ...]] = field(default_factory=list)
    returned_value: float = 0.0

    @property
    def n_orders(self) -> int:
        """Distinct orders."""
        return len(self.order_days)

    @property
    def monetary(self) -> float:
        """Spend net of returns (never below 0)."""
        return max(sum(self.order_values) - self.returned_value, 0.0)

    def median_gap(self) -> float | None:
        """Median days between consecutive orders, or ``None`` with fewer than two orders."""
        if len(self.order_days) < 2:
            return None
        return float(np.median(np.diff(self.order_days)))


@dataclass
class PurchaseHistory:
    """Per-customer orders and per customer-item purchase days, read from events.

    Build it with :meth:`from_events`. Orders are grouped by ``order_id`` (a purchase without
    one is its own order); an order's day is that of its earliest line. Guests (empty
    ``user_id``) are left out. ``redemptions`` counts, per ``(user, offer)``, the distinct
    orders holding a purchase line whose ``recommendation_id`` is ``offer:<offer id>``
    (:data:`~recsys.offers.catalog.REDEMPTION_PREFIX`); ``redeemed_value`` is the price of
    those lines, from which a percent discount's spend is estimated.
    """

    customers: dict[str, CustomerHistory]
    item_days: dict[tuple[str, str], list[int]]
    item_price: dict[str, float]
    redemptions: dict[tuple[str, str], int]
    redeemed_value: dict[str, float]
    until_day: int

    @classmethod
    def from_events(cls, events: EventFrame, until: date) -> PurchaseHistory:
        """Purchases and returns of ``events`` before ``until`` (midnight UTC).

        Parameters
        ----------
        events
            Any events; only purchases and returns before ``until`` are read.
        until
            The first day left out.

        Returns
        -------
        PurchaseHistory
            Every dict in the order a walk through the events in time (stable on equal
            timestamps) would first meet its key; order values and returned values summed in
            that walk's order.

        Notes
        -----
        Grouped with sorts and counts instead of a walk over the events: the walk (a few dict
        lookups and list appends per event, and a tuple rebuilt per line of an order) took
        2.0 s on Online Retail, in every serving worker's start-up; this takes 0.8 s, most
        of it in building the lists and tuples that callers read. Sums use ``np.bincount``
        with weights, which adds in input order, so every float equals the walk's
        left-to-right ``+=``.
        """
        # Every list, tuple and history built here survives (about 700,000 on Online Retail),
        # and each of them counted towards the collector's next pass over the young objects:
        # those passes, which free nothing, took 0.5 s of a 1.3 s build.
        with _collector_paused():
            return cls._grouped(events, until)

    @classmethod
    def _grouped(cls, events: EventFrame, until: date) -> PurchaseHistory:
        """:meth:`from_events`, with the collector left as it is."""
        limit = day_start_micros(until)
        mask = (events.ts < limit) & np.isin(events.event_type, [PURCHASE, RETURN])
        ev = events.select(np.flatnonzero(mask))
        order = np.argsort(ev.ts, kind="stable")
        price = np.asarray(ev.price, dtype=np.float64)[order]
        quantity = np.asarray(ev.quantity, dtype=np.float64)[order]
        value = np.where(np.isnan(price), 0.0, price * quantity)
        # codes in order of first appearance: the customers dict's order
        user_code, user_names = _factorize(ev.user_id[order].tolist())
        known = np.array([bool(u) for u in user_names], dtype=bool)[user_code]
        is_return = np.asarray(ev.event_type[order] == RETURN, dtype=bool)
        returns = np.flatnonzero(known & is_return)
        # float even with no returns (bincount of nothing counts in int)
        returned = np.bincount(
            user_code[returns], weights=value[returns], minlength=len(user_names)
        ).astype(np.float64)
        lines = order[known & ~is_return]  # purchase lines in time order, indices into ev
        if not len(lines):
            return cls(
                customers={},
                item_days={},
                item_price={},
                redemptions={},
                redeemed_value={},
                until_day=day_number(until),
            )
        user = user_code[known & ~is_return]
        value = value[known & ~is_return]
        price = price[known & ~is_return]
        ts = np.asarray(ev.ts, dtype=np.int64)[lines]
        item, item_names = _factorize(ev.item_id[lines].tolist())
        n = len(lines)
        seq = np.arange(n)

        # orders: (user, order id), or (user, timestamp) for a line without one
        order_code, order_ids = _factorize(ev.order_id[lines].tolist())
        no_id = order_ids.index(None) if None in order_ids else -1
        without_id = order_code == no_id
        second = np.where(without_id, ts, order_code)
        by_key = np.lexsort((seq, second, without_id, user))
        new_order = _starts(user[by_key], without_id[by_key], second[by_key])
        first_line = by_key[new_order]  # lines are in time order: an order's earliest line
        # numbered per customer, then by first line: a customer's orders are contiguous
        renumber = np.empty(len(first_line), dtype=np.int64)
        renumber[np.lexsort((first_line, user[first_line]))] = np.arange(len(first_line))
        line_order = np.empty(n, dtype=np.int64)
        line_order[by_key] = renumber[np.cumsum(new_order) - 1]
        first_line = first_line[np.argsort(renumber)]
        order_days = ts[first_line] // MICROS_PER_DAY
        order_values = np.bincount(line_order, weights=value, minlength=len(first_line))
        orders_of = np.bincount(user[first_line], minlength=len(user_names))

        # an item's first line in each order: the order's items, and the customer's item days
        by_item = np.lexsort((seq, item, line_order))
        first_in_order = np.sort(by_item[_starts(line_order[by_item], item[by_item])])
        grouped = first_in_order[np.argsort(line_order[first_in_order], kind="stable")]
        names = _pick(item_names, item[grouped])
        ends = np.cumsum(np.bincount(line_order[grouped], minlength=len(first_line))).tolist()
        order_items = [tuple(names[lo:hi]) for lo, hi in zip([0, *ends[:-1]], ends, strict=True)]
        item_days = _item_days(
            user[first_in_order],
            item[first_in_order],
            order_days[line_order[first_in_order]],
            user_names,
            item_names,
        )

        priced = np.flatnonzero(~np.isnan(price) & (price > 0))
        item_price = _medians(item[priced], price[priced], item_names)
        redemptions, redeemed_value = _redemptions(
            ev.recommendation_id[lines], user, line_order, value, user_names
        )

        days_list, values_list = order_days.tolist(), order_values.tolist()
        returned_list = returned.tolist()
        customers: dict[str, CustomerHistory] = {}
        lo = 0
        for code in np.flatnonzero(orders_of).tolist():
            hi = lo + int(orders_of[code])
            customers[user_names[code]] = CustomerHistory(
                order_days=days_list[lo:hi],
                order_values=values_list[lo:hi],
                order_items=order_items[lo:hi],
                returned_value=returned_list[code],
            )
            lo = hi
        return cls(
            customers=customers,
            item_days=item_days,
            item_price=item_price,
            redemptions=redemptions,
            redeemed_value=redeemed_value,
            until_day=day_number(until),
        )

    def total_redemptions(self, offer_id: str) -> int:
        """Redemptions of an offer by every customer."""
        return sum(n for (_, o), n in self.redemptions.items() if o == offer_id)

    def item_interval(self, min_purchases: int = 3) -> dict[str, float]:
        """Per item, the median over customers of their own median interval (days).

        Every customer who bought the item at least twice contributes, as in
        :class:`~recsys.models.buy_again.BuyAgainModel`.
        """
        per_item: dict[str, list[float]] = {}
        for (_, item), days in self.item_days.items():
            gaps = np.diff(days)
            gaps = gaps[gaps > 0]
            if len(gaps):
                per_item.setdefault(item, []).append(float(np.median(gaps)))
        return {item: float(np.median(v)) for item, v in per_item.items()}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside (left as it was found: off stays off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _factorize(values: list[Any]) -> tuple[NDArray[np.int64], list[Any]]:
    """Codes numbered by first appearance, and the distinct values in that order.

    Values are told apart as dict keys are, the rule of the walk this replaces.
    """
    index = {v: k for k, v in enumerate(dict.fromkeys(values))}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return codes, list(index)


def _pick(names: list[Any], codes: NDArray[np.int64]) -> list[Any]:
    """``names[c]`` for each code (one C-level pass, not a Python loop)."""
    return list(map(names.__getitem__, codes.tolist()))


def _starts(*keys: NDArray[Any]) -> NDArray[np.bool_]:
    """Where a run of equal keys starts, in arrays sorted by those keys."""
    start = np.zeros(len(keys[0]), dtype=bool)
    if len(start):
        start[0] = True
        for key in keys:
            start[1:] |= key[1:] != key[:-1]
    return start


def _item_days(
    users: NDArray[np.int64],
    items: NDArray[np.int64],
    days: NDArray[np.int64],
    user_names: list[Any],
    item_names: list[Any],
) -> dict[tuple[str, str], list[int]]:
    """Per (customer, item), the day of each order holding it, in time order.

    The arguments are an item's first line in each order, in time order. A day equal to the
    previous one is left out; an earlier one is kept (an order's day is its first line's, so
    a late line of an old order can come after a newer order), as the walk did.
    """
    by_pair = np.lexsort((np.arange(len(users)), items, users))
    users, items, days = users[by_pair], items[by_pair], days[by_pair]
    new_pair = _starts(users, items)
    keep = new_pair | _starts(days)
    counts = np.bincount(np.cumsum(new_pair)[keep] - 1)
    ends = np.cumsum(counts)
    # the dict in the order the walk first met each pair
    rank = np.argsort(by_pair[new_pair])
    kept = days[keep].tolist()
    return {
        (u, i): kept[lo:hi]
        for u, i, lo, hi in zip(
            _pick(user_names, users[new_pair][rank]),
            _pick(item_names, items[new_pair][rank]),
            (ends - counts)[rank].tolist(),
            ends[rank].tolist(),
            strict=True,
        )
    }


def _medians(
    items: NDArray[np.int64], prices: NDArray[np.float64], item_names: list[Any]
) -> dict[str, float]:
    """Median price per item, as ``np.median`` computes it, keyed in first-line order."""
    if not len(items):
        return {}
    by_item = np.lexsort((prices, items))
    items, prices = items[by_item], prices[by_item]
    start = np.flatnonzero(_starts(items))
    count = np.diff(np.append(start, len(items)))
    low = prices[start + (count - 1) // 2]
    high = prices[start + count // 2]
    # np.median averages the two middle values as (low + high) / 2; an odd count has one
    median = np.where(count % 2 == 1, low, (low + high) / 2)
    rank = np.argsort(np.minimum.reduceat(by_item, start))
    return dict(zip(_pick(item_names, items[start][rank]), median[rank].tolist(), strict=True))


def _redemptions(
    recommendation_ids: NDArray[np.object_],
    users: NDArray[np.int64],
    orders: NDArray[np.int64],
    values: NDArray[np.float64],
    user_names: list[Any],
) -> tuple[dict[tuple[str, str], int], dict[str, float]]:
    """Distinct orders per (customer, offer) and value per offer of the redeeming lines.

    The arguments are purchase lines in time order; ``orders`` numbers their orders.
    """
    present = np.flatnonzero(recommendation_ids.astype(bool))  # most lines have none
    rows = np.array(
        [
            k
            for k, rec in zip(present.tolist(), recommendation_ids[present].tolist(), strict=True)
            if isinstance(rec, str) and rec.startswith(REDEMPTION_PREFIX)
        ],
        dtype=np.int64,
    )
    if not len(rows):
        return {}, {}
    cut = len(REDEMPTION_PREFIX)
    offer, offer_names = _factorize([rec[cut:] for rec in recommendation_ids[rows].tolist()])
    value = np.bincount(offer, weights=values[rows])
    users, orders = users[rows], orders[rows]
    by_pair = np.lexsort((np.arange(len(rows)), orders, offer, users))
    new_pair = _starts(users[by_pair], offer[by_pair])
    new_order = new_pair | _starts(orders[by_pair])
    start = np.flatnonzero(new_pair)
    count = np.add.reduceat(new_order.astype(np.int64), start)
    # sorted by order within a pair: its earliest line is the smallest index, not the first
    first_line = np.minimum.reduceat(by_pair, start)
    rank = np.argsort(first_line)
    first = first_line[rank]
    keys = zip(_pick(user_names, users[first]), _pick(offer_names, offer[first]), strict=True)
    return dict(zip(keys, count[rank].tolist(), strict=True)), dict(
        zip(offer_names, value.tolist(), strict=True)
    )


# -- birthday ---------------------------------------------------------------------------------


def birthday_in_year(birthday: date, year: int) -> date:
    """The day a birthday is celebrated in ``year``: 29 February becomes 28 February in
    non-leap years (the last day of the birth month, the common convention)."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def birthday_occurrence(birthday: date, today: date, days_before: int = 30) -> date | None:
    """The birthday whose window (``days_before`` days before it, up to the day) holds today.

    ``None`` when today is in no window. The window is per occurrence, so at most one
    birthday offer episode a year; it can straddle New Year (a 5 January birthday's window
    opens on 6 December).
    """
    for year in (today.year, today.year + 1):
        occurrence = birthday_in_year(birthday, year)
        if 0 <= (occurrence - today).days <= days_before:
            return occurrence
    return None


# -- replenishment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DueItem:
    """An item a customer is due to buy again."""

    item_id: str
    days_since_last: float
    interval_days: float
    due_ratio: float


def due_items_from_history(
    history: PurchaseHistory,
    user_id: str,
    today: date,
    *,
    min_purchases: int = 3,
    due_ratio: float = 0.8,
    max_ratio: float = 2.0,
    item_interval: Mapping[str, float] | None = None,
) -> list[DueItem]:
    """Items ``user_id`` is due to buy again, most due first (see the module docstring).

    ``item_interval`` (from :meth:`PurchaseHistory.item_interval`) can be passed to share its
    cost over many customers.
    """
    hist = history.customers.get(user_id)
    if hist is None:
        return []
    if item_interval is None:
        item_interval = history.item_interval(min_purchases)
    now = day_number(today)
    out = []
    for item in {i for items in hist.order_items for i in items}:
        days = history.item_days[(user_id, item)]
        gaps = np.diff(days)
        gaps = gaps[gaps > 0]
        own = float(np.median(gaps)) if len(gaps) and len(days) >= min_purchases else None
        interval = own if own is not None else item_interval.get(item)
        if interval is None or interval <= 0:
            continue
        since = float(now - days[-1])
        ratio = since / interval
        if due_ratio <= ratio < max_ratio:
            out.append(DueItem(item, since, interval, ratio))
    return sorted(out, key=lambda d: (-d.due_ratio, d.item_id))


def due_items_from_model(
    model: BuyAgainModel,
    user_index: int,
    item_ids: Sequence[str] | Vocabulary,
    today: date,
    *,
    max_ratio: float = 2.0,
) -> list[DueItem]:
    """Due items from a fitted :class:`~recsys.models.buy_again.BuyAgainModel`.

    ``user_index`` is the customer's index in the model's user vocabulary (``-1``: unknown,
    nothing due); ``item_ids`` maps its item indices back to ids (a server passes the
    version's vocabulary: a list of 10^6 ids would be ~70 MiB in every worker).
    """
    name = item_ids.id if isinstance(item_ids, Vocabulary) else item_ids.__getitem__
    if user_index < 0:
        return []
    stats = model.purchase_stats(np.array([user_index], dtype=np.intp), now=day_start_micros(today))
    threshold = float(model.due_ratio)
    ratio = np.nan_to_num(stats.due_ratio, nan=-1.0)
    hit = (ratio >= threshold) & (ratio < max_ratio)
    out = [
        DueItem(
            name(int(i)),
            float(stats.days_since_last[k]),
            float(stats.interval_days[k]),
            float(stats.due_ratio[k]),
        )
        for k, i in zip(np.flatnonzero(hit).tolist(), stats.item[hit].tolist(), strict=True)
    ]
    return sorted(out, key=lambda d: (-d.due_ratio, d.item_id))


# -- win-back ---------------------------------------------------------------------------------


def gap_norms(
    history: PurchaseHistory, segment_of: Mapping[str, str], *, min_orders: int = 3
) -> tuple[dict[str, float], float | None]:
    """Usual gap between orders per segment, and over every customer (medians of the
    customers' own median gaps, counting customers with at least ``min_orders`` orders)."""
    per_segment: dict[str, list[float]] = {}
    everyone: list[float] = []
    for user, hist in history.customers.items():
        gap = hist.median_gap()
        if gap is None or hist.n_orders < min_orders:
            continue
        everyone.append(gap)
        per_segment.setdefault(segment_of.get(user, ""), []).append(gap)
    norms = {s: float(np.median(v)) for s, v in per_segment.items() if s}
    return norms, (float(np.median(everyone)) if everyone else None)


@dataclass(frozen=True)
class Lapse:
    """A customer past their usual time between orders."""

    days_since_last: int
    usual_gap: float
    basis: str  # "own", "segment" or "global": whose norm ``usual_gap`` is


def winback(
    history: PurchaseHistory,
    user_id: str,
    today: date,
    *,
    segment: str | None,
    segment_norms: Mapping[str, float],
    global_norm: float | None,
    factor: float = 2.0,
    min_orders: int = 3,
) -> Lapse | None:
    """The lapse of ``user_id`` when the days since their last order exceed ``factor`` × the
    usual gap (theirs with ``min_orders`` orders, else their segment's, else the global one)."""
    hist = history.customers.get(user_id)
    if hist is None:
        return None
    own = hist.median_gap() if hist.n_orders >= min_orders else None
    if own is not None and own > 0:
        norm, basis = own, "own"
    elif segment is not None and segment in segment_norms:
        norm, basis = segment_norms[segment], "segment"
    elif global_norm is not None:
        norm, basis = global_norm, "global"
    else:
        return None
    since = day_number(today) - hist.order_days[-1]
    if since > factor * norm:
        return Lapse(since, norm, basis)
    return None


# -- post-purchase cross-sell -----------------------------------------------------------------


def cross_sell_window(
    history: PurchaseHistory, user_id: str, today: date, *, min_days: int = 3, max_days: int = 14
) -> tuple[str, ...] | None:
    """The items of the last order when today is ``min_days``..``max_days`` days after it
    (both ends included); ``None`` outside the window."""
    hist = history.customers.get(user_id)
    if hist is None:
        return None
    since = day_number(today) - hist.order_days[-1]
    if min_days <= since <= max_days:
        # every order of the last day: a customer's split checkout is one visit
        last = hist.order_days[-1]
        items = {
            i
            for d, its in zip(hist.order_days, hist.order_items, strict=True)
            if d == last
            for i in its
        }
        return tuple(sorted(items))
    return None


class ModelNeighbours(Mapping[str, list[tuple[str, float]]]):
    """A co-occurrence model's ``k`` best neighbours of an item, asked of the model when an item
    is looked up, by id; items without any are absent.

    Every item's neighbours at once was 10^6 rows of ``k`` pairs in every server worker at
    10^6 items, for the few items a request's customer bought. The ``_CACHED`` items asked
    for most recently are kept.
    """

    _CACHED = 65_536

    def __init__(self, model: ItemSimilarity, items: Vocabulary, k: int) -> None:
        self.model = model
        self.vocab = items
        self.k = k
        self._asked = functools.lru_cache(maxsize=self._CACHED)(self._ask)

    def _ask(self, item: str) -> list[tuple[str, float]]:
        """The model's neighbours of ``item`` (none for an item it does not know)."""
        i = self.vocab.index(item)
        if i < 0:
            return []
        idx, scores = self.model.similar_items(np.array([i], dtype=np.intp), self.k)
        pairs = zip(idx[0].tolist(), scores[0].tolist(), strict=True)
        keep = [(j, float(v)) for j, v in pairs if j >= 0]
        names = self.vocab.ids_of([j for j, _ in keep])
        return [(name, v) for name, (_, v) in zip(names, keep, strict=True)]

    def __getitem__(self, item: str) -> list[tuple[str, float]]:
        hit = self._asked(item)
        if not hit:
            raise KeyError(item)
        return hit

    def __iter__(self) -> Iterator[str]:
        """Every item with a neighbour (asks the model for every item: tests, not serving)."""
        return (item for item in self.vocab.ids if item in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Complements:
    """Bought-together neighbours of items, by id.

    Built from a fitted :class:`~recsys.models.cooccurrence.CooccurrenceModel` (its
    ``similar_items``) and its item ids, or from baskets with :meth:`from_history`.
    """

    def __init__(self, neighbours: Mapping[str, list[tuple[str, float]]]) -> None:
        self.neighbours: Mapping[str, list[tuple[str, float]]] = (
            neighbours if isinstance(neighbours, ModelNeighbours) else dict(neighbours)
        )

    @property
    def from_a_model(self) -> bool:
        """Whether the neighbours are asked of a model item by item (nothing to copy)."""
        return isinstance(self.neighbours, ModelNeighbours)

    @classmethod
    def from_model(
        cls, model: ItemSimilarity, items: Vocabulary | Sequence[str], k: int = 10
    ) -> Complements:
        """Neighbours from a fitted co-occurrence model, asked for item by item
        (:class:`ModelNeighbours`)."""
        vocab = items if isinstance(items, Vocabulary) else Vocabulary(items)
        return cls(ModelNeighbours(model, vocab, k))

    @classmethod
    def from_history(
        cls, history: PurchaseHistory, *, k: int = 10, min_support: int = 2
    ) -> Complements:
        """Cosine co-occurrence of items in the same order, ``k`` best per item."""
        from recsys.models.cooccurrence import cooccurrence_matrix, keep_top_neighbours

        ids: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        n = 0
        for hist in history.customers.values():
            for items in hist.order_items:
                for item in items:
                    rows.append(n)
                    cols.append(ids.setdefault(item, len(ids)))
                n += 1
        if not rows:
            return cls({})
        baskets = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(n, len(ids)), dtype=np.float64
        )
        sim = keep_top_neighbours(
            cooccurrence_matrix(baskets, "cosine", min_support=min_support), k
        )
        names = list(ids)
        out: dict[str, list[tuple[str, float]]] = {}
        for r in range(sim.shape[0]):
            lo, hi = sim.indptr[r], sim.indptr[r + 1]
            pairs = sorted(
                (
                    (names[j], float(v))
                    for j, v in zip(sim.indices[lo:hi], sim.data[lo:hi], strict=True)
                ),
                key=lambda p: (-p[1], p[0]),
            )
            if pairs:
                out[names[r]] = pairs
        return cls(out)

    def for_basket(self, items: Sequence[str], k: int = 10) -> list[tuple[str, str, float]]:
        """``(complement, basket item it goes with, strength)``, strongest first, excluding the
        basket's own items; each complement once, with its strongest partner."""
        basket = set(items)
        best: dict[str, tuple[str, float]] = {}
        for item in items:
            for other, s in self.neighbours.get(item, []):
                if other in basket:
                    continue
                if other not in best or s > best[other][1]:
                    best[other] = (item, s)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][1], kv[0]))[:k]
        return [(c, partner, s) for c, (partner, s) in ranked]
