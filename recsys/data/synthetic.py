"""A seeded generator of realistic shop data, with the truth behind it kept.

Real logs never say what a customer *would* have bought; a simulated shop does. Tests, demos
and the A/B-test simulator use :func:`generate_shop` to get data whose laws are known:

* **popularity** follows Zipf's law (item of popularity rank ``r`` is viewed ``∝ r^-s``);
* **tastes**: each customer spreads interest over top-level categories (a sparse Dirichlet)
  and has latent factors; an item's appeal to a customer is ``taste × popularity ×
  exp(γ · user·item)``;
* **sessions and a funnel**: a session browses mostly one category; each view becomes a cart
  with a probability that rises with the customer's affinity and falls with price, and each
  cart is bought with probability :data:`P_BUY_GIVEN_CART`, all in one order;
* **complements**: many items have a partner that is often added to the same order;
* **consumables** (coffee, pet food, skincare...) are bought again about every
  ``cycle_days`` (with noise) for a while;
* **returns**: a few order lines come back within a month, wholly or in part;
* **guests**: some sessions have no customer (``user_id ""``);
* **customers** have birthdays (some on 29 February), sign-up dates, regions and a few
  opt-outs.

:class:`ShopTruth` keeps the latent preferences, and :meth:`ShopTruth.true_affinity` gives
the probability that a customer buys an item once shown it, which is what an experiment
simulator needs. Everything is vectorised with numpy and generated in time-ordered chunks, so
10^7 events take minutes in bounded memory when written with :func:`write_shop`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from gzip import open as gzip_open
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from recsys.data.keyed import CATALOG_COLUMNS
from recsys.data.schema import CUSTOMER_COLUMNS, CatalogItem, Customer, EventFrame
from recsys.errors import ConfigError, DataError

#: Probability that a carted item is bought in the session's order.
P_BUY_GIVEN_CART = 0.6

#: Top-level categories, their sub-categories, median price, and which subs are consumables.
_CATEGORIES: dict[str, tuple[list[str], float, set[str]]] = {
    "Home": (["Kitchen", "Decor", "Bedding", "Lighting"], 25.0, set()),
    "Fashion": (["Women", "Men", "Shoes", "Accessories"], 40.0, set()),
    "Electronics": (["Phones", "Audio", "Computers", "Cameras"], 120.0, set()),
    "Sports": (["Fitness", "Outdoor", "Cycling"], 50.0, set()),
    "Toys": (["Games", "Puzzles", "Baby"], 20.0, set()),
    "Books": (["Fiction", "Non-fiction", "Children"], 12.0, set()),
    "Grocery": (["Coffee", "Snacks", "Drinks"], 6.0, {"Coffee", "Snacks", "Drinks"}),
    "Beauty": (["Skincare", "Haircare", "Fragrance"], 15.0, {"Skincare", "Haircare"}),
    "Pet": (["Dog food", "Cat food", "Pet toys"], 18.0, {"Dog food", "Cat food"}),
}
_REGIONS = ["London", "South East", "North West", "Scotland", "Midlands", "Wales", "Ireland"]
_REGION_WEIGHTS = np.array([0.25, 0.2, 0.15, 0.12, 0.15, 0.07, 0.06])

_VIEW, _CART, _PURCHASE, _RETURN = 0, 1, 2, 3
_TYPE_NAMES = np.array(["view", "cart", "purchase", "return"], dtype=object)
_FACTORS = 8
_CANDIDATES = 8
_GAMMA = 1.5  # how strongly latent factors steer choice within a category
_CHUNK_EVENTS = 100_000


@dataclass(frozen=True)
class ShopTruth:
    """The preferences the events were drawn from (indices follow the generated ids).

    Attributes
    ----------
    categories
        Sub-category paths (``"Top > Sub"``); ``item_category`` indexes them.
    item_category, item_top
        Per item, its sub-category and top-level category index.
    popularity
        Per item, its base view probability (sums to 1; Zipf over a random ranking).
    item_price
        Per item, its price.
    user_factors, item_factors
        Latent vectors; their dot product is the customer's affinity beyond category taste.
    taste
        ``users × top categories``: how a customer's browsing spreads (rows sum to 1).
    activity
        Per user, relative rate of sessions (log-normal: a few customers do most shopping).
    cycle_days
        Per item, the repurchase cycle of a consumable, ``NaN`` for other items.
    complement
        Per item, the item often bought with it, ``-1`` for none.
    """

    categories: list[str]
    item_category: NDArray[np.intp]
    item_top: NDArray[np.intp]
    popularity: NDArray[np.float64]
    item_price: NDArray[np.float64]
    user_factors: NDArray[np.float64]
    item_factors: NDArray[np.float64]
    taste: NDArray[np.float64]
    activity: NDArray[np.float64]
    cycle_days: NDArray[np.float64]
    complement: NDArray[np.intp]
    _log_price_ratio: NDArray[np.float64] = field(repr=False)

    def preference(
        self, user_idx: NDArray[np.integer] | int, item_idx: NDArray[np.integer] | int
    ) -> NDArray[np.float64]:
        """How much each user likes each item, on a log scale (0 = an average match).

        Arrays broadcast: ``preference(users[:, None], items[None, :])`` is a full table.
        """
        u = np.asarray(user_idx, dtype=np.intp)
        i = np.asarray(item_idx, dtype=np.intp)
        n_top = self.taste.shape[1]
        dot = np.einsum("...k,...k->...", self.user_factors[u], self.item_factors[i])
        return np.log(self.taste[u, self.item_top[i]] * n_top) * 0.5 + _GAMMA * dot

    def cart_probability(
        self, user_idx: NDArray[np.integer] | int, item_idx: NDArray[np.integer] | int
    ) -> NDArray[np.float64]:
        """Probability that a view of the item becomes a cart."""
        i = np.asarray(item_idx, dtype=np.intp)
        z = -2.5 + self.preference(user_idx, i) - 0.4 * self._log_price_ratio[i]
        return 1.0 / (1.0 + np.exp(-z))

    def true_affinity(
        self, user_idx: NDArray[np.integer] | int, item_idx: NDArray[np.integer] | int
    ) -> NDArray[np.float64]:
        """Probability that the user buys the item once shown (viewing) it.

        This is the ground truth an experiment simulator draws conversions from: show a
        customer a list, and each item in it is bought with this probability.
        """
        return self.cart_probability(user_idx, item_idx) * P_BUY_GIVEN_CART

    def best_items(self, user_idx: int, k: int) -> NDArray[np.intp]:
        """The ``k`` items with the highest true affinity for a user (the oracle's list)."""
        scores = self.true_affinity(
            np.full(len(self.popularity), user_idx), np.arange(len(self.popularity))
        )
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        return top[np.argsort(-scores[top], kind="stable")]


@dataclass
class SyntheticShop:
    """A generated shop: catalogue, customers, the truth, and its events.

    Events are generated on demand, in time-ordered chunks (:meth:`iter_events`); the
    :attr:`events` property gathers them into one frame (only for sizes that fit in memory).
    """

    catalog: list[CatalogItem]
    customers: list[Customer]
    truth: ShopTruth
    user_ids: list[str]
    item_ids: list[str]
    n_events: int
    seed: int
    start: datetime
    days: int
    guest_share: float = 0.1
    return_rate: float = 0.04
    _events: EventFrame | None = field(default=None, repr=False)

    @property
    def events(self) -> EventFrame:
        """Every event, oldest first (generated on first use)."""
        if self._events is None:
            frame = _concat(list(self.iter_events()))
            self._events = frame.select(np.argsort(frame.ts, kind="stable"))
        return self._events

    def iter_events(self, chunk_events: int = _CHUNK_EVENTS) -> Iterator[EventFrame]:
        """The events in chunks of about ``chunk_events``, each sorted by time.

        Chunks cover consecutive time slices; a return or repeat purchase lands in the chunk
        of the purchase that caused it, so order across chunks is only roughly by time.
        """
        yield from _generate_events(self, chunk_events)


# -- the generator --------------------------------------------------------------------------


def generate_shop(
    n_users: int,
    n_items: int,
    n_events: int | None = None,
    *,
    seed: int,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    days: int = 90,
    zipf_exponent: float = 1.0,
    guest_share: float = 0.1,
    return_rate: float = 0.04,
    complement_share: float = 0.5,
) -> SyntheticShop:
    """Make a shop whose customers have known tastes.

    Parameters
    ----------
    n_users, n_items
        Registered customers and catalogue items.
    n_events
        Events to generate (exactly this many); by default 30 per customer.
    seed
        Everything is determined by it.
    start, days
        The period the events cover (``start`` must be timezone-aware).
    zipf_exponent
        Skew of item popularity (1.0: the top tenth of items draws about 70% of views).
    guest_share
        Share of sessions with no customer; ``1.0`` makes a guests-only shop (sessions and
        orders, no customer id on any event), as a shop without accounts has.
    return_rate
        Share of order lines returned.
    complement_share
        Share of items that have a complement.

    Returns
    -------
    SyntheticShop
        Catalogue, customers and truth now; events generated when first asked for.
    """
    if n_users < 1 or n_items < 2:
        raise ConfigError(f"a shop needs at least 1 user and 2 items (got {n_users}, {n_items})")
    if days < 1:
        raise ConfigError(f"days must be at least 1 (got {days})")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ConfigError("start must be timezone-aware")
    if n_events is None:
        n_events = 30 * n_users
    if n_events < 0:
        raise ConfigError(f"n_events must be >= 0 (got {n_events})")
    if not 0.0 <= guest_share <= 1.0:
        raise ConfigError(f"guest_share must be in [0, 1] (got {guest_share})")
    for name, value in (
        ("return_rate", return_rate),
        ("complement_share", complement_share),
    ):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1) (got {value})")
    rng = np.random.default_rng([seed, 0])

    # -- categories and items
    categories, cat_top, cat_price, cat_consumable = [], [], [], []
    for t, (top, (subs, price, consumable)) in enumerate(_CATEGORIES.items()):
        for sub in subs:
            categories.append(f"{top} > {sub}")
            cat_top.append(t)
            cat_price.append(price)
            cat_consumable.append(sub in consumable)
    n_top = len(_CATEGORIES)
    cat_weight = rng.dirichlet(np.full(len(categories), 2.0))
    item_category = rng.choice(len(categories), size=n_items, p=cat_weight).astype(np.intp)
    item_top = np.asarray(cat_top, dtype=np.intp)[item_category]
    median_price = np.asarray(cat_price)[item_category]
    item_price = np.round(median_price * rng.lognormal(0.0, 0.5, n_items), 2).clip(0.5)
    log_price_ratio = np.log(item_price / median_price)
    ranks = rng.permutation(n_items) + 1.0
    popularity: NDArray[np.float64] = np.asarray(ranks**-zipf_exponent, dtype=np.float64)
    popularity /= popularity.sum()
    is_consumable = np.asarray(cat_consumable)[item_category]
    cycle_days = np.where(is_consumable, rng.uniform(14.0, 60.0, n_items), np.nan)
    complement = _complements(rng, item_top, popularity, complement_share)

    # -- customers' tastes
    user_factors = rng.normal(0.0, 1.0 / math.sqrt(_FACTORS), (n_users, _FACTORS))
    item_factors = rng.normal(0.0, 1.0 / math.sqrt(_FACTORS) * 1.5, (n_items, _FACTORS))
    taste = rng.dirichlet(np.full(n_top, 0.3), size=n_users)
    taste = 0.9 * taste + 0.1 / n_top  # everybody glances at everything now and then
    activity = rng.lognormal(0.0, 1.0, n_users)

    truth = ShopTruth(
        categories=categories,
        item_category=item_category,
        item_top=item_top,
        popularity=popularity,
        item_price=item_price,
        user_factors=user_factors,
        item_factors=item_factors,
        taste=taste,
        activity=activity / activity.sum(),
        cycle_days=cycle_days,
        complement=complement,
        _log_price_ratio=log_price_ratio,
    )
    user_ids = _ids("u", n_users)
    item_ids = _ids("i", n_items)
    margin = np.round(item_price * rng.uniform(0.1, 0.5, n_items), 2)
    in_stock = rng.random(n_items) >= 0.05
    serial = np.zeros(len(categories), dtype=np.intp)
    catalog = []
    for i in range(n_items):
        c = item_category[i]
        serial[c] += 1
        catalog.append(
            CatalogItem(
                item_id=item_ids[i],
                title=f"{categories[c].split(' > ')[1]} #{serial[c]}",
                category=categories[c],
                price=float(item_price[i]),
                in_stock=bool(in_stock[i]),
                margin=float(margin[i]),
            )
        )
    customers = _customers(rng, user_ids, start.date(), days)
    return SyntheticShop(
        catalog=catalog,
        customers=customers,
        truth=truth,
        user_ids=user_ids,
        item_ids=item_ids,
        n_events=int(n_events),
        seed=seed,
        start=start,
        days=days,
        guest_share=guest_share,
        return_rate=return_rate,
    )


