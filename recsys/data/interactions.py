"""From events to training data: weighted user×item matrices, baskets and sessions.

:func:`build_training_data` is the one place that turns an :class:`~recsys.data.schema.EventFrame`
into what models fit on; :func:`history_matrix` applies the *same* weighting to a few users'
live events at serving time, so a customer's next request already reflects what they just did.

How an event becomes weight
---------------------------
Every event before ``as_of`` (and inside ``window_days`` of it) weighs
``weights[event_type] × quantity factor × 0.5 ** (age / half_life)``:

* event types missing from ``weights`` weigh 0; returns never add weight;
* the quantity factor applies to purchases only (a view has no quantity; a cart's quantity
  is an intention, not a fact): ``ignore`` → 1, ``log`` → ``1 + ln q`` (``q`` itself below 1,
  so the factor stays positive and continuous), ``linear`` → ``q``;
* with ``returns_cancel``, a user's returns of an item cancel purchased quantity of that item,
  newest purchase first (a return usually concerns the latest delivery). Matching is by user
  and item, not by order id, because many shops (the UCI Online Retail data among them) give a
  cancellation its own invoice number. A purchase whose whole quantity is cancelled weighs 0;
  one partly cancelled keeps its remaining quantity.

The weights of one user–item pair are summed in ascending order of value, so the sum does
not depend on the order the events arrive in: that is what lets :func:`history_matrix`
reproduce a row of :func:`build_training_data` bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field, field_validator

from recsys.config import StrictModel
from recsys.data.schema import CART, MICROS_PER_DAY, PURCHASE, RETURN, VIEW, CatalogItem, EventFrame
from recsys.data.vocab import Vocabulary
from recsys.errors import ModelError

#: Quantities are matched against returns in integer millionths, so that the matching is exact
#: (and the same in :func:`build_training_data` and :func:`history_matrix`) for any quantity.
QUANTITY_SCALE = 1_000_000


class InteractionConfig(StrictModel):
    """How events become interaction weights."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 10.0},
        description="Weight per event type; types not listed weigh 0 (ignored).",
    )
    quantity: str = Field(
        default="log",
        pattern="^(ignore|log|linear)$",
        description="How a purchase's quantity scales its weight: ignore, log (1+log q), linear.",
    )
    returns_cancel: bool = Field(
        default=True, description="A return cancels the matching purchased quantity."
    )
    half_life_days: float | None = Field(
        default=None, gt=0, description="Recency decay: an event this old weighs half."
    )
    window_days: float | None = Field(
        default=None, gt=0, description="Only events this recent (before as_of) are used."
    )
    min_user_events: int = Field(default=1, ge=1, description="Drop users with fewer events.")
    min_item_users: int = Field(default=1, ge=1, description="Drop items with fewer users.")

    @field_validator("weights")
    @classmethod
    def _weights_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        # Implicit-feedback models read a matrix entry as confidence; a negative one has no
        # meaning there (returns express dislike by cancelling purchases instead).
        for name, weight in value.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name!r} must be a finite number >= 0, not {weight}")
        return value


