"""Ranking offers by expected value, with reasons, caps and consents applied.

For a customer, every promotion that is valid, eligible (:mod:`recsys.offers.eligibility`)
and whose trigger fired today (:mod:`recsys.offers.triggers`) proposes candidate
``(item, promotion)`` pairs (``item`` is ``None`` for a basket promotion). Each gets::

    expected value = P × value − P × discount cost

where ``P`` is the probability that the customer buys the item within the horizon, ``value``
the item's margin (its price where the margin is unknown) and the discount cost what the
discount takes off that price. For a basket promotion, ``P`` is the probability of an order
in the horizon and the value is the customer's mean order value net of returns.
A ``min_basket`` condition multiplies ``P`` by the share of the customer's orders
(everyone's, for a newcomer) that reached it.

``P`` comes from the hybrid model's calibrated :meth:`~recsys.models.hybrid.HybridModel.probability`
(the probability of buying within its ``label_days``) when a fitted one is given. Otherwise,
and for items the hybrid model did not propose, from purchase history
(:class:`HistoryProbabilities`): ``1 − exp(−h · n / span)`` for an item the customer bought
``n`` times over ``span`` days (a Poisson rate over horizon ``h``), else the item's share of
the customers who ordered in the last ``h`` days. That fallback is a heuristic, not calibrated.

Per customer, the best candidate of each promotion is kept; then one promotion per item
(deduplication across triggers: a due item that is also a complement is offered once), ranked
by expected value (then priority). Customers who opted out of personalisation, and unknown
ones, only get non-personal promotions (``trigger = "always"``, no segment or birthday
targeting) on popular items, with the non-personal ``P`` and the reason ``non_personal``.
"""

from __future__ import annotations

import copy
import math
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recsys.config import StrictModel
from recsys.data.schema import CatalogItem, Customer
from recsys.data.vocab import Vocabulary
from recsys.lru import LRU
from recsys.models.base import PurchaseProbabilities
from recsys.offers.catalog import Promotion, PromotionCatalog
from recsys.offers.eligibility import CustomerFacts, OfferUsage, ineligibility, spent_on
from recsys.offers.items import ItemColumn, VersionCatalog
from recsys.offers.segments import PROSPECT
from recsys.offers.triggers import (
    Complements,
    DueItem,
    PurchaseHistory,
    birthday_occurrence,
    cross_sell_window,
    day_start_micros,
    due_items_from_history,
    gap_norms,
    winback,
)

#: Items considered per promotion for triggers that do not name items (birthday, win-back).
CANDIDATE_ITEMS = 50
#: Candidates kept per promotion, best first: the next stand in for an item another promotion
#: offers (one offer per item).
ALTERNATIVES = 3


class TriggerSettings(StrictModel):
    """The knobs of the triggers and of the ranking (defaults as documented)."""

    birthday_days_before: int = Field(default=30, ge=0, le=366)
    replenishment_min_purchases: int = Field(default=3, ge=2)
    replenishment_due_ratio: float = Field(default=0.8, gt=0)
    replenishment_max_ratio: float = Field(default=2.0, gt=0)
    winback_factor: float = Field(default=2.0, gt=0)
    winback_min_orders: int = Field(default=3, ge=2)
    cross_sell_min_days: int = Field(default=3, ge=0)
    cross_sell_max_days: int = Field(default=14, ge=0)
    horizon_days: float = Field(default=30.0, gt=0)