def _ids(prefix: str, n: int) -> list[str]:
    width = max(len(str(n - 1)), 4)
    return [f"{prefix}{k:0{width}d}" for k in range(n)]


def _complements(
    rng: np.random.Generator,
    item_top: NDArray[np.intp],
    popularity: NDArray[np.float64],
    share: float,
) -> NDArray[np.intp]:
    """For a share of items, a partner in the same top category, drawn by popularity."""
    n = len(item_top)
    complement = np.full(n, -1, dtype=np.intp)
    has = np.flatnonzero(rng.random(n) < share)
    for top in np.unique(item_top[has]):
        pool = np.flatnonzero(item_top == top)
        if len(pool) < 2:
            continue
        mine = has[item_top[has] == top]
        p = popularity[pool] / popularity[pool].sum()
        partner = pool[rng.choice(len(pool), size=len(mine), p=p)]
        clash = partner == mine
        partner[clash] = pool[(np.searchsorted(pool, mine[clash]) + 1) % len(pool)]
        complement[mine] = partner
    return complement


def _customers(
    rng: np.random.Generator, user_ids: list[str], start: date, days: int
) -> list[Customer]:
    n = len(user_ids)
    year = rng.integers(1950, 2007, n)
    day_of_year = rng.integers(0, 365, n)
    # some customers are born on 29 February: at least one, about 0.5% of them
    n_leap = max(1, round(0.005 * n))
    leap = rng.choice(n, size=min(n_leap, n), replace=False)
    known_birthday = rng.random(n) >= 0.1
    known_birthday[leap] = True
    signup_offset = rng.integers(-3 * 365, days, n)
    region = rng.choice(len(_REGIONS), size=n, p=_REGION_WEIGHTS / _REGION_WEIGHTS.sum())
    marketing_out = rng.random(n) < 0.05
    personal_out = rng.random(n) < 0.02
    leap_set = set(leap.tolist())
    customers = []
    for k, uid in enumerate(user_ids):
        if k in leap_set:
            birth_year = int(year[k]) - int(year[k]) % 4  # every 4th year in 1948-2004 is leap
            birthday: date | None = date(birth_year, 2, 29)
        elif known_birthday[k]:
            birthday = date(int(year[k]), 1, 1) + timedelta(days=int(day_of_year[k]))
        else:
            birthday = None
        customers.append(
            Customer(
                user_id=uid,
                birthday=birthday,
                signup_date=start + timedelta(days=int(signup_offset[k])),
                region=_REGIONS[int(region[k])],
                marketing_opt_out=bool(marketing_out[k]),
                personalisation_opt_out=bool(personal_out[k]),
            )
        )
    return customers