@dataclass(frozen=True)
class TrainingData:
    """Everything models fit on, indexed by the two vocabularies.

    Attributes
    ----------
    users, items
        Vocabularies of the customers and products that survived the filters. Items are the
        catalogue plus every item with an event in the window, less those dropped by
        ``min_item_users`` (a catalogue item is never dropped: it stays, with an empty column,
        so that it can still be served as new or popular).
    interactions
        ``users × items`` float32 CSR of weighted (and decayed) interactions.
    purchase_counts
        ``users × items`` float32 CSR: in how many distinct orders the user bought the item,
        net of returns (the repeat-buying signal).
    events
        The events in the time window (before ``as_of``, within ``window_days``), oldest first,
        guests and filtered users included (their orders and sessions still count).
    event_user, event_item
        Per event, the user and item index (``-1`` for guests and dropped ids).
    orders
        ``orders × items`` binary CSR, one row per order with at least one purchased item:
        the baskets behind "bought together".
    sessions
        ``sessions × items`` binary CSR of items viewed together in a session: the source of
        "often viewed with". Zero rows when there are no views.
    session_newest
        Per row of ``sessions``, its newest item: the one first viewed last (among items first
        viewed at the same instant, the highest index). What the held-out-session test of
        "often viewed with" hides (:func:`~recsys.models.cooccurrence.choose_normalisation`),
        so that it ranks a session's next item from the earlier ones, as session lists do.
        Empty when not built from events.
    item_category
        Category path per item index (``""`` when unknown).
    item_price
        Price per item index (``NaN`` when unknown).
    item_title
        Title and string attribute values per item index (``""`` when unknown): what the
        content model reads.
    as_of
        The time training is measured from (microseconds UTC): the newest event, or a given
        ``--as-of``. Never the wall clock.
    """

    users: Vocabulary
    items: Vocabulary
    interactions: sp.csr_matrix
    purchase_counts: sp.csr_matrix
    events: EventFrame
    event_user: NDArray[np.intp]
    event_item: NDArray[np.intp]
    orders: sp.csr_matrix
    sessions: sp.csr_matrix
    item_category: list[str]
    item_price: NDArray[np.float64]
    as_of: int
    item_title: list[str] = field(default_factory=list)
    session_newest: NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.items)

    def require_customers(self, model: str) -> None:
        """Refuse, as a model that cannot fit this data, a log with no customer in it.

        Models that learn from customers' rows (factors, EASE, repeat buying, the hybrid)
        would fit guests-only data to nothing, or fail on it; they call this first so that
        training skips them with a notice and keeps the models that learn from items, orders
        and sessions (popular, trending, co-occurrence).

        Raises
        ------
        ModelError
            When no customer survived the filters (only guests' events, or none).
        """
        if self.n_users == 0:
            raise ModelError(
                f"{model}: needs customers, and the training data has none "
                f"({len(self.events):,} events, guests only)"
            )


# -- public functions -----------------------------------------------------------------------


