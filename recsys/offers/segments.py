"""Customer segments: RFM scores, k-means clusters and a readable label per customer.

Measured at ``as_of`` (the data's time, never the wall clock), from purchases before it:

* **recency**: days from the customer's last order to ``as_of``;
* **frequency**: distinct orders;
* **monetary**: spend (quantity × price) net of returns.

Each becomes a quintile score 1-5 (:func:`quintile_scores`; recency reversed, so 5 = most
recent), written ``rfm = "RFM"`` (e.g. ``"545"``). The label comes from R and F, in order:

==============  ===================================================
``new``         one order, R >= 4
``champions``   R >= 4 and F >= 4
``loyal``       R = 3 and F >= 4
``potential``   R >= 3 (few orders but recent)
``at_risk``     R <= 2 and F >= 3 (used to buy often, lapsing)
``hibernating`` R <= 2 and F <= 2
==============  ===================================================

Clusters are k-means (scikit-learn, seeded) on standardised ``log1p`` of the three raw values,
numbered by increasing mean spend, so cluster 0 is the lowest-value group in every run.
Customers without a purchase are not in the table (they are *prospects*:
:data:`PROSPECT`); customers who opted out of personalisation are left out too, because a
segment is a profile.

The training pipeline recomputes and stores the table::

    table = compute_segments(events, as_of, store.read_customers())
    store_segments(store, table)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.data.schema import (
    MICROS_PER_DAY,
    PURCHASE,
    RETURN,
    Customer,
    EventFrame,
    personalisation_opt_outs,
)
from recsys.offers.triggers import (
    CustomerHistory,
    PurchaseHistory,
    _factorize,
    _starts,
    day_number,
    day_start_micros,
)

#: Segment of a customer with no purchase (not stored in the table).
PROSPECT = "prospect"
SEGMENT_LABELS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential",
    "new",
    "at_risk",
    "hibernating",
)


def quintile_scores(values: NDArray[np.floating] | Sequence[float]) -> NDArray[np.int64]:
    """Quintile scores 1-5 of ``values`` (higher value, higher score).

    Scores come from mid-ranks (ties get the same score), ``1 + floor(5 (rank - 0.5) / n)``,
    so they are monotone non-decreasing in the value and each score holds about a fifth of
    the customers when values are distinct.
    """
    from scipy.stats import rankdata

    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return np.empty(0, dtype=np.int64)
    ranks = rankdata(x, method="average")
    scores = 1 + np.floor(5.0 * (ranks - 0.5) / len(x)).astype(np.int64)
    return np.clip(scores, 1, 5)


def label_segment(r: int, f: int, n_orders: int) -> str:
    """The readable segment of an R and F score (see the module docstring)."""
    if n_orders == 1 and r >= 4:
        return "new"
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 3 and f >= 4:
        return "loyal"
    if r >= 3:
        return "potential"
    if f >= 3:
        return "at_risk"
    return "hibernating"


@dataclass(frozen=True)
class SegmentTable:
    """Segments of every customer with a purchase, ordered by ``user_id``."""

    user_id: list[str]
    recency_days: NDArray[np.float64]
    frequency: NDArray[np.float64]
    monetary: NDArray[np.float64]
    rfm: list[str]
    cluster: NDArray[np.int64]
    segment: list[str]
    computed_at: int  # the as_of, microseconds UTC

    def __len__(self) -> int:
        return len(self.user_id)

    def segment_of(self) -> dict[str, str]:
        """``user_id -> segment``."""
        return dict(zip(self.user_id, self.segment, strict=True))

    def summary(self) -> list[dict[str, Any]]:
        """Per segment: customers, mean recency (days), frequency (orders), monetary."""
        out = []
        labels = np.asarray(self.segment, dtype=object)
        for name in [*SEGMENT_LABELS, *sorted(set(self.segment) - set(SEGMENT_LABELS))]:
            mask = labels == name
            if not mask.any():
                continue
            out.append(
                {
                    "segment": name,
                    "customers": int(mask.sum()),
                    "mean_recency_days": round(float(self.recency_days[mask].mean()), 1),
                    "mean_frequency": round(float(self.frequency[mask].mean()), 2),
                    "mean_monetary": round(float(self.monetary[mask].mean()), 2),
                }
            )
        return out


def _quintile_of(value: float, distinct: NDArray[np.float64], cum: NDArray[np.int64]) -> int:
    """:func:`quintile_scores` of ``value`` among the values whose distinct ones (ascending)
    are ``distinct`` with cumulative counts ``cum`` (the same mid-rank arithmetic)."""
    n = int(cum[-1]) if len(cum) else 0
    if n == 0:
        return 1
    i = int(np.searchsorted(distinct, value, side="left"))
    below = int(cum[i - 1]) if i > 0 else 0
    at_or_below = int(cum[i]) if i < len(distinct) and distinct[i] == value else below
    rank = 0.5 * (at_or_below + below + 1)
    return min(max(1 + math.floor(5.0 * (rank - 0.5) / n), 1), 5)


@dataclass(frozen=True)
class SegmentScale:
    """Where one customer's recency and frequency fall among everyone's, without everyone.

    A segment's R and F scores are quintiles among all segmented customers; this keeps only
    the distinct values and how many customers have each (a few hundred days and order
    counts, whatever the number of customers), so a server labels one customer per request
    exactly as :func:`compute_segments` labelled them in the day's table.
    """

    as_of_day: int
    recency: NDArray[np.float64]  # distinct values of -recency, ascending
    recency_cum: NDArray[np.int64]
    frequency: NDArray[np.float64]  # distinct order counts, ascending
    frequency_cum: NDArray[np.int64]

    @classmethod
    def from_table(cls, table: SegmentTable) -> SegmentScale:
        """The scale of a table computed at a midnight (``compute_segments(..., date)``)."""
        r, r_n = np.unique(-np.asarray(table.recency_days, dtype=np.float64), return_counts=True)
        f, f_n = np.unique(np.asarray(table.frequency, dtype=np.float64), return_counts=True)
        return cls(
            as_of_day=table.computed_at // MICROS_PER_DAY,
            recency=r,
            recency_cum=np.cumsum(r_n).astype(np.int64),
            frequency=f,
            frequency_cum=np.cumsum(f_n).astype(np.int64),
        )

    @classmethod
    def from_history(
        cls, history: PurchaseHistory, as_of: date, customers: Sequence[Customer] = ()
    ) -> SegmentScale:
        """The scale :func:`compute_segments` would give at ``as_of``'s midnight, from a
        history of the purchases before it (no k-means: a server needs the labels only)."""
        day = day_number(as_of)
        opted_out = personalisation_opt_outs(customers)
        kept = [h for u, h in history.customers.items() if u not in opted_out]
        recency = np.array([max(float(day - h.order_days[-1]), 0.0) for h in kept])
        frequency = np.array([float(h.n_orders) for h in kept])
        r, r_n = np.unique(-recency, return_counts=True)
        f, f_n = np.unique(frequency, return_counts=True)
        return cls(
            as_of_day=day,
            recency=r.astype(np.float64),
            recency_cum=np.cumsum(r_n).astype(np.int64),
            frequency=f.astype(np.float64),
            frequency_cum=np.cumsum(f_n).astype(np.int64),
        )

    def segments_of(
        self, history: PurchaseHistory, customers: Sequence[Customer] = ()
    ) -> dict[str, str]:
        """``user_id -> segment`` of every customer of ``history`` (opt-outs left out), as
        :meth:`SegmentTable.segment_of` gives it."""
        opted_out = personalisation_opt_outs(customers)
        out = {}
        for user, h in history.customers.items():
            label = None if user in opted_out else self.segment(h)
            if label is not None:
                out[user] = label
        return out

    def segment(self, history: CustomerHistory | None) -> str | None:
        """The segment of a customer with this history (orders from ``as_of_day`` on are not
        counted: the table was computed at its midnight); ``None`` without an order before."""
        if history is None:
            return None
        n = bisect.bisect_left(history.order_days, self.as_of_day)
        if n == 0:
            return None
        recency = max(float(self.as_of_day - history.order_days[n - 1]), 0.0)
        r = _quintile_of(-recency, self.recency, self.recency_cum)
        f = _quintile_of(float(n), self.frequency, self.frequency_cum)
        return label_segment(r, f, n)


def compute_segments(
    events: EventFrame,
    as_of: int | date,
    customers: Sequence[Customer] = (),
    *,
    k: int = 4,
    seed: int = 0,
) -> SegmentTable:
    """RFM scores, clusters and labels of every customer who bought before ``as_of``.

    Parameters
    ----------
    events
        Events (any types; purchases and returns are read).
    as_of
        Microseconds UTC, or a date (its midnight UTC): only events before it count and
        recency is measured to it. Pass the training data's ``as_of``.
    customers
        Profiles; those with ``personalisation_opt_out`` are left out of the table.
    k
        Clusters (fewer when there are fewer distinct customers).
    seed
        Seed of k-means.
    """
    # a partial day counts: purchases earlier on the as_of day are kept
    as_of_us = day_start_micros(as_of) if isinstance(as_of, date) else int(as_of)
    opted_out = personalisation_opt_outs(customers)
    users, recency, frequency, monetary = customer_rfm(events, as_of_us, opted_out)
    return segments_of(users, recency, frequency, monetary, as_of_us, k=k, seed=seed)


def segments_of(
    users: list[str],
    recency: NDArray[np.float64],
    frequency: NDArray[np.float64],
    monetary: NDArray[np.float64],
    as_of_us: int,
    *,
    k: int = 4,
    seed: int = 0,
) -> SegmentTable:
    """The segment table of customers whose recency, frequency and monetary were computed
    elsewhere (:func:`customer_rfm`, or the Spark engine's job of the same rules): their
    quintile scores, clusters and labels, as :func:`compute_segments` gives them.

    Parameters
    ----------
    users, recency, frequency, monetary
        As :func:`customer_rfm` returns them (ids ascending).
    as_of_us
        When they were measured (microseconds UTC).
    k, seed
        As for :func:`compute_segments`.
    """
    r = quintile_scores(-recency)
    f = quintile_scores(frequency)
    m = quintile_scores(monetary)
    rfm = [f"{a}{b}{c}" for a, b, c in zip(r.tolist(), f.tolist(), m.tolist(), strict=True)]
    segment = [
        label_segment(a, b, int(n))
        for a, b, n in zip(r.tolist(), f.tolist(), frequency.tolist(), strict=True)
    ]
    cluster = _clusters(recency, frequency, monetary, k=k, seed=seed)
    return SegmentTable(
        user_id=users,
        recency_days=recency,
        frequency=frequency,
        monetary=monetary,
        rfm=rfm,
        cluster=cluster,
        segment=segment,
        computed_at=as_of_us,
    )


def customer_rfm(
    events: EventFrame, as_of_us: int, opted_out: Container[str] = frozenset()
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Recency, frequency and monetary of every customer who bought before ``as_of_us``.

    The values :class:`~recsys.offers.triggers.PurchaseHistory` gives (from the events
    before ``as_of_us``): ``max(as_of_us / MICROS_PER_DAY - order_days[-1], 0.0)``,
    ``n_orders`` and ``monetary``, computed without building it.

    Parameters
    ----------
    events
        Any events; purchases and returns before ``as_of_us`` are read.
    as_of_us
        Microseconds UTC; recency is measured to it (a fraction of a day included).
    opted_out
        Customers left out.

    Returns
    -------
    tuple
        ``user_id`` (ascending), recency in days, distinct orders and spend net of returns
        (never below 0), as float64 arrays aligned with the ids.

    Notes
    -----
    ``PurchaseHistory.from_events`` also builds every order's items, every customer-item's
    days, median prices and redemptions, which segments do not read: it took 1.1 s on
    Online Retail and 2.9 s on Ta-Feng, this 0.2 s and 0.8 s (profiled, nice 19, on a
    shared 2-core machine). Its rules are kept to
    the bit: guests (a false ``user_id``) are left out; an order is a ``(user, order_id)``,
    or a ``(user, ts)`` for a line without an id; an order's day is its earliest line's and
    a customer's orders run by first line; an order's value is summed over its lines in
    time order (``np.bincount`` adds in input order, as the history's does), a customer's
    spend is Python's ``sum`` of their order values in that order (the same function as
    :attr:`CustomerHistory.monetary`, whatever the Python version's float summation), and
    returns are summed in time order, customers with returns but no order left out.
    """
    ts_all = np.asarray(events.ts, dtype=np.int64)
    types = events.event_type
    read = (ts_all < as_of_us) & np.isin(types, [PURCHASE, RETURN])
    order = np.flatnonzero(read)
    # time order, ties in event order: the order of the history's walk
    order = order[np.argsort(ts_all[order], kind="stable")]
    ts = ts_all[order]
    price = np.asarray(events.price, dtype=np.float64)[order]
    quantity = np.asarray(events.quantity, dtype=np.float64)[order]
    value = np.where(np.isnan(price), 0.0, price * quantity)
    user, names = _factorize_runs(events.user_id[order])
    known = np.array([bool(u) for u in names], dtype=bool)[user]
    is_return = np.asarray(types[order] == RETURN, dtype=bool)
    back = np.flatnonzero(known & is_return)
    # float even with no returns (bincount of nothing counts in int)
    returned = np.bincount(user[back], weights=value[back], minlength=len(names))
    returned_list = returned.astype(np.float64).tolist()

    lines = np.flatnonzero(known & ~is_return)  # purchase lines, time order
    if not len(lines):
        empty = np.empty(0, dtype=np.float64)
        return [], empty, empty.copy(), empty.copy()
    user, value, ts = user[lines], value[lines], ts[lines]
    code, ids = _factorize_runs(events.order_id[order[lines]])
    no_id = ids.index(None) if None in ids else -1
    without_id = code == no_id
    second = np.where(without_id, ts, code)
    seq = np.arange(len(lines))
    by_key = np.lexsort((seq, second, without_id, user))
    starts = _starts(user[by_key], without_id[by_key], second[by_key])
    line_order = np.empty(len(lines), dtype=np.int64)
    line_order[by_key] = np.cumsum(starts) - 1
    order_value = np.bincount(line_order, weights=value)
    first = by_key[starts]  # each order's earliest line (seq is the last sort key)
    # a customer's orders by first line: their values in the order Python's sum adds them
    by_first = np.lexsort((first, user[first]))
    order_user = user[first][by_first]
    counts = np.bincount(order_user, minlength=len(names))
    ends = np.cumsum(counts)
    values = order_value[by_first].tolist()
    last_day = ts[first[by_first]] // MICROS_PER_DAY  # an order's day: its first line's

    codes = [c for c in np.flatnonzero(counts).tolist() if names[c] not in opted_out]
    codes.sort(key=names.__getitem__)
    users = [names[c] for c in codes]
    ends_list = ends.tolist()
    counts_list = counts.tolist()
    monetary = np.array(
        [
            max(sum(values[ends_list[c] - counts_list[c] : ends_list[c]]) - returned_list[c], 0.0)
            for c in codes
        ],
        dtype=np.float64,
    )
    pick = np.asarray(codes, dtype=np.int64)
    recency = as_of_us / MICROS_PER_DAY - last_day[ends[pick] - 1].astype(np.float64)
    # max(r, 0.0) as Python takes it: r unless 0.0 > r (a NaN stays, -0.0 too)
    recency = np.where(recency < 0.0, 0.0, recency)
    frequency = counts[pick].astype(np.float64)
    return users, recency, frequency, monetary


def _factorize_runs(values: NDArray[np.object_]) -> tuple[NDArray[np.int64], list[Any]]:
    """``_factorize(values.tolist())`` (codes by first appearance, the distinct values in
    that order), hashing only the first value of each run of equal neighbours.

    In time order an order's lines, and so its customer's id and its order id, often sit
    next to each other: Online Retail's 536,462 lines hold about 22,000 runs of each, and
    hashing every value into a dict was a third of its RFM. Ta-Feng's orders share one
    timestamp per day and interleave (796,194 runs in 817,741 lines); there every value is
    hashed, as before, after a neighbour comparison that costs about 0.02 s. A value equal
    (``==``) to its neighbour gets the neighbour's code, as a dict gives it for ids (``str``
    or ``None``).
    """
    if not len(values):
        return np.empty(0, dtype=np.int64), []
    head = np.ones(len(values), dtype=bool)
    head[1:] = values[1:] != values[:-1]
    if 2 * int(np.count_nonzero(head)) > len(values):
        return _factorize(values.tolist())
    codes, names = _factorize(values[head].tolist())
    return codes[np.cumsum(head) - 1], names


def _clusters(
    recency: NDArray[np.float64],
    frequency: NDArray[np.float64],
    monetary: NDArray[np.float64],
    *,
    k: int,
    seed: int,
) -> NDArray[np.int64]:
    if len(recency) == 0:
        return np.empty(0, dtype=np.int64)
    x = np.log1p(np.column_stack([recency, frequency, monetary]))
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    # k-means warns (and fails under -W error) when asked for more clusters than points
    distinct = len(np.unique(np.round(x, 9), axis=0))
    k = max(1, min(k, distinct))
    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: scikit-learn's threads spin at every barrier of every Lloyd
    # iteration, and on a shared 2-core machine fitting these few thousand 3-D points took
    # 2.9-4.2 s on two threads against 0.04 s on one (Online Retail; 0.3 s against 3-5 s on
    # Ta-Feng). One thread also makes the fit independent of the machine's core count: the
    # centres' sums are split per thread, so thread counts differ in the last bits of the
    # centres (the labels were the same at 1 to 4 threads, on 9 as-ofs of each data set).
    with threadpool_limits(1, "openmp"):
        labels = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(x)
    # number clusters by increasing mean spend so that labels read the same in every run
    means = [monetary[labels == c].mean() for c in range(k)]
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    return rank[labels].astype(np.int64)