@dataclass
class _Chunk:
    """Events as integer codes (ids are attached at the end)."""

    user: NDArray[np.intp]  # -1: guest
    session: NDArray[np.int64]
    item: NDArray[np.intp]
    kind: NDArray[np.int8]
    ts: NDArray[np.int64]  # seconds since the epoch
    quantity: NDArray[np.int64]
    order: NDArray[np.int64]  # -1: none

    def __len__(self) -> int:
        return len(self.ts)


def _generate_events(shop: SyntheticShop, chunk_events: int) -> Iterator[EventFrame]:
    truth = shop.truth
    rng = np.random.default_rng([shop.seed, 1])
    t_start = int(shop.start.timestamp())
    span = shop.days * 86_400
    t_end = t_start + span
    n_chunks = max(1, math.ceil(shop.n_events / chunk_events))
    rate = 6.0  # events per session, refined from each chunk
    state = {"session": 0, "order": 0, "event": 0}
    cum_pop = _category_cdf(truth)
    produced = 0
    for k in range(n_chunks):
        lo = t_start + span * k // n_chunks
        hi = t_start + span * (k + 1) // n_chunks
        target = shop.n_events * (k + 1) // n_chunks - produced
        parts: list[_Chunk] = []
        got = 0
        while got < target:
            n_sessions = max(1, math.ceil((target - got) / rate))
            part = _sessions(rng, truth, cum_pop, n_sessions, lo, hi, t_end, state, shop)
            if len(part):
                rate = max(1.0, 0.5 * rate + 0.5 * len(part) / n_sessions)
            parts.append(part)
            got += len(part)
        chunk = _concat_chunks(parts)
        order = np.argsort(chunk.ts, kind="stable")
        keep = order[:target]  # trim the newest events so the total is exact
        keep.sort()
        chunk = _Chunk(*(getattr(chunk, f)[keep] for f in _Chunk.__dataclass_fields__))
        produced += len(chunk)
        if len(chunk):
            yield _to_frame(chunk, shop, state)