@dataclass(frozen=True)
class OfferCandidate:
    """One offer for one customer: a promotion on an item (or the basket) and its value."""

    user_id: str
    offer_id: str
    title: str
    item_id: str | None
    trigger: str
    reasons: tuple[str, ...]
    probability: float
    value: float
    discount_cost: float
    expected_value: float
    priority: int
    personal: bool

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict (what the API returns per offer)."""
        return {
            "offer_id": self.offer_id,
            "title": self.title,
            "item_id": self.item_id,
            "trigger": self.trigger,
            "reasons": list(self.reasons),
            "probability": round(self.probability, 6),
            "value": round(self.value, 4),
            "discount_cost": round(self.discount_cost, 4),
            "expected_value": round(self.expected_value, 4),
            "priority": self.priority,
            "personal": self.personal,
        }


class HistoryProbabilities:
    """The fallback ``P`` from purchase history (see the module docstring)."""

    def __init__(self, history: PurchaseHistory, horizon_days: float) -> None:
        self.history = history
        self.horizon = float(horizon_days)
        start = history.until_day - horizon_days
        buyers: dict[str, set[str]] = {}
        active: set[str] = set()
        for user, hist in history.customers.items():
            for d, items in zip(hist.order_days, hist.order_items, strict=True):
                if d >= start:
                    active.add(user)
                    for item in items:
                        buyers.setdefault(item, set()).add(user)
        n = max(len(active), 1)
        self.base_rate = {item: len(users) / n for item, users in buyers.items()}
        #: items by recent buyers, most first (ties by id): the non-personal candidates
        self.popular = sorted(buyers, key=lambda i: (-len(buyers[i]), i))
        self.order_rate_global = len(active) / max(len(history.customers), 1)

    def with_history(self, history: PurchaseHistory) -> HistoryProbabilities:
        """The same shop-wide rates, reading customers from ``history`` (one customer's, on the
        per-request path): nothing is recomputed."""
        out = copy.copy(self)
        out.history = history
        return out

    def _span(self, user_id: str) -> float:
        hist = self.history.customers[user_id]
        return max(float(self.history.until_day - hist.order_days[0]), self.horizon)

    def item(self, user_id: str | None, item_id: str) -> float:
        """``P`` that the customer buys the item within the horizon."""
        days = self.history.item_days.get((user_id, item_id)) if user_id else None
        if days:
            return 1.0 - math.exp(-self.horizon * len(days) / self._span(user_id or ""))
        return self.base_rate.get(item_id, 0.0)

    def order(self, user_id: str | None) -> float:
        """``P`` that the customer places an order within the horizon."""
        hist = self.history.customers.get(user_id or "")
        if hist is None:
            return self.order_rate_global
        return 1.0 - math.exp(-self.horizon * hist.n_orders / self._span(user_id or ""))

    def candidates(self, user_id: str | None) -> dict[str, float]:
        """Items worth considering: those the customer bought, and the popular ones."""
        out = {i: self.base_rate.get(i, 0.0) for i in self.popular[:CANDIDATE_ITEMS]}
        hist = self.history.customers.get(user_id or "")
        if hist is not None and user_id:
            for items in hist.order_items:
                for i in items:
                    out[i] = self.item(user_id, i)
        return out


class HybridProbabilities:
    """Calibrated ``P`` from a fitted :class:`~recsys.models.hybrid.HybridModel`.

    Parameters
    ----------
    model
        The fitted hybrid model.
    users, items
        Its vocabularies (ids of the version it belongs to).
    history
        ``users × items`` interaction matrix of that version (``history.npz``).
    today
        Probabilities are computed at ``today``'s midnight UTC.
    max_cached
        Customers whose candidates are kept (the least recently used go first); ``None``
        keeps every one (a campaign prefetches them all). A server bounds it: its context
        lives all day and would otherwise hold every customer who asked.
    """

    def __init__(
        self,
        model: PurchaseProbabilities,
        users: Vocabulary,
        items: Vocabulary,
        history: sp.csr_matrix,
        today: date,
        *,
        max_cached: int | None = None,
    ) -> None:
        self.model = model
        self.users = users
        self.items = items
        self.history = history
        self.today = today
        self.now = day_start_micros(today)
        self.max_cached = max_cached
        # None: every customer asked for (a campaign's batch), never dropped
        self._cache: LRU[str, dict[str, float]] = LRU(
            sys.maxsize if max_cached is None else max(max_cached, 1)
        )

    def bounded(self, max_cached: int) -> HybridProbabilities:
        """The same model with an empty cache of at most ``max_cached`` customers."""
        return HybridProbabilities(
            self.model, self.users, self.items, self.history, self.today, max_cached=max_cached
        )

    @property
    def calibrated(self) -> bool:
        """Whether the model's probabilities are calibrated (not the fixed-blend fallback)."""
        return bool(self.model.calibrated_)

    def prefetch(self, user_ids: Sequence[str], chunk: int = 512) -> dict[str, dict[str, float]]:
        """Compute the candidates of many customers at once (a campaign's batch); returns
        those computed now."""
        todo = [u for u in user_ids if u not in self._cache]
        idx = self.users.indices(todo)
        known = [(u, int(i)) for u, i in zip(todo, idx.tolist(), strict=True) if i >= 0]
        out: dict[str, dict[str, float]] = {u: {} for u in todo}
        hist = sp.csr_matrix(self.history)
        for start in range(0, len(known), chunk):
            part = known[start : start + chunk]
            rows = np.array([i for _, i in part], dtype=np.intp)
            probs = self.model.probability(rows, hist[rows], now=self.now)
            for r, (u, _) in enumerate(part):
                cols = np.flatnonzero(~np.isnan(probs[r]))
                # only these items' ids: a version's vocabulary decodes ids on demand
                ids = self.items.ids_of(cols)
                out[u] = dict(zip(ids, probs[r, cols].tolist(), strict=True))
        for u, probs_of in out.items():
            self._cache.put(u, probs_of)
        return out

    def candidates(self, user_id: str | None) -> dict[str, float]:
        """The hybrid model's candidates for the customer with their probabilities."""
        if not user_id:
            return {}
        hit = self._cache.get(user_id)
        if hit is None:
            computed = self.prefetch([user_id])
            # another thread may have computed it meanwhile (then prefetch skipped it)
            hit = computed[user_id] if user_id in computed else self._cache.get(user_id) or {}
        return hit


