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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import scipy.sparse as sp

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, EventFrame
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
        """Purchases and returns of ``events`` before ``until`` (midnight UTC)."""
        limit = day_start_micros(until)
        mask = (events.ts < limit) & np.isin(events.event_type, [PURCHASE, RETURN])
        ev = events.select(np.flatnonzero(mask))
        order = np.argsort(ev.ts, kind="stable")
        orders: dict[tuple[str, object], int] = {}  # (user, order key) -> index in its lists
        customers: dict[str, CustomerHistory] = {}
        item_days: dict[tuple[str, str], list[int]] = {}
        prices: dict[str, list[float]] = {}
        redeemed_orders: dict[tuple[str, str], set[object]] = {}
        redeemed_value: dict[str, float] = {}
        # plain Python values, read once in time order: indexing numpy arrays element by
        # element cost more than the loop's own work (half a million events on Online Retail)
        users = np.asarray(ev.user_id, dtype=object)[order].tolist()
        items = np.asarray(ev.item_id, dtype=object)[order].tolist()
        types = np.asarray(ev.event_type, dtype=object)[order].tolist()
        order_ids = np.asarray(ev.order_id, dtype=object)[order].tolist()
        recs = np.asarray(ev.recommendation_id, dtype=object)[order].tolist()
        ts_list = np.asarray(ev.ts, dtype=np.int64)[order].tolist()
        price_list = np.asarray(ev.price, dtype=np.float64)[order].tolist()
        qty_list = np.asarray(ev.quantity, dtype=np.float64)[order].tolist()
        order_item_sets: dict[tuple[str, object], set[str]] = {}
        for user, item, etype, order_id, rec, ts, price, quantity in zip(
            users, items, types, order_ids, recs, ts_list, price_list, qty_list, strict=True
        ):
            value = 0.0 if math.isnan(price) else price * quantity
            if not user:
                continue
            hist = customers.get(user)
            if hist is None:
                hist = customers[user] = CustomerHistory()
            if etype == RETURN:
                hist.returned_value += value
                continue
            key = (user, order_id if order_id is not None else ("ts", ts))
            pos = orders.get(key)
            if pos is None:
                pos = orders[key] = hist.n_orders
                hist.order_days.append(ts // MICROS_PER_DAY)
                hist.order_values.append(0.0)
                hist.order_items.append(())
                order_item_sets[key] = set()
            hist.order_values[pos] += value
            in_order = order_item_sets[key]
            if item not in in_order:
                in_order.add(item)
                hist.order_items[pos] = (*hist.order_items[pos], item)
                days = item_days.setdefault((user, item), [])
                if not days or days[-1] != hist.order_days[pos]:
                    days.append(hist.order_days[pos])
            if not math.isnan(price) and price > 0:
                prices.setdefault(item, []).append(price)
            if isinstance(rec, str) and rec.startswith(REDEMPTION_PREFIX):
                offer = rec[len(REDEMPTION_PREFIX) :]
                redeemed_orders.setdefault((user, offer), set()).add(key)
                redeemed_value[offer] = redeemed_value.get(offer, 0.0) + value
        customers = {u: h for u, h in customers.items() if h.n_orders}
        return cls(
            customers=customers,
            item_days=item_days,
            item_price={k: float(np.median(v)) for k, v in prices.items()},
            redemptions={k: len(v) for k, v in redeemed_orders.items()},
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
    model: object,
    user_index: int,
    item_ids: Sequence[str],
    today: date,
    *,
    max_ratio: float = 2.0,
) -> list[DueItem]:
    """Due items from a fitted :class:`~recsys.models.buy_again.BuyAgainModel`.

    ``user_index`` is the customer's index in the model's user vocabulary (``-1``: unknown,
    nothing due); ``item_ids`` maps its item indices back to ids.
    """
    if user_index < 0:
        return []
    stats = model.purchase_stats(  # type: ignore[attr-defined]
        np.array([user_index], dtype=np.intp), now=day_start_micros(today)
    )
    threshold = float(model.due_ratio)  # type: ignore[attr-defined]
    ratio = np.nan_to_num(stats.due_ratio, nan=-1.0)
    hit = (ratio >= threshold) & (ratio < max_ratio)
    out = [
        DueItem(
            item_ids[int(i)],
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


class Complements:
    """Bought-together neighbours of items, by id.

    Built from a fitted :class:`~recsys.models.cooccurrence.CooccurrenceModel` (its
    ``similar_items``) and its item ids, or from baskets with :meth:`from_history`.
    """

    def __init__(self, neighbours: Mapping[str, list[tuple[str, float]]]) -> None:
        self.neighbours = dict(neighbours)

    @classmethod
    def from_model(cls, model: object, item_ids: Sequence[str], k: int = 10) -> Complements:
        """Neighbours from a fitted co-occurrence model."""
        idx, scores = model.similar_items(  # type: ignore[attr-defined]
            np.arange(len(item_ids), dtype=np.intp), k
        )
        out: dict[str, list[tuple[str, float]]] = {}
        for row, (its, ss) in enumerate(zip(idx.tolist(), scores.tolist(), strict=True)):
            pairs = [(item_ids[j], float(s)) for j, s in zip(its, ss, strict=True) if j >= 0]
            if pairs:
                out[item_ids[row]] = pairs
        return cls(out)

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