def _category_cdf(
    truth: ShopTruth,
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Items grouped by top category, the running popularity, and each category's span of it."""
    by_top = np.argsort(truth.item_top, kind="stable")
    cum = np.cumsum(truth.popularity[by_top])
    n_top = truth.taste.shape[1]
    ends = np.searchsorted(truth.item_top[by_top], np.arange(n_top), side="right")
    starts = np.r_[0, ends[:-1]]
    lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    lo[starts == 0] = 0.0
    hi = np.where(ends > 0, cum[np.maximum(ends - 1, 0)], 0.0)
    return by_top, cum, np.stack([lo, hi], axis=1)


def _pick_category(rng: np.random.Generator, taste: NDArray[np.float64]) -> NDArray[np.intp]:
    """One top category per row, drawn from that row's taste."""
    cum = np.cumsum(taste, axis=1)
    r = rng.random(len(taste))[:, None] * cum[:, -1:]
    return np.minimum((cum < r).sum(axis=1), taste.shape[1] - 1).astype(np.intp)


def _sessions(
    rng: np.random.Generator,
    truth: ShopTruth,
    cdf: tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]],
    n_sessions: int,
    lo: int,
    hi: int,
    t_end: int,
    state: dict[str, int],
    shop: SyntheticShop,
) -> _Chunk:
    by_top, cum_pop, span = cdf
    n_users = len(truth.activity)
    # who: registered customers by activity; a guest borrows a random customer's tastes
    tastes_of = rng.choice(n_users, size=n_sessions, p=truth.activity)
    guest = rng.random(n_sessions) < shop.guest_share
    user = np.where(guest, -1, tastes_of)
    start = rng.integers(lo, max(hi, lo + 1), n_sessions)
    session = state["session"] + np.arange(n_sessions, dtype=np.int64)
    state["session"] += n_sessions
    focus = _pick_category(rng, truth.taste[tastes_of])

    # views: 1 + Poisson(3) per session, mostly in the session's focus category
    n_views = 1 + rng.poisson(3.0, n_sessions)
    s_of = np.repeat(np.arange(n_sessions), n_views)
    who = tastes_of[s_of]
    top = np.where(rng.random(len(s_of)) < 0.8, focus[s_of], _pick_category(rng, truth.taste[who]))
    # candidates by popularity within the category, then the customer picks by latent match
    a, b = span[top, 0], span[top, 1]
    u = a[:, None] + rng.random((len(s_of), _CANDIDATES)) * (b - a)[:, None]
    cand = by_top[np.minimum(np.searchsorted(cum_pop, u, side="right"), len(by_top) - 1)]
    match = np.einsum("vk,vck->vc", truth.user_factors[who], truth.item_factors[cand])
    pick = np.argmax(_GAMMA * match + rng.gumbel(size=match.shape), axis=1)
    item = cand[np.arange(len(s_of)), pick]
    first = np.r_[0, np.cumsum(n_views)[:-1]]
    gaps = rng.exponential(45.0, len(s_of)).astype(np.int64) + 1
    gaps[first] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first], n_views)
    view_ts = start[s_of] + offset

    # funnel: view -> cart -> purchase (one order per session at its end)
    carted = rng.random(len(s_of)) < truth.cart_probability(who, item)
    cart_ts = view_ts[carted] + rng.integers(5, 60, carted.sum())
    bought = rng.random(carted.sum()) < P_BUY_GIVEN_CART
    c_sess, c_item = s_of[carted][bought], item[carted][bought]
    session_end = np.zeros(n_sessions, dtype=np.int64)
    np.maximum.at(session_end, s_of, view_ts)
    # a complement joins the order (with its own view and cart) fairly often
    partner = truth.complement[c_item]
    add = (partner >= 0) & (rng.random(len(c_item)) < 0.35)
    x_sess, x_item = c_sess[add], partner[add]
    x_ts = session_end[x_sess] + rng.integers(10, 90, len(x_sess))
    session_end[x_sess] = np.maximum(session_end[x_sess], x_ts + 60)
    p_sess = np.r_[c_sess, x_sess]
    p_item = np.r_[c_item, x_item]
    has_order = np.zeros(n_sessions, dtype=bool)
    has_order[p_sess] = True
    order_of = np.full(n_sessions, -1, dtype=np.int64)
    order_of[has_order] = state["order"] + np.arange(has_order.sum())
    state["order"] += int(has_order.sum())
    p_ts = session_end[p_sess] + 120
    p_qty = _quantities(rng, truth, p_item)

    parts = [
        _Chunk(
            user[s_of],
            session[s_of],
            item,
            _kinds(_VIEW, len(s_of)),
            view_ts,
            _ones(len(s_of)),
            _none(len(s_of)),
        ),
        _Chunk(
            user[s_of][carted],
            session[s_of][carted],
            item[carted],
            _kinds(_CART, len(cart_ts)),
            cart_ts,
            _ones(len(cart_ts)),
            _none(len(cart_ts)),
        ),
        _Chunk(
            user[x_sess],
            session[x_sess],
            x_item,
            _kinds(_VIEW, len(x_sess)),
            x_ts - 30,
            _ones(len(x_sess)),
            _none(len(x_sess)),
        ),
        _Chunk(
            user[x_sess],
            session[x_sess],
            x_item,
            _kinds(_CART, len(x_sess)),
            x_ts,
            _ones(len(x_sess)),
            _none(len(x_sess)),
        ),
        _Chunk(
            user[p_sess],
            session[p_sess],
            p_item,
            _kinds(_PURCHASE, len(p_sess)),
            p_ts,
            p_qty,
            order_of[p_sess],
        ),
    ]
    parts.append(
        _returns(rng, shop, user[p_sess], session[p_sess], p_item, p_ts, p_qty, order_of[p_sess])
    )
    registered = user[p_sess] >= 0
    parts.append(
        _repeats(
            rng,
            truth,
            user[p_sess][registered],
            p_item[registered],
            p_ts[registered],
            p_qty[registered],
            t_end,
            state,
        )
    )
    chunk = _concat_chunks(parts)
    keep = chunk.ts < t_end
    return _Chunk(*(getattr(chunk, f)[keep] for f in _Chunk.__dataclass_fields__))