def build_training_data(
    events: EventFrame,
    config: InteractionConfig,
    *,
    as_of: int | None = None,
    catalog: Sequence[CatalogItem] = (),
) -> TrainingData:
    """Turn events into the matrices every model and every "together" rule fits on.

    Parameters
    ----------
    events
        Events in any order.
    config
        Weights, quantity handling, decay, window and filters.
    as_of
        Time (microseconds UTC) training is measured from: events at or after it are dropped
        (a train/test split point) and decay counts back from it. By default the newest
        event's time, and then every event is kept, the newest included.
    catalog
        Catalogue items: they join the item vocabulary even without events, and give each
        item its category and price (the median price seen in events fills a missing one).

    Returns
    -------
    TrainingData

    Notes
    -----
    The filters are iterated to a fixed point (a k-core): dropping an item can take a user
    below ``min_user_events`` and the reverse, so both are applied again until neither drops
    anything; the result is therefore independent of the order the filters run in. A user's
    "events" are those that add weight to the matrix; an item's "users" are the distinct users
    with a positive entry for it. A user left with no positive entry is not a user of the
    matrix. Items seen only in guests' events (or only in zero-weight ones) are never dropped,
    as they carry no user signal to filter.

    ``purchase_counts`` counts, per user and item, the distinct orders whose quantity of the
    item was not wholly cancelled by returns (returns matched newest purchase first, see the
    module notes). A purchase without an ``order_id`` is grouped with the user's other
    order-less purchases at the same timestamp.
    """
    n_all = len(events)
    ts_all = np.asarray(events.ts, dtype=np.int64)
    if as_of is None:
        as_of = int(ts_all.max()) if n_all else 0
        keep = np.ones(n_all, dtype=bool)
    else:
        as_of = int(as_of)
        keep = ts_all < as_of
    if config.window_days is not None:
        keep &= ts_all >= as_of - round(config.window_days * MICROS_PER_DAY)
    picked = np.flatnonzero(keep)
    picked = picked[np.argsort(ts_all[picked], kind="stable")]
    ev = events.select(picked)

    user_ids, user_code = _factorize(ev.user_id)
    # "" is the guest: not a user of the matrix (the sorted vocabulary puts it first if present)
    if user_ids and user_ids[0] == "":
        user_code = np.maximum(user_code - 1, -1)  # None (also a guest) stays -1
        user_ids = user_ids[1:]
    item_ids, item_code = _factorize(ev.item_id)

    codes = _Codes.of(ev)
    pairs = _weigh(ev, user_code, item_code, len(item_ids), config, as_of, codes)

    # -- filters, iterated to a fixed point
    n_u, n_i = len(user_ids), len(item_ids)
    alive = pairs.weight > 0
    while True:
        user_events = np.bincount(pairs.user[alive], pairs.n_weighted[alive], minlength=n_u)
        item_users = np.bincount(pairs.item[alive], minlength=n_i)
        user_ok = user_events >= config.min_user_events
        item_ok = item_users >= config.min_item_users
        still = alive & user_ok[pairs.user] & item_ok[pairs.item]
        if np.array_equal(still, alive):
            break
        alive = still

    kept_users = np.zeros(n_u, dtype=bool)
    kept_users[pairs.user[alive]] = True
    had_user_signal = np.zeros(n_i, dtype=bool)
    had_user_signal[pairs.item[pairs.weight > 0]] = True
    kept_items = item_ok | ~had_user_signal

    users = Vocabulary(np.asarray(user_ids, dtype=object)[kept_users].tolist())
    catalog_ids = [c.item_id for c in catalog]
    items = Vocabulary.from_values(
        [*np.asarray(item_ids, dtype=object)[kept_items].tolist(), *catalog_ids]
    )
    user_map = np.full(n_u + 1, -1, dtype=np.intp)  # last slot: guests (code -1)
    user_map[np.flatnonzero(kept_users)] = np.arange(len(users))
    item_map = np.full(n_i + 1, -1, dtype=np.intp)
    item_map[:n_i] = items.indices(item_ids)
    item_map[:n_i][~kept_items] = -1
    event_user = user_map[user_code]
    event_item = item_map[item_code]

    shape = (len(users), len(items))
    pu, pi = user_map[pairs.user[alive]], item_map[pairs.item[alive]]
    interactions = _csr(pu, pi, pairs.weight[alive], shape)
    counted = alive & (pairs.n_orders > 0)
    purchase_counts = _csr(
        user_map[pairs.user[counted]],
        item_map[pairs.item[counted]],
        pairs.n_orders[counted].astype(np.float64),
        shape,
    )

    type_ids, type_code = codes.type_ids, codes.type_code
    orders = _orders_matrix(ev, codes, _is(type_ids, type_code, PURCHASE), event_item, len(items))
    browsed = np.flatnonzero(
        (_is(type_ids, type_code, VIEW) | _is(type_ids, type_code, CART)) & (event_item >= 0)
    )
    session_ids, session_code = _factorize(ev.session_id[browsed])
    in_session = session_code >= 0
    sessions, session_newest = _sessions(
        session_code[in_session],
        event_item[browsed][in_session],
        ev.ts[browsed][in_session],
        (len(session_ids), len(items)),
    )

    item_category, item_price = _item_attributes(items, catalog, ev, event_item)
    return TrainingData(
        users=users,
        items=items,
        interactions=interactions,
        purchase_counts=purchase_counts,
        events=ev,
        event_user=event_user,
        event_item=event_item,
        orders=orders,
        sessions=sessions,
        item_category=item_category,
        item_price=item_price,
        as_of=as_of,
        item_title=item_titles(items, catalog),
        session_newest=session_newest,
    )


def history_matrix(
    events: EventFrame,
    users: Sequence[str],
    items: Vocabulary,
    config: InteractionConfig,
    *,
    as_of: int,
) -> sp.csr_matrix:
    """Weigh a few users' events exactly as :func:`build_training_data` does.

    Parameters
    ----------
    events
        Events of (at least) these users, in any order; other users' and guests' events are
        ignored, as are items ``items`` does not hold.
    users
        The users, one row each, in this order (a repeated user gets the same row twice).
    items
        The item vocabulary of the model being served.
    config
        The same config the model was trained with.
    as_of
        Events at or after it are dropped; decay counts back from it.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``len(users) × len(items)`` float32. For the same events, config and ``as_of``, a row
        equals the user's row of :func:`build_training_data` bit for bit, except in the
        columns of catalogue items that ``min_item_users`` emptied there (live events on them
        count here). The filters are not applied: a live user is never dropped.
    """
    as_of = int(as_of)
    keep = _in_window(events, config, as_of)
    distinct = list(dict.fromkeys(users))
    row_of = {u: r for r, u in enumerate(distinct) if u != ""}
    get = row_of.get
    user_code = np.fromiter((get(u, -1) for u in events.user_id), dtype=np.intp, count=len(events))
    keep &= user_code >= 0
    ev = events.select(keep)
    user_code = user_code[keep]
    item_code = items.indices(ev.item_id)
    pairs = _weigh(ev, user_code, item_code, len(items), config, as_of, _Codes.of(ev))
    alive = pairs.weight > 0
    matrix = _csr(
        pairs.user[alive], pairs.item[alive], pairs.weight[alive], (len(distinct), len(items))
    )
    if len(distinct) != len(users):
        matrix = matrix[[distinct.index(u) for u in users]]
        matrix.sort_indices()
    return matrix