@dataclass(frozen=True)
class ShopTotals:
    """What ranking reads about *every* customer, summed once when a context is built.

    Its size grows with orders, promotions and items, never with what one request needs to
    walk: a newcomer's basket share and mean order value, the promotions' total redemptions
    and spend, and the usual repurchase interval per item are looked up here, so ranking one
    customer never iterates over the others (the per-request path holds only that customer).
    """

    #: Every order's value, ascending: a newcomer's share of orders reaching a ``min_basket``.
    order_values: NDArray[np.float64]
    #: The mean order value (in the order the history lists them, as it was always computed).
    mean_order_value: float
    #: Redemptions per offer, over every customer.
    redemptions: dict[str, int]
    #: Per item, the median over customers of their own median repurchase interval (days);
    #: ``None`` when due items come from a model.
    item_interval: dict[str, float] | None

    @classmethod
    def from_history(cls, history: PurchaseHistory, *, item_interval: bool) -> ShopTotals:
        """The totals of ``history`` (``item_interval``: compute the per-item intervals)."""
        values = [v for h in history.customers.values() for v in h.order_values]
        redemptions: dict[str, int] = {}
        for (_, offer), n in history.redemptions.items():
            redemptions[offer] = redemptions.get(offer, 0) + n
        return cls(
            order_values=np.sort(np.asarray(values, dtype=np.float64)),
            mean_order_value=float(np.mean(values)) if values else 0.0,
            redemptions=redemptions,
            item_interval=history.item_interval() if item_interval else None,
        )

    def basket_share(self, minimum: float) -> float:
        """Share of every customer's orders worth at least ``minimum`` (0 with no order)."""
        n = len(self.order_values)
        if n == 0:
            return 0.0
        below = int(np.searchsorted(self.order_values, minimum, side="left"))
        return (n - below) / n