def _quantities(
    rng: np.random.Generator, truth: ShopTruth, item: NDArray[np.intp]
) -> NDArray[np.int64]:
    """Mostly one; consumables often come by two or three."""
    consumable = ~np.isnan(truth.cycle_days[item])
    extra = np.where(consumable, rng.geometric(0.6, len(item)) - 1, rng.random(len(item)) < 0.05)
    return (1 + extra).astype(np.int64)


def _returns(
    rng: np.random.Generator,
    shop: SyntheticShop,
    user: NDArray[np.intp],
    session: NDArray[np.int64],
    item: NDArray[np.intp],
    ts: NDArray[np.int64],
    qty: NDArray[np.int64],
    order: NDArray[np.int64],
) -> _Chunk:
    """A few order lines come back 2-30 days later, wholly or (if more than one) in part."""
    back = rng.random(len(item)) < shop.return_rate
    n = int(back.sum())
    partial = (rng.random(n) < 0.3) & (qty[back] > 1)
    r_qty = np.where(partial, rng.integers(1, np.maximum(qty[back], 2)), qty[back])
    r_ts = ts[back] + rng.integers(2 * 86_400, 30 * 86_400, n)
    return _Chunk(
        user[back],
        session[back],
        item[back],
        _kinds(_RETURN, n),
        r_ts,
        r_qty.astype(np.int64),
        order[back],
    )