def history_row(
    events: EventFrame,
    items: Vocabulary,
    config: InteractionConfig,
    *,
    as_of: int,
) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """One customer's weighted row: :func:`history_matrix` for a single user, as arrays.

    The serving path's live fold-in of a few events: every event counts as the customer's
    (whatever its ``user_id``), and no sparse matrix is built (at 10^5 items the matrix's
    construction and checks cost more than the weighting).

    Parameters
    ----------
    events
        The customer's events, in any order; items ``items`` does not hold are ignored.
    items, config, as_of
        As in :func:`history_matrix`.

    Returns
    -------
    tuple of numpy.ndarray
        The item columns in ascending order and their float32 weights, none zero: the
        nonzero entries of :func:`history_matrix`'s row for these events, bit for bit.
    """
    as_of = int(as_of)
    ev = events.select(_in_window(events, config, as_of))
    item_code = items.indices(ev.item_id)
    user_code = np.zeros(len(ev), dtype=np.intp)
    pairs = _weigh(ev, user_code, item_code, len(items), config, as_of, _Codes.of(ev))
    # the weights as _csr stores them: float32, then the zeros (underflow included) dropped
    alive = pairs.weight > 0
    weight = pairs.weight[alive].astype(np.float32)
    kept = weight != 0
    return pairs.item[alive][kept], weight[kept]


def _in_window(events: EventFrame, config: InteractionConfig, as_of: int) -> NDArray[np.bool_]:
    """The events a live history counts: before ``as_of``, within ``config.window_days``."""
    ts = np.asarray(events.ts, dtype=np.int64)
    keep = ts < as_of
    if config.window_days is not None:
        keep &= ts >= as_of - round(config.window_days * MICROS_PER_DAY)
    return keep


# -- the weighting both share ---------------------------------------------------------------


@dataclass(frozen=True)
class _Codes:
    """Event types and order ids as codes (order codes in string order: see ``_factorize``)."""

    type_ids: list[str]
    type_code: NDArray[np.intp]
    order_ids: list[str]
    order_code: NDArray[np.intp]

    @classmethod
    def of(cls, ev: EventFrame) -> _Codes:
        return cls(*_factorize(ev.event_type), *_factorize(ev.order_id))


@dataclass(frozen=True)
class _Pairs:
    """Per user–item pair (sorted by user, then item): summed weight and counts."""

    user: NDArray[np.intp]
    item: NDArray[np.intp]
    weight: NDArray[np.float64]
    n_weighted: NDArray[np.int64]  # events that added positive weight
    n_orders: NDArray[np.int64]  # distinct orders with quantity left after returns