@dataclass
class OfferContext:
    """Everything offer ranking reads, for one day. Build it with :func:`build_context`.

    A context holds the shop's part (promotions, items, norms, complements, models,
    :class:`ShopTotals`) and customers' part (histories, profiles, segments, impressions):
    a campaign's holds every customer; a server keeps :meth:`shop_part` (no customer) and
    adds one customer per request with :meth:`for_customer`.
    """

    promotions: PromotionCatalog
    today: date
    history: PurchaseHistory
    customers: dict[str, Customer]
    segments: dict[str, str]
    item_price: Mapping[str, float]
    item_margin: Mapping[str, float]
    item_category: Mapping[str, str]
    in_stock: Mapping[str, bool]
    fallback: HistoryProbabilities
    complements: Complements
    settings: TriggerSettings = field(default_factory=TriggerSettings)
    hybrid: HybridProbabilities | None = None
    due: Callable[[str], list[DueItem]] | None = None
    impressions: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    segment_norms: dict[str, float] = field(default_factory=dict)
    global_norm: float | None = None
    totals: ShopTotals | None = None

    def __post_init__(self) -> None:
        if self.totals is None:
            self.totals = ShopTotals.from_history(self.history, item_interval=self.due is None)

    @property
    def shop(self) -> ShopTotals:
        """The shop-wide totals (computed when the context was made)."""
        assert self.totals is not None  # set in __post_init__
        return self.totals

    def shop_part(self, *, max_cached: int | None = None) -> OfferContext:
        """This context without any customer: what a server keeps all day.

        Customers' histories, profiles, segments and impressions are left out; everything
        ranking reads about all of them is in :attr:`totals`. ``max_cached`` bounds the hybrid
        model's per-customer cache of the copy.
        """
        h = self.history
        empty = PurchaseHistory(
            customers={},
            item_days={},
            item_price=h.item_price,
            redemptions={},
            redeemed_value=h.redeemed_value,
            until_day=h.until_day,
        )
        # A new copy of what a server keeps all day: its strings and floats were made while
        # every purchase of the shop was in memory, and scattered among the freed rows, the
        # ~10^5 of them (prices, base rates, popularity, intervals, complements) kept ~120 MiB
        # of a worker's pages from being reused or returned at 10^6 items. A pickle round trip
        # makes new objects (copy.deepcopy would keep the same strings).
        # (complements asked of a model hold the model: they are kept as they are)
        plain = None if self.complements.from_a_model else self.complements
        kept = (empty, self.fallback.with_history(empty), self.totals, plain)
        empty, fallback, totals, plain = pickle.loads(pickle.dumps(kept))
        complements = self.complements if plain is None else plain
        hybrid = self.hybrid
        if hybrid is not None and max_cached is not None:
            hybrid = hybrid.bounded(max_cached)
        price = self.item_price
        if isinstance(price, ItemColumn):
            price = price.with_fallback(empty.item_price)
        return replace(
            self,
            item_price=price,
            totals=totals,
            complements=complements,
            history=empty,
            customers={},
            segments={},
            impressions={},
            fallback=fallback,
            hybrid=hybrid,
        )

    def for_customer(
        self,
        user_id: str,
        history: PurchaseHistory,
        *,
        profile: Customer | None,
        segment: str | None,
        impressions: Mapping[str, list[int]],
    ) -> OfferContext:
        """This (shop) context with one customer: ranking them reads what it would read in a
        context built with every customer.

        ``history`` is the customer's own (:meth:`PurchaseHistory.from_events` of their events);
        its shop-wide parts (prices, offers' redeemed value, the day) are taken from this
        context. ``impressions`` are the customer's, per offer, oldest first.
        """
        h = self.history
        mine = replace(
            history,
            item_price=h.item_price,
            redeemed_value=h.redeemed_value,
            until_day=h.until_day,
        )
        return replace(
            self,
            history=mine,
            customers={user_id: profile} if profile is not None else {},
            segments={user_id: segment} if segment is not None else {},
            impressions={(user_id, offer): list(ts) for offer, ts in impressions.items()},
            fallback=self.fallback.with_history(mine),
        )

    def probability_source(self) -> str:
        """``hybrid_calibrated``, ``hybrid_uncalibrated`` or ``history_fallback``."""
        if self.hybrid is None:
            return "history_fallback"
        return "hybrid_calibrated" if self.hybrid.calibrated else "hybrid_uncalibrated"

    def due_items(self, user_id: str) -> list[DueItem]:
        """Items the customer is due to buy again today."""
        if self.due is not None:
            return self.due(user_id)
        s = self.settings
        return due_items_from_history(
            self.history,
            user_id,
            self.today,
            min_purchases=s.replenishment_min_purchases,
            due_ratio=s.replenishment_due_ratio,
            max_ratio=s.replenishment_max_ratio,
            item_interval=self.shop.item_interval,
        )

    def item_probability(self, user_id: str | None, item_id: str, personal: bool) -> float:
        """``P`` for one item: the hybrid model's when it proposed the item, else history's."""
        if personal and self.hybrid is not None and user_id:
            p = self.hybrid.candidates(user_id).get(item_id)
            if p is not None:
                return p
        return self.fallback.item(user_id if personal else None, item_id)

    def facts(self, user_id: str) -> CustomerFacts:
        """Eligibility facts of a customer (unknown ones are prospects)."""
        c = self.customers.get(user_id)
        hist = self.history.customers.get(user_id)
        open_ = False
        if c is not None and c.birthday is not None:
            open_ = (
                birthday_occurrence(c.birthday, self.today, self.settings.birthday_days_before)
                is not None
            )
        return CustomerFacts(
            user_id=user_id,
            segment=self.segments.get(user_id, PROSPECT),
            n_orders=hist.n_orders if hist else 0,
            birthday_open=open_,
            personalisation_opt_out=bool(c and c.personalisation_opt_out),
            marketing_opt_out=bool(c and c.marketing_opt_out),
        )

    def usage(self, promo: Promotion, user_id: str) -> OfferUsage:
        """Caps used so far by the customer and in total, and impressions in the period."""
        h = self.history
        total = self.shop.redemptions.get(promo.id, 0)
        shown = 0
        cap = promo.frequency_cap
        if cap is not None:
            start = day_start_micros(self.today - timedelta(days=cap.period_days - 1))
            end = day_start_micros(self.today + timedelta(days=1))
            shown = sum(start <= t < end for t in self.impressions.get((user_id, promo.id), ()))
        return OfferUsage(
            customer_redemptions=h.redemptions.get((user_id, promo.id), 0),
            total_redemptions=total,
            spent=spent_on(promo, total, h.redeemed_value.get(promo.id, 0.0)),
            impressions_in_period=shown,
        )

    def fired(self, user_id: str) -> dict[str, list[tuple[str | None, str]]]:
        """Triggers that fire for the customer today: kind -> ``(item or None, reason)``."""
        s = self.settings
        out: dict[str, list[tuple[str | None, str]]] = {"always": [(None, "always")]}
        if self.facts(user_id).birthday_open:
            out["birthday"] = [(None, "birthday")]
        if user_id not in self.history.customers:
            return out
        due = self.due_items(user_id)
        if due:
            out["replenishment"] = [(d.item_id, "due_for_repurchase") for d in due]
        lapse = winback(
            self.history,
            user_id,
            self.today,
            segment=self.segments.get(user_id),
            segment_norms=self.segment_norms,
            global_norm=self.global_norm,
            factor=s.winback_factor,
            min_orders=s.winback_min_orders,
        )
        if lapse is not None:
            out["winback"] = [(None, "winback")]
        basket = cross_sell_window(
            self.history,
            user_id,
            self.today,
            min_days=s.cross_sell_min_days,
            max_days=s.cross_sell_max_days,
        )
        if basket:
            pairs = self.complements.for_basket(basket, k=CANDIDATE_ITEMS)
            if pairs:
                out["cross_sell"] = [(c, f"often_bought_with:{p}") for c, p, _ in pairs]
        return out


