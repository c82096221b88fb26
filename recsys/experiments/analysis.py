"""Per-variant metrics of an experiment from plain logs of exposures and events.

Inputs are columns (numpy arrays in frozen dataclasses), so the serving layer can fill them from
the event store and tests can build them by hand:

- :class:`ExposureLog` - one row per recommendation shown: its id, the user, the experiment and
  variant, the items in the order shown (an item's position is its index), the time, and the
  probability with which each shown item was put at its position (for off-policy evaluation).
- :class:`EventLog` - one row per user event (click, purchase, ...).

**Attribution.** An event that carries a ``recommendation_id`` of a logged exposure belongs to
that exposure when it is the same customer's and happened within ``attribution_window_hours``
after it (from :data:`CLOCK_SKEW_US` before it: a client's clock may run behind the server's).
Otherwise an event belongs to the *latest* exposure of the same user that showed the same item
and happened at most ``attribution_window_hours`` before the event (last touch). Events neither
way are unattributed: an id copied onto another customer's event, or onto a purchase made
before the list was shown, does not credit the list.

**Metrics per variant.** ``users`` (distinct exposed users), ``exposures``, ``ctr`` (share of
exposures with at least one attributed click), ``conversion`` (share of users with at least one
attributed purchase), ``revenue_per_user`` (attributed purchase revenue over users),
``average_order_value`` and ``items_per_order`` (over distinct attributed orders; a purchase
without an order id is an order by itself).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recsys.data.schema import EventFrame, to_micros
from recsys.errors import DataError
from recsys.experiments.definitions import Experiment
from recsys.experiments.stats import _as_1d

MICROS_PER_HOUR = 3_600 * 1_000_000
#: How far before its exposure an event carrying the exposure's id may be dated: clients send
#: their own clocks' times, the exposure has the server's.
CLOCK_SKEW_US = 60 * 1_000_000
CLICK_TYPES = ("click",)
PURCHASE_TYPES = ("purchase",)


def _objects(values: Sequence[Any] | NDArray[Any]) -> NDArray[np.object_]:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _check_lengths(obj: Any, label: str) -> None:
    lengths = {f.name: len(getattr(obj, f.name)) for f in fields(obj)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{label}: columns differ in length: {lengths}")


@dataclass(frozen=True)
class ExposureLog:
    """Recommendations shown, one row per list (see the module docstring).

    ``items`` and ``propensities`` are object arrays of tuples; ``propensities`` may hold
    ``None`` for a row logged without them. ``ts`` is int64 microseconds UTC.
    """

    recommendation_id: NDArray[np.object_]
    user_id: NDArray[np.object_]
    experiment: NDArray[np.object_]
    variant: NDArray[np.object_]
    items: NDArray[np.object_]
    ts: NDArray[np.int64]
    propensities: NDArray[np.object_]

    def __post_init__(self) -> None:
        _check_lengths(self, "ExposureLog")
        for i, (items, props) in enumerate(zip(self.items, self.propensities, strict=True)):
            if props is None:
                continue
            if len(props) != len(items):
                raise DataError(
                    f"ExposureLog row {i} ({self.recommendation_id[i]!r}): {len(items)} items "
                    f"but {len(props)} propensities"
                )
            if any(not 0.0 < p <= 1.0 for p in props):
                raise DataError(
                    f"ExposureLog row {i} ({self.recommendation_id[i]!r}): propensities must "
                    f"be in (0, 1], got {list(props)}"
                )

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> ExposureLog:
        """Build from dicts with the field names as keys (``propensities`` optional)."""
        names = [f.name for f in fields(cls)]
        cols: dict[str, list[Any]] = {n: [] for n in names}
        for i, rec in enumerate(records):
            for n in names:
                if n not in rec and n != "propensities":
                    raise DataError(f"exposure record {i}: missing field '{n}'")
                value = rec.get(n)
                if n in ("items", "propensities") and value is not None:
                    value = tuple(value)
                cols[n].append(value)
        return cls(
            **{n: _objects(cols[n]) for n in names if n != "ts"},
            ts=np.asarray(cols["ts"], dtype=np.int64),
        )

    def select(self, mask: NDArray[np.bool_] | NDArray[np.intp]) -> ExposureLog:
        """The rows picked by a boolean mask or an index array."""
        return ExposureLog(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


@dataclass(frozen=True)
class EventLog:
    """User events as columns; ``price`` is NaN where unknown, ``ts`` int64 microseconds UTC."""

    user_id: NDArray[np.object_]
    event_type: NDArray[np.object_]
    item_id: NDArray[np.object_]
    ts: NDArray[np.int64]
    price: NDArray[np.float64]
    quantity: NDArray[np.float64]
    order_id: NDArray[np.object_]
    recommendation_id: NDArray[np.object_]

    def __post_init__(self) -> None:
        _check_lengths(self, "EventLog")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_frame(cls, frame: EventFrame) -> EventLog:
        """The columns the analysis needs from an :class:`~recsys.data.schema.EventFrame`."""
        return cls(
            user_id=frame.user_id,
            event_type=frame.event_type,
            item_id=frame.item_id,
            ts=frame.ts,
            price=frame.price,
            quantity=frame.quantity,
            order_id=frame.order_id,
            recommendation_id=frame.recommendation_id,
        )

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> EventLog:
        """Build from dicts; ``price``, ``quantity`` (1), ``order_id``, ``recommendation_id``
        are optional."""
        for i, rec in enumerate(records):
            for n in ("user_id", "event_type", "item_id", "ts"):
                if n not in rec:
                    raise DataError(f"event record {i}: missing field '{n}'")
        price = [r.get("price") for r in records]
        return cls(
            user_id=_objects([r["user_id"] for r in records]),
            event_type=_objects([r["event_type"] for r in records]),
            item_id=_objects([r["item_id"] for r in records]),
            ts=np.asarray([r["ts"] for r in records], dtype=np.int64),
            price=np.array([np.nan if p is None else p for p in price], dtype=np.float64),
            quantity=np.asarray([r.get("quantity", 1.0) for r in records], dtype=np.float64),
            order_id=_objects([r.get("order_id") for r in records]),
            recommendation_id=_objects([r.get("recommendation_id") for r in records]),
        )


def attribute(exposures: ExposureLog, events: EventLog, window_hours: float) -> NDArray[np.intp]:
    """For each event, the index of the exposure it is attributed to, or -1.

    See the module docstring for the rule.
    """
    if window_hours <= 0:
        raise DataError(f"attribution window must be positive, got {window_hours!r} hours")
    window = int(window_hours * MICROS_PER_HOUR)
    exposed_at = exposures.ts.tolist()
    by_id: dict[Any, int] = {}
    shown: dict[tuple[Any, Any], list[tuple[int, int]]] = {}
    for i, (rid, user, items, ts) in enumerate(
        zip(
            exposures.recommendation_id,
            exposures.user_id,
            exposures.items,
            exposed_at,
            strict=True,
        )
    ):
        if rid is not None:
            by_id[rid] = i
        for item in items:
            shown.setdefault((user, item), []).append((ts, i))
    times: dict[tuple[Any, Any], list[int]] = {}
    for key, hits in shown.items():
        hits.sort()
        times[key] = [t for t, _ in hits]
    out = np.full(len(events), -1, dtype=np.intp)
    for j, (rid, user, item, ts) in enumerate(
        zip(
            events.recommendation_id,
            events.user_id,
            events.item_id,
            events.ts.tolist(),
            strict=True,
        )
    ):
        named = by_id.get(rid) if rid is not None else None
        if (
            named is not None
            and user == exposures.user_id[named]
            and -CLOCK_SKEW_US <= ts - exposed_at[named] <= window
        ):
            out[j] = named
            continue
        ts_list = times.get((user, item))
        if ts_list is None:
            continue
        k = bisect.bisect_right(ts_list, ts) - 1
        if k >= 0 and ts - ts_list[k] <= window:
            out[j] = shown[(user, item)][k][1]
    return out


@dataclass(frozen=True)
class VariantMetrics:
    """Metrics of one variant; per-user arrays are kept for the tests on means.

    ``user_ids``, ``user_revenue``, ``user_purchased``, ``user_exposures`` and ``user_clicked``
    (their exposures with an attributed click) are aligned: one entry per exposed user.
    """

    name: str
    users: int
    exposures: int
    clicked_exposures: int
    purchasers: int
    revenue: float
    orders: int
    items_purchased: float
    user_ids: NDArray[np.object_] = field(repr=False)
    user_revenue: NDArray[np.float64] = field(repr=False)
    user_purchased: NDArray[np.bool_] = field(repr=False)
    user_exposures: NDArray[np.int64] = field(repr=False)
    user_clicked: NDArray[np.int64] = field(repr=False)

    @property
    def ctr(self) -> float:
        """Share of exposures with at least one attributed click."""
        return self.clicked_exposures / self.exposures if self.exposures else float("nan")

    @property
    def conversion(self) -> float:
        """Share of users with at least one attributed purchase."""
        return self.purchasers / self.users if self.users else float("nan")

    @property
    def revenue_per_user(self) -> float:
        """Attributed purchase revenue per exposed user."""
        return self.revenue / self.users if self.users else float("nan")

    @property
    def average_order_value(self) -> float:
        """Attributed revenue per attributed order."""
        return self.revenue / self.orders if self.orders else float("nan")

    @property
    def items_per_order(self) -> float:
        """Attributed units per attributed order."""
        return self.items_purchased / self.orders if self.orders else float("nan")

    def summary(self) -> dict[str, float | int | str]:
        """The counts and metrics as plain numbers."""
        return {
            "variant": self.name,
            "users": self.users,
            "exposures": self.exposures,
            "clicked_exposures": self.clicked_exposures,
            "purchasers": self.purchasers,
            "revenue": self.revenue,
            "orders": self.orders,
            "ctr": self.ctr,
            "conversion": self.conversion,
            "revenue_per_user": self.revenue_per_user,
            "average_order_value": self.average_order_value,
            "items_per_order": self.items_per_order,
        }


@dataclass(frozen=True)
class ExperimentData:
    """Everything :func:`analyse` measured for one experiment."""

    experiment: str
    variants: dict[str, VariantMetrics]
    users_in_several_variants: int
    attributed_events: int
    unattributed_events: int


def analyse(
    experiment: Experiment,
    exposures: ExposureLog,
    events: EventLog,
    *,
    click_types: Sequence[str] = CLICK_TYPES,
    purchase_types: Sequence[str] = PURCHASE_TYPES,
) -> ExperimentData:
    """Per-variant metrics of ``experiment`` (holdout included when it was logged).

    Only exposures logged under the experiment's name within ``[start, end)`` count. A user
    logged under several variants (a broken assignment) is counted in the first one only, and
    counted in ``users_in_several_variants`` so the report can say so.
    """
    start, end = to_micros(experiment.start), to_micros(experiment.end)
    keep = (
        (exposures.experiment == experiment.name) & (exposures.ts >= start) & (exposures.ts < end)
    )
    exp = exposures.select(np.flatnonzero(keep))
    owner = attribute(exp, events, experiment.attribution_window_hours)
    if len(events):
        _as_1d(events.quantity, "EventLog.quantity")

    first_variant: dict[Any, Any] = {}
    conflicted: set[Any] = set()
    for user, variant in zip(exp.user_id, exp.variant, strict=True):
        seen = first_variant.setdefault(user, variant)
        if seen != variant:
            conflicted.add(user)

    is_click = np.isin(events.event_type, list(click_types))
    is_purchase = np.isin(events.event_type, list(purchase_types))
    attributed = owner >= 0
    clicked_exposures = set(owner[attributed & is_click].tolist())

    names: list[str] = []
    for v in (*experiment.variant_names, *exp.variant.tolist()):
        if v not in names:
            names.append(v)
    user_rev: dict[Any, float] = {}
    user_bought: set[Any] = set()
    orders: dict[str, set[Any]] = {n: set() for n in names}
    units: dict[str, float] = dict.fromkeys(names, 0.0)
    buy_idx = np.flatnonzero(attributed & is_purchase)
    for j in buy_idx.tolist():
        user = exp.user_id[owner[j]]
        variant = first_variant[user]
        price = events.price[j]
        value = 0.0 if np.isnan(price) else float(price) * float(events.quantity[j])
        user_rev[user] = user_rev.get(user, 0.0) + value
        user_bought.add(user)
        order = events.order_id[j]
        orders[variant].add(order if order is not None else ("event", j))
        units[variant] += float(events.quantity[j])

    out: dict[str, VariantMetrics] = {}
    exp_variant_of_user = np.array([first_variant[u] for u in exp.user_id], dtype=object)
    for name in names:
        users = [u for u, v in first_variant.items() if v == name]
        rows = np.flatnonzero(exp_variant_of_user == name)
        rev = np.array([user_rev.get(u, 0.0) for u in users], dtype=np.float64)
        bought = np.array([u in user_bought for u in users], dtype=bool)
        shown: dict[Any, int] = dict.fromkeys(users, 0)
        clicked: dict[Any, int] = dict.fromkeys(users, 0)
        for r in rows.tolist():
            u = exp.user_id[r]
            shown[u] += 1
            clicked[u] += r in clicked_exposures
        out[name] = VariantMetrics(
            name=name,
            users=len(users),
            exposures=len(rows),
            clicked_exposures=sum(clicked.values()),
            purchasers=int(bought.sum()),
            revenue=float(rev.sum()),
            orders=len(orders[name]),
            items_purchased=units[name],
            user_ids=_objects(users),
            user_revenue=rev,
            user_purchased=bought,
            user_exposures=np.array([shown[u] for u in users], dtype=np.int64),
            user_clicked=np.array([clicked[u] for u in users], dtype=np.int64),
        )
    return ExperimentData(
        experiment=experiment.name,
        variants=out,
        users_in_several_variants=len(conflicted),
        attributed_events=int(attributed.sum()),
        unattributed_events=int((~attributed).sum()),
    )