def _weigh(
    ev: EventFrame,
    user_code: NDArray[np.intp],
    item_code: NDArray[np.intp],
    n_items: int,
    config: InteractionConfig,
    as_of: int,
    codes: _Codes,
) -> _Pairs:
    """Weights of every (user, item) pair with ``user_code >= 0`` and ``item_code >= 0``."""
    valid = (user_code >= 0) & (item_code >= 0)
    idx = np.flatnonzero(valid)
    pair_key = user_code[idx].astype(np.int64) * max(n_items, 1) + item_code[idx]
    keys, pair = np.unique(pair_key, return_inverse=True)
    pair = pair.ravel()
    n_pairs = len(keys)

    ts = ev.ts[idx]
    type_ids, type_code = codes.type_ids, codes.type_code[idx]
    type_weight = np.array([config.weights.get(t, 0.0) for t in type_ids] + [0.0])[type_code]
    is_purchase = _is(type_ids, type_code, PURCHASE)
    is_return = _is(type_ids, type_code, RETURN)
    type_weight[is_return] = 0.0

    qty = np.where(is_purchase, np.maximum(ev.quantity[idx], 0.0), 0.0)
    q_int = np.rint(qty * QUANTITY_SCALE).astype(np.int64)
    order_code = codes.order_code[idx]

    p = np.flatnonzero(is_purchase)
    if config.returns_cancel and is_return.any() and len(p):
        r_int = np.rint(np.abs(ev.quantity[idx][is_return]) * QUANTITY_SCALE).astype(np.int64)
        returned = np.bincount(pair[is_return], r_int, minlength=n_pairs).astype(np.int64)
        # newest purchase first; ties broken by quantity then order id, both order-free keys
        p = p[np.lexsort((-order_code[p], -q_int[p], -ts[p], pair[p]))]
        qp = q_int[p]
        before = np.cumsum(qp) - qp
        first = np.r_[True, pair[p][1:] != pair[p][:-1]]
        before -= np.maximum.accumulate(np.where(first, before, 0))
        cancel = np.clip(returned[pair[p]] - before, 0, qp)
        left = q_int.copy()
        left[p] = qp - cancel
        qty = np.where(left == q_int, qty, left / QUANTITY_SCALE)
        q_int = left

    if config.quantity == "ignore":
        factor = (qty > 0).astype(np.float64)
    elif config.quantity == "log":
        factor = np.where(qty >= 1.0, 1.0 + np.log(np.maximum(qty, 1.0)), qty)
    else:
        factor = qty
    weight = type_weight * np.where(is_purchase, factor, 1.0)
    if config.half_life_days is not None:
        age_days = (as_of - ts) / MICROS_PER_DAY
        weight = weight * np.exp2(-age_days / config.half_life_days)

    # sum each pair's weights in ascending order, so the sum is independent of event order
    order = np.lexsort((weight, pair))
    summed = np.asarray(np.bincount(pair[order], weight[order], minlength=n_pairs), np.float64)
    n_weighted = np.bincount(pair, weight > 0, minlength=n_pairs).astype(np.int64)

    bought = is_purchase & (q_int > 0)
    if bought.any():
        b = np.flatnonzero(bought)
        n_orders = _distinct_counts(pair[b], _order_keys(order_code[b], ts[b]), n_pairs)
    else:
        n_orders = np.zeros(n_pairs, dtype=np.int64)

    width = max(n_items, 1)
    return _Pairs(
        user=(keys // width).astype(np.intp),
        item=(keys % width).astype(np.intp),
        weight=summed,
        n_weighted=n_weighted,
        n_orders=n_orders,
    )


def _distinct_counts(
    group: NDArray[np.intp], key: NDArray[np.int64], n_groups: int
) -> NDArray[np.int64]:
    """Per group ``0..n_groups-1``, how many distinct ``key`` values its entries hold.

    Sorted by (group, key), the first entry of each run counts: what
    ``np.bincount(np.unique(np.stack([group, key]), axis=1)[0])`` counts, without sorting
    16-byte records compared as bytes (800k synthetic purchases: 0.82-1.05 s that way,
    0.24-0.30 s this way; a run builds its training data twice).
    """
    if len(group) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    by = np.lexsort((key, group))
    g, k = group[by], key[by]
    first = np.r_[True, (g[1:] != g[:-1]) | (k[1:] != k[:-1])]
    return np.bincount(g[first], minlength=n_groups).astype(np.int64)


def _order_keys(order_code: NDArray[np.intp], ts: NDArray[np.int64]) -> NDArray[np.int64]:
    """One key per order: the order id's code, or (for order-less purchases) the timestamp."""
    # order codes are >= 0, timestamps are shifted below -1 so the two can never collide
    return np.where(order_code >= 0, order_code, -2 - (ts - ts.min()))


def _is(type_ids: list[str], type_code: NDArray[np.intp], name: str) -> NDArray[np.bool_]:
    if name in type_ids:
        return type_code == type_ids.index(name)
    return np.zeros(len(type_code), dtype=bool)


# -- helpers --------------------------------------------------------------------------------


#: Below this many values :func:`_factorize` numbers them with Python dicts: Arrow's fixed
#: cost (about 50 µs a call, two calls per live request's history) is more than the dicts
#: take for up to about a thousand values.
FACTORIZE_ARROW_MIN = 1024


def _factorize(values: NDArray[np.object_]) -> tuple[list[str], NDArray[np.intp]]:
    """Sorted distinct values and each value's index among them; ``None`` gets ``-1``.

    Codes follow string order, so they compare the same way in any subset of the events.
    Strings are encoded by Arrow's hash table: 10^7 events' ids in a fraction of the time of
    Python dicts, whose lookups miss the cache once the distinct ids run to 10^5-10^6 (the
    dict path took 38 of the 65 s of building a 10^7-event shop's matrices). UTF-8 bytes
    sort as the strings' code points do, as Python orders ``str``. Values Arrow does not
    take as strings (not ``str``, or lone surrogates) go through :func:`_factorize_objects`,
    and so do fewer than :data:`FACTORIZE_ARROW_MIN` values (a live request's events).
    """
    if len(values) < FACTORIZE_ARROW_MIN:
        return _factorize_objects(values)
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        # 64-bit offsets: one array however many bytes the ids take (32-bit offsets stop at
        # 2 GiB, and pyarrow would then answer in chunks, each with its own dictionary)
        strings = pa.array(values, type=pa.large_string())
    except (pa.ArrowException, UnicodeError):
        return _factorize_objects(values)
    if not isinstance(strings, pa.Array):  # chunked after all: numbered the slow way
        return _factorize_objects(values)
    encoded = strings.dictionary_encode()
    words = encoded.dictionary
    order = pc.array_sort_indices(words).to_numpy()
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order), dtype=np.intp)
    # a null (None) index is -1, which the extra slot at the end of ``rank`` maps to -1
    at = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    codes = np.append(rank, -1)[at]
    return words.take(pa.array(order)).to_pylist(), codes