def _repeats(
    rng: np.random.Generator,
    truth: ShopTruth,
    user: NDArray[np.intp],
    item: NDArray[np.intp],
    ts: NDArray[np.int64],
    qty: NDArray[np.int64],
    t_end: int,
    state: dict[str, int],
) -> _Chunk:
    """Consumables are bought again every cycle (±15%), a geometric number of times."""
    cycle = truth.cycle_days[item]
    mask = ~np.isnan(cycle)
    user, item, ts, qty, cycle = user[mask], item[mask], ts[mask], qty[mask], cycle[mask]
    if not len(item):
        return _Chunk(user, _none(0), item, _kinds(_VIEW, 0), ts, qty, _none(0))
    times = rng.geometric(0.35, len(item))  # about 3 repeats on average, fewer cut off by t_end
    src = np.repeat(np.arange(len(item)), times)
    step = (cycle[src] * rng.normal(1.0, 0.15, len(src)).clip(0.5) * 86_400).astype(np.int64)
    first = np.r_[0, np.cumsum(times)[:-1]]
    when = np.cumsum(step)
    when -= np.repeat(when[first] - step[first], times)
    r_ts = ts[src] + when
    alive = r_ts < t_end
    src, r_ts = src[alive], r_ts[alive]
    n = len(src)
    # each repeat is its own short session: view, cart, purchase in a new order
    session = state["session"] + np.arange(n, dtype=np.int64)
    order = state["order"] + np.arange(n, dtype=np.int64)
    state["session"] += n
    state["order"] += n
    u, it, q = user[src], item[src], qty[src]
    return _concat_chunks(
        [
            _Chunk(u, session, it, _kinds(_VIEW, n), r_ts, _ones(n), _none(n)),
            _Chunk(u, session, it, _kinds(_CART, n), r_ts + 20, q, _none(n)),
            _Chunk(u, session, it, _kinds(_PURCHASE, n), r_ts + 80, q, order),
        ]
    )