def build_context(
    promotions: PromotionCatalog,
    today: date,
    history: PurchaseHistory,
    *,
    customers: Sequence[Customer] = (),
    catalog: Sequence[CatalogItem] | VersionCatalog = (),
    segments: Mapping[str, str] | None = None,
    settings: TriggerSettings | None = None,
    complements: Complements | None = None,
    hybrid: HybridProbabilities | None = None,
    due: Callable[[str], list[DueItem]] | None = None,
    impressions: Mapping[tuple[str, str], list[int]] | None = None,
) -> OfferContext:
    """Assemble an :class:`OfferContext` for ``today``.

    ``history`` must hold purchases before ``today`` only (``PurchaseHistory.from_events(
    events, today)``). Missing models are replaced by their history-based equivalents:
    complements from co-occurrence in orders, due items from purchase intervals, ``P`` from
    :class:`HistoryProbabilities`.

    ``catalog`` is the shop's catalogue as rows (an item missing from it is in stock), or the
    one a server holds already (:class:`~recsys.offers.items.VersionCatalog`), read through
    its arrays without a Python object per item.
    """
    settings = settings or TriggerSettings()
    segs = dict(segments or {})
    norms, global_norm = gap_norms(history, segs, min_orders=settings.winback_min_orders)
    price: Mapping[str, float]
    margin: Mapping[str, float]
    category: Mapping[str, str]
    stock: Mapping[str, bool]
    if isinstance(catalog, VersionCatalog):
        price, margin, category, stock = catalog.columns(history.item_price)
    else:
        price, margin, category, stock = _item_dicts(catalog, history.item_price)
    return OfferContext(
        promotions=promotions,
        today=today,
        history=history,
        customers={c.user_id: c for c in customers},
        segments=segs,
        item_price=price,
        item_margin=margin,
        item_category=category,
        in_stock=stock,
        fallback=HistoryProbabilities(history, settings.horizon_days),
        complements=complements if complements is not None else Complements.from_history(history),
        settings=settings,
        hybrid=hybrid,
        due=due,
        impressions=dict(impressions or {}),
        segment_norms=norms,
        global_norm=global_norm,
    )