def _factorize_objects(values: NDArray[np.object_]) -> tuple[list[str], NDArray[np.intp]]:
    """:func:`_factorize` by Python dicts, for any orderable hashable values.

    ``dict.fromkeys`` and ``map`` over a dict's ``__getitem__`` run in C: ten times faster
    than ``np.unique`` on object arrays.
    """
    distinct = sorted(k for k in dict.fromkeys(values.tolist()) if k is not None)
    lookup: dict[object, int] = {k: i for i, k in enumerate(distinct)}
    lookup[None] = -1
    codes = np.fromiter(map(lookup.__getitem__, values.tolist()), dtype=np.intp, count=len(values))
    return distinct, codes


def _csr(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    values: NDArray[np.float64],
    shape: tuple[int, int],
) -> sp.csr_matrix:
    """float32 CSR with sorted indices and no explicit zeros (duplicates summed)."""
    key = rows.astype(np.int64) * shape[1] + cols
    if len(key) < 2 or bool((key[1:] > key[:-1]).all()):
        # the weighted pairs come one per cell in row-major order: the arrays are the CSR's
        # already, without scipy's COO copy, sort and passes (a live request's fold of a few
        # events spent 0.16 ms there at 10^5 items)
        data = values.astype(np.float32)
        kept = data != 0
        counts = np.bincount(rows[kept], minlength=shape[0])
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return sp.csr_matrix((data[kept], cols[kept].astype(np.intp), indptr), shape=shape)
    m = sp.csr_matrix(
        (values.astype(np.float32), (rows.astype(np.intp), cols.astype(np.intp))),
        shape=shape,
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.sort_indices()
    m.eliminate_zeros()
    return m


def _binary_csr(
    rows: NDArray[np.intp], cols: NDArray[np.intp], shape: tuple[int, int]
) -> sp.csr_matrix:
    """0/1 float32 CSR of the distinct (row, col) pairs."""
    m = _csr(rows, cols, np.ones(len(rows)), shape)
    m.data[:] = 1.0
    return m


def _sessions(
    rows: NDArray[np.intp],
    items: NDArray[np.intp],
    ts: NDArray[np.int64],
    shape: tuple[int, int],
) -> tuple[sp.csr_matrix, NDArray[np.intp]]:
    """The 0/1 float32 ``sessions × items`` CSR of the distinct (row, item) pairs, and per row
    the item whose first event is the latest (ties by the higher item index; ``-1`` for a
    row without events).

    The newest item is decided by times and indices only, not by the order the events come
    in, so that the Spark engine (:func:`training.spark.jobs.session_newest`) finds the same.
    Both come from one sort of the (row, item) keys: its runs are the matrix's cells, and
    reductions over them give each pair's first event and each row's latest (7 x 10^6 views
    in 2.7 s, against 12.2 s for a lexsort of rows, items and times).
    """
    n_rows, n_items = shape
    newest = np.full(n_rows, -1, dtype=np.intp)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    if not len(rows):
        empty = np.zeros(0, dtype=np.intp)
        return sp.csr_matrix((np.zeros(0, np.float32), empty, indptr), shape=shape), newest
    key = rows.astype(np.int64) * n_items + items
    order = np.argsort(key)
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    pair = order[starts]
    r, i = rows[pair], items[pair].astype(np.intp)  # the cells, by row then item
    counts = np.bincount(r, minlength=n_rows)
    np.cumsum(counts, out=indptr[1:])
    matrix = sp.csr_matrix((np.ones(len(i), dtype=np.float32), i, indptr), shape=shape)

    first = np.minimum.reduceat(ts[order], starts)  # each pair's first event
    filled = counts > 0
    row_starts = indptr[:-1][filled]
    latest = np.repeat(np.maximum.reduceat(first, row_starts), counts[filled])
    newest[filled] = np.maximum.reduceat(np.where(first == latest, i, -1), row_starts)
    return matrix, newest


def _orders_matrix(
    ev: EventFrame,
    codes: _Codes,
    is_purchase: NDArray[np.bool_],
    event_item: NDArray[np.intp],
    n_items: int,
) -> sp.csr_matrix:
    """Orders × items: every order (guests' too) with a purchased item in the vocabulary."""
    b = np.flatnonzero(is_purchase & (event_item >= 0))
    if not len(b):
        return _csr(np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0), (0, n_items))
    # keep only the orders that have a line here, renumbered in the same (string) order
    used, order_code = np.unique(codes.order_code[b], return_inverse=True)
    order_code = order_code.ravel() - int(used[0] < 0)
    order_ids = [codes.order_ids[k] for k in used.tolist() if k >= 0]
    missing = order_code < 0
    if missing.any():
        # an order-less purchase belongs with the same user's others at the same instant
        loose = [
            f"{u}\x00{t}" for u, t in zip(ev.user_id[b][missing], ev.ts[b][missing], strict=True)
        ]
        loose_ids, loose_code = _factorize(np.asarray(loose, dtype=object))
        order_code = order_code.copy()
        order_code[missing] = len(order_ids) + loose_code
        n_orders = len(order_ids) + len(loose_ids)
    else:
        n_orders = len(order_ids)
    return _binary_csr(order_code, event_item[b], (n_orders, n_items))