def _kinds(kind: int, n: int) -> NDArray[np.int8]:
    return np.full(n, kind, dtype=np.int8)


def _ones(n: int) -> NDArray[np.int64]:
    return np.ones(n, dtype=np.int64)


def _none(n: int) -> NDArray[np.int64]:
    return np.full(n, -1, dtype=np.int64)


def _concat_chunks(parts: list[_Chunk]) -> _Chunk:
    return _Chunk(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in _Chunk.__dataclass_fields__)
    )


def _to_frame(chunk: _Chunk, shop: SyntheticShop, state: dict[str, int]) -> EventFrame:
    n = len(chunk)
    users = np.asarray([*shop.user_ids, ""], dtype=object)  # index -1 is the guest
    items = np.asarray(shop.item_ids, dtype=object)
    base = state["event"]
    state["event"] += n
    event_id = _object([f"e{base + k:010d}" for k in range(n)])
    session_id = _object([f"s{s:09d}" for s in chunk.session.tolist()])
    order_id = _object([None if o < 0 else f"o{o:09d}" for o in chunk.order.tolist()])
    return EventFrame(
        event_id=event_id,
        user_id=users[chunk.user],
        session_id=session_id,
        item_id=items[chunk.item],
        event_type=_TYPE_NAMES[chunk.kind],
        ts=chunk.ts * 1_000_000,
        quantity=chunk.quantity.astype(np.float64),
        price=shop.truth.item_price[chunk.item],
        order_id=order_id,
        recommendation_id=np.full(n, None, dtype=object),
    )


def _object(values: list[str | None]) -> NDArray[np.object_]:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _concat(frames: list[EventFrame]) -> EventFrame:
    if not frames:
        return EventFrame.empty()
    names = EventFrame.__dataclass_fields__
    return EventFrame(**{f: np.concatenate([getattr(fr, f) for fr in frames]) for f in names})


# -- writing --------------------------------------------------------------------------------

#: Columns of the generic event layout read by ``recsys ingest FILE --format generic``.
EVENT_FILE_COLUMNS = (
    "event_id",
    "user_id",
    "session_id",
    "item_id",
    "event_type",
    "timestamp",
    "quantity",
    "price",
    "order_id",
    "recommendation_id",
)
#: Columns of the catalogue and customer files, as ``recsys ingest`` reads them.
CATALOG_FILE_COLUMNS = CATALOG_COLUMNS
CUSTOMER_FILE_COLUMNS = CUSTOMER_COLUMNS