def _item_dicts(
    catalog: Sequence[CatalogItem], event_price: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, float], dict[str, str], dict[str, bool]]:
    """Price (the catalogue's, else ``event_price``), margin, category and stock per item."""
    price = dict(event_price)
    margin: dict[str, float] = {}
    category: dict[str, str] = {}
    stock: dict[str, bool] = {}
    for it in catalog:
        if it.price is not None:
            price[it.item_id] = float(it.price)
        if it.margin is not None:
            margin[it.item_id] = float(it.margin)
        category[it.item_id] = it.category
        stock[it.item_id] = it.in_stock
    return price, margin, category, stock


def _basket_share(ctx: OfferContext, user_id: str | None, minimum: float | None) -> float:
    """Share of the customer's orders (everyone's for a newcomer) worth at least ``minimum``."""
    if minimum is None:
        return 1.0
    hist = ctx.history.customers.get(user_id or "")
    if hist is None:
        return ctx.shop.basket_share(minimum)
    values = hist.order_values
    if not values:
        return 0.0
    return sum(v >= minimum for v in values) / len(values)


def _item_candidate(
    ctx: OfferContext,
    promo: Promotion,
    user_id: str,
    item: str,
    reasons: tuple[str, ...],
    personal: bool,
) -> OfferCandidate | None:
    price = ctx.item_price.get(item)
    if price is None or price <= 0 or not ctx.in_stock.get(item, True):
        return None  # nothing to value, or nothing to sell
    p = ctx.item_probability(user_id, item, personal)
    p *= _basket_share(ctx, user_id if personal else None, promo.eligibility.min_basket)
    value = ctx.item_margin.get(item, price)
    return _candidate(promo, user_id, item, reasons, personal, p, value, promo.discount.cost(price))


def _basket_candidate(
    ctx: OfferContext, promo: Promotion, user_id: str, reasons: tuple[str, ...], personal: bool
) -> OfferCandidate | None:
    who = user_id if personal else None
    hist = ctx.history.customers.get(who or "")
    # net of returns: a cancelled order is no value
    value = hist.monetary / hist.n_orders if hist is not None else ctx.shop.mean_order_value
    if value <= 0:
        return None
    p = ctx.fallback.order(who) * _basket_share(ctx, who, promo.eligibility.min_basket)
    return _candidate(promo, user_id, None, reasons, personal, p, value, promo.discount.cost(value))


def _candidate(
    promo: Promotion,
    user_id: str,
    item: str | None,
    reasons: tuple[str, ...],
    personal: bool,
    p: float,
    value: float,
    cost: float,
) -> OfferCandidate:
    """An offer of ``promo``, taken with probability ``p``: earns ``value``, costs ``cost``."""
    return OfferCandidate(
        user_id=user_id,
        offer_id=promo.id,
        title=promo.title,
        item_id=item,
        trigger=promo.trigger,
        reasons=reasons,
        probability=p,
        value=value,
        discount_cost=cost,
        expected_value=p * value - p * cost,
        priority=promo.priority,
        personal=personal,
    )