def _item_attributes(
    items: Vocabulary,
    catalog: Sequence[CatalogItem],
    ev: EventFrame,
    event_item: NDArray[np.intp],
) -> tuple[list[str], NDArray[np.float64]]:
    """Category and price per item: the catalogue's, else the median price seen in events."""
    category = [""] * len(items)
    price = np.full(len(items), np.nan)
    for c in catalog:
        i = items.index(c.item_id)
        if i >= 0:
            category[i] = c.category
            if c.price is not None and math.isfinite(c.price):
                price[i] = c.price
    seen = (event_item >= 0) & np.isfinite(ev.price) & (ev.price > 0)
    if seen.any():
        it, pr = event_item[seen], ev.price[seen]
        order = np.lexsort((pr, it))
        it, pr = it[order], pr[order]
        starts = np.flatnonzero(np.r_[True, it[1:] != it[:-1]])
        counts = np.diff(np.r_[starts, len(it)])
        lo = pr[starts + (counts - 1) // 2]
        hi = pr[starts + counts // 2]
        median = np.full(len(items), np.nan)
        median[it[starts]] = (lo + hi) / 2
        price = np.where(np.isnan(price), median, price)
    return category, price


def item_titles(items: Vocabulary, catalog: Iterable[CatalogItem]) -> list[str]:
    """Each item's title and string attribute values (``""`` when the catalogue has none):
    what :class:`~recsys.models.content.ContentModel` reads, by item index."""
    title = [""] * len(items)
    for c in catalog:
        i = items.index(c.item_id)
        if i >= 0:
            words = [str(v) for v in (c.attributes or {}).values() if isinstance(v, str)]
            title[i] = " ".join([c.title, *words]).strip()
    return title