def write_shop(
    shop: SyntheticShop,
    directory: str | Path,
    *,
    format: Literal["csv", "parquet"] = "csv",
    gzip: bool = True,
) -> dict[str, Path]:
    """Write a shop in the generic layout that ``recsys ingest --format generic`` reads.

    Parameters
    ----------
    shop
        The shop; its events are generated chunk by chunk while writing, so memory stays
        bounded whatever ``shop.n_events`` is.
    directory
        Created if missing; existing files of the same names are replaced.
    format
        ``csv``: ``events.csv`` (``.csv.gz`` with ``gzip``); ``parquet``: ``events.parquet``.
        The catalogue and customers are always small CSV files.
    gzip
        Compress the CSV events file.

    Returns
    -------
    dict
        ``{"events": path, "catalog": path, "customers": path}``.

    Notes
    -----
    Timestamps are ISO 8601 with an explicit ``+00:00``; booleans are ``true``/``false``;
    dates ``YYYY-MM-DD``; an absent value is an empty field (a guest's ``user_id`` too).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if format not in ("csv", "parquet"):
        raise ConfigError(f"format must be 'csv' or 'parquet' (got {format!r})")
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create the output folder: {exc}") from None
    schema = pa.schema(
        [
            (
                name,
                pa.int64()
                if name == "quantity"
                else pa.float64()
                if name == "price"
                else pa.string(),
            )
            for name in EVENT_FILE_COLUMNS
        ]
    )
    if format == "csv":
        events_path = out / ("events.csv.gz" if gzip else "events.csv")
    else:
        events_path = out / "events.parquet"
    frames = [shop._events] if shop._events is not None else shop.iter_events()
    if format == "parquet":
        with pq.ParquetWriter(str(events_path), schema) as writer:
            for frame in frames:
                writer.write_table(_event_table(frame, schema))
    else:
        # gzip level 1: five times faster than the default and only ~25% larger; a file that
        # can be regenerated from its seed is not worth minutes of compression
        with (
            gzip_open(events_path, "wb", compresslevel=1) if gzip else events_path.open("wb")
        ) as sink:
            for k, frame in enumerate(frames):
                buf = pa.BufferOutputStream()
                pacsv.write_csv(
                    _event_table(frame, schema),
                    buf,
                    write_options=pacsv.WriteOptions(
                        include_header=k == 0, quoting_style="none", quoting_header="none"
                    ),
                )
                sink.write(buf.getvalue().to_pybytes())

    catalog_path = out / "catalog.csv"
    _write_csv(
        catalog_path,
        CATALOG_FILE_COLUMNS,
        (
            [c.item_id, c.title, c.category, _num(c.price), _bool(c.in_stock), _num(c.margin)]
            for c in shop.catalog
        ),
    )
    customers_path = out / "customers.csv"
    _write_csv(
        customers_path,
        CUSTOMER_FILE_COLUMNS,
        (
            [
                c.user_id,
                c.birthday.isoformat() if c.birthday else "",
                c.signup_date.isoformat() if c.signup_date else "",
                c.region or "",
                _bool(c.marketing_opt_out),
                _bool(c.personalisation_opt_out),
            ]
            for c in shop.customers
        ),
    )
    return {"events": events_path, "catalog": catalog_path, "customers": customers_path}


def _event_table(frame: EventFrame, schema: object) -> object:
    import pyarrow as pa

    stamps = np.datetime_as_string(frame.ts.astype("datetime64[us]"), unit="s")
    columns = {
        "event_id": frame.event_id,
        "user_id": frame.user_id,
        "session_id": frame.session_id,
        "item_id": frame.item_id,
        "event_type": frame.event_type,
        "timestamp": np.char.add(stamps, "+00:00"),
        "quantity": frame.quantity.astype(np.int64),
        "price": frame.price,
        "order_id": frame.order_id,
        "recommendation_id": frame.recommendation_id,
    }
    return pa.table(
        {name: pa.array(columns[name], type=schema.field(name).type) for name in EVENT_FILE_COLUMNS}  # type: ignore[attr-defined]
    )


def _write_csv(path: Path, header: tuple[str, ...], rows: Iterator[list[str]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _bool(value: bool) -> str:
    return "true" if value else "false"