def candidate_offers(
    ctx: OfferContext,
    user_id: str,
    *,
    channel: str,
    campaign: bool = False,
    skip: Callable[[Promotion], bool] | None = None,
) -> tuple[list[OfferCandidate], dict[str, str]]:
    """Every eligible promotion's best candidates for the customer (up to
    :data:`ALTERNATIVES` items each, best first), unranked across promotions.

    Returns the candidates and, per promotion left out, why (``"trigger_not_fired"`` or an
    :func:`~recsys.offers.eligibility.ineligibility` reason). ``skip`` drops promotions the
    caller already handled (a campaign's "sent in this episode").
    """
    facts = ctx.facts(user_id)
    # an unknown customer has nothing to personalise with: treated like an opt-out
    personal_ok = not facts.personalisation_opt_out and (
        user_id in ctx.customers or user_id in ctx.history.customers
    )
    non_personal: dict[str, list[tuple[str | None, str]]] = {"always": [(None, "non_personal")]}
    fired = ctx.fired(user_id) if personal_ok else non_personal
    out: list[OfferCandidate] = []
    why: dict[str, str] = {}
    for promo in ctx.promotions:
        if promo.personal and not personal_ok:
            why[promo.id] = (
                "personalisation_opt_out" if facts.personalisation_opt_out else "unknown_customer"
            )
            continue
        reason = ineligibility(
            promo,
            facts,
            ctx.today,
            channel=channel,
            usage=ctx.usage(promo, user_id),
            campaign=campaign,
        )
        if reason is not None:
            why[promo.id] = reason
            continue
        hits = fired.get(promo.trigger)
        if not hits:
            why[promo.id] = "trigger_not_fired"
            continue
        if skip is not None and skip(promo):
            why[promo.id] = "already_sent"
            continue
        extra = (f"segment:{facts.segment}",) if promo.eligibility.segments else ()
        found = _best_for(ctx, promo, user_id, hits, extra, personal=personal_ok)
        if not found:
            why[promo.id] = "no_item"
            continue
        out.extend(found)
    return out, why


def _best_for(
    ctx: OfferContext,
    promo: Promotion,
    user_id: str,
    hits: list[tuple[str | None, str]],
    extra: tuple[str, ...],
    *,
    personal: bool,
) -> list[OfferCandidate]:
    trigger_reasons = tuple(dict.fromkeys(r for _, r in hits))
    if promo.applies_to.basket:
        basket = _basket_candidate(ctx, promo, user_id, (*trigger_reasons[:3], *extra), personal)
        return [] if basket is None else [basket]
    named = [(i, r) for i, r in hits if i is not None]
    if named:
        pairs = named
    else:
        pool = (
            ctx.hybrid.candidates(user_id) if personal and ctx.hybrid is not None else {}
        ) or ctx.fallback.candidates(user_id if personal else None)
        top = sorted(pool, key=lambda i: (-pool[i], i))
        pairs = [(i, trigger_reasons[0]) for i in top]
    tried: list[OfferCandidate] = []
    for item, reason in pairs:
        if not promo.applies_to.matches(item, ctx.item_category.get(item, "")):
            continue
        cand = _item_candidate(ctx, promo, user_id, item, (reason, *extra), personal)
        if cand is None:
            continue
        tried.append(cand)
        if len(tried) >= CANDIDATE_ITEMS:
            break
    # the best first (the first tried of equals); the next ones stand in when another
    # promotion offers the best item (one offer per item)
    tried.sort(key=lambda c: -c.expected_value)
    return tried[:ALTERNATIVES]


def select_offers(candidates: Sequence[OfferCandidate], k: int) -> list[OfferCandidate]:
    """At most ``k`` offers by expected value (then priority, then id), one per item and one
    per promotion.

    The same item proposed by two promotions (say due *and* a complement) is offered once,
    by the more valuable promotion; the other offers its next item, when it has one (a
    birthday offer on any item was never sent to a customer whose best item a replenishment
    offer took). At most one basket promotion is kept.
    """
    ranked = sorted(
        candidates, key=lambda c: (-c.expected_value, -c.priority, c.offer_id, c.item_id or "")
    )
    out: list[OfferCandidate] = []
    seen: set[str | None] = set()
    offered: set[str] = set()
    for c in ranked:
        if c.item_id in seen or c.offer_id in offered:
            continue
        seen.add(c.item_id)
        offered.add(c.offer_id)
        out.append(c)
        if len(out) == k:
            break
    return out


def rank_offers_for_user(
    ctx: OfferContext, user_id: str, *, channel: str = "web", k: int = 3
) -> list[OfferCandidate]:
    """The offers to show ``user_id`` today on ``channel``, best first (what the API calls).

    Unknown customers and those who opted out of personalisation get non-personal offers
    only. The caller records what it shows with
    :func:`recsys.offers.store.record_impressions`, which the frequency caps count.
    """
    candidates, _ = candidate_offers(ctx, user_id, channel=channel)
    return select_offers(candidates, k)


__all__ = [
    "HistoryProbabilities",
    "HybridProbabilities",
    "OfferCandidate",
    "OfferContext",
    "ShopTotals",
    "TriggerSettings",
    "build_context",
    "candidate_offers",
    "rank_offers_for_user",
    "select_offers",
]
