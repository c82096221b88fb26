"""``PurchaseHistory.from_events`` against a walk over the events, one at a time.

:func:`reference_from_events` is an early per-event loop (numpy scalars read one at a time,
tuple membership per order line), the oracle of the grouped build. On random event sets with
returns, guests, orders without an id, repeated lines, ties in time, unknown or non-positive
prices and offer redemptions, the build must equal it: the same values, and every dict in the
same order (callers iterate them).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, EventFrame, EventRow
from recsys.offers.catalog import REDEMPTION_PREFIX
from recsys.offers.triggers import CustomerHistory, PurchaseHistory, day_number, day_start_micros
from tests.offers.helpers import TODAY, frame
from tests.offers.helpers import ts as stamp_of


def reference_from_events(events: EventFrame, until: date) -> PurchaseHistory:
    """The loop as it was before (the oracle)."""
    limit = day_start_micros(until)
    mask = (events.ts < limit) & np.isin(events.event_type, [PURCHASE, RETURN])
    ev = events.select(np.flatnonzero(mask))
    order = np.argsort(ev.ts, kind="stable")
    orders: dict[tuple[str, object], int] = {}
    customers: dict[str, CustomerHistory] = {}
    item_days: dict[tuple[str, str], list[int]] = {}
    prices: dict[str, list[float]] = {}
    redeemed_orders: dict[tuple[str, str], set[object]] = {}
    redeemed_value: dict[str, float] = {}
    users, items, types = ev.user_id, ev.item_id, ev.event_type
    for i in order.tolist():
        user = users[i]
        price = float(ev.price[i])
        value = 0.0 if np.isnan(price) else price * float(ev.quantity[i])
        if not user:
            continue
        hist = customers.setdefault(user, CustomerHistory())
        if types[i] == RETURN:
            hist.returned_value += value
            continue
        item = items[i]
        day = int(ev.ts[i] // MICROS_PER_DAY)
        key = (user, ev.order_id[i] if ev.order_id[i] is not None else ("ts", int(ev.ts[i])))
        pos = orders.get(key)
        if pos is None:
            pos = orders[key] = hist.n_orders
            hist.order_days.append(day)
            hist.order_values.append(0.0)
            hist.order_items.append(())
        hist.order_values[pos] += value
        if item not in hist.order_items[pos]:
            hist.order_items[pos] = (*hist.order_items[pos], item)
            days = item_days.setdefault((user, item), [])
            if not days or days[-1] != hist.order_days[pos]:
                days.append(hist.order_days[pos])
        if not np.isnan(price) and price > 0:
            prices.setdefault(item, []).append(price)
        rec = ev.recommendation_id[i]
        if isinstance(rec, str) and rec.startswith(REDEMPTION_PREFIX):
            offer = rec[len(REDEMPTION_PREFIX) :]
            redeemed_orders.setdefault((user, offer), set()).add(key)
            redeemed_value[offer] = redeemed_value.get(offer, 0.0) + value
    customers = {u: h for u, h in customers.items() if h.n_orders}
    return PurchaseHistory(
        customers=customers,
        item_days=item_days,
        item_price={k: float(np.median(v)) for k, v in prices.items()},
        redemptions={k: len(v) for k, v in redeemed_orders.items()},
        redeemed_value=redeemed_value,
        until_day=day_number(until),
    )


def random_events(seed: int, n: int) -> EventFrame:
    rng = np.random.default_rng(seed)
    rows: list[EventRow] = []
    for j in range(n):
        user = "" if rng.random() < 0.05 else f"u{rng.integers(6)}"
        item = f"i{rng.integers(8)}"
        day = TODAY - timedelta(days=int(rng.integers(-3, 60)))
        kind = rng.random()
        etype = "return" if kind < 0.1 else "view" if kind < 0.2 else "purchase"
        order = None if rng.random() < 0.3 else f"{user}-o{rng.integers(10)}"
        price = None if rng.random() < 0.1 else float(rng.choice([0.0, 1.5, 2.25, 10.0]))
        rec = f"{REDEMPTION_PREFIX}x{rng.integers(3)}" if rng.random() < 0.15 else None
        stamp = stamp_of(day, int(rng.integers(0, 24)))
        qty = float(rng.integers(1, 4))
        rows.append(EventRow(f"e{j}", user, None, item, etype, stamp, qty, price, order, rec))
    return frame(rows)


def assert_identical(fast: PurchaseHistory, slow: PurchaseHistory) -> None:
    """Equal, with every dict in the same order and every number of the same type."""
    assert fast == slow
    for name in ("customers", "item_days", "item_price", "redemptions", "redeemed_value"):
        assert list(getattr(fast, name)) == list(getattr(slow, name)), name
    for user, hist in fast.customers.items():
        twin = slow.customers[user]
        assert type(hist.returned_value) is type(twin.returned_value)
        assert [type(d) for d in hist.order_days] == [type(d) for d in twin.order_days]
        assert [type(v) for v in hist.order_values] == [type(v) for v in twin.order_values]
    for days in fast.item_days.values():
        assert all(type(d) is int for d in days)


def assert_same(events: EventFrame) -> PurchaseHistory:
    fast = PurchaseHistory.from_events(events, TODAY)
    assert_identical(fast, reference_from_events(events, TODAY))
    return fast


def test_matches_the_reference_loop_on_a_busy_shop() -> None:
    hist = assert_same(random_events(seed=1, n=800))
    # not vacuous: orders with several items, returns, redemptions all occur
    assert any(len(items) > 1 for h in hist.customers.values() for items in h.order_items)
    assert any(h.returned_value > 0 for h in hist.customers.values())
    assert hist.redemptions and hist.item_price


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 60))
def test_matches_the_reference_loop(seed: int, n: int) -> None:
    assert_same(random_events(seed, n))


# Few users, items, order ids and hours, so that orders share ids across customers, items
# repeat within an order, lines tie in time and a late line of an old order follows a newer one.
_event = st.tuples(
    st.sampled_from(["", None, "u0", "u1", "u2"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from([PURCHASE, PURCHASE, PURCHASE, RETURN, "view"]),
    st.integers(-2, 40),  # days before TODAY; negative: after it, left out
    st.sampled_from([0, 12, 23]),
    st.sampled_from([1.0, 2.0, 3.0, 0.5]),
    st.sampled_from([None, 0.0, -1.0, 0.1, 0.2, 1.5, 2.25, 1e16]),
    st.sampled_from([None, None, "o1", "o2", "o3"]),
    st.sampled_from(
        [None, "r-1", f"{REDEMPTION_PREFIX}x", f"{REDEMPTION_PREFIX}y", REDEMPTION_PREFIX]
    ),
)


def _frame(events: list[tuple[Any, ...]]) -> EventFrame:
    """Rows of ``_event`` tuples: (user, item, type, days before TODAY, hour, quantity, price,
    order id, recommendation id)."""
    rows = [
        EventRow(
            f"e{j}",
            user,
            None,
            item,
            etype,
            stamp_of(TODAY - timedelta(days=back), hour),
            qty,
            price,
            order,
            rec,
        )
        for j, (user, item, etype, back, hour, qty, price, order, rec) in enumerate(events)
    ]
    return frame(rows)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_event, max_size=40))
def test_equals_the_loop_on_any_events(events: list[tuple[Any, ...]]) -> None:
    built = _frame(events)
    assert_identical(PurchaseHistory.from_events(built, TODAY), reference_from_events(built, TODAY))


def test_a_late_line_of_an_old_order_adds_its_day_again() -> None:
    # o1 opens 10 days back, o2 5 days back; a line of o1 three days back buys b, already
    # bought in o2: b's days are o2's then o1's again (the order's day, not the line's)
    hist = assert_same(
        _frame(
            [
                ("u", "a", PURCHASE, 10, 12, 1.0, 1.0, "o1", None),
                ("u", "b", PURCHASE, 5, 12, 1.0, 2.0, "o2", None),
                ("u", "b", PURCHASE, 3, 12, 1.0, 4.0, "o1", None),
                ("u", "b", PURCHASE, 3, 13, 1.0, 8.0, "o1", None),
            ]
        )
    )
    o1, o2 = day_number(TODAY) - 10, day_number(TODAY) - 5
    assert hist.item_days == {("u", "a"): [o1], ("u", "b"): [o2, o1]}
    assert hist.customers["u"].order_items == [("a", "b"), ("b",)]
    assert hist.customers["u"].order_values == [13.0, 2.0]
    assert hist.item_price == {"a": 1.0, "b": 4.0}  # median of 2, 4, 8: every line counts


def test_only_returns_guests_and_views_build_nothing() -> None:
    hist = assert_same(
        _frame(
            [
                ("u", "a", RETURN, 3, 12, 1.0, 2.0, "o1", None),
                ("", "a", PURCHASE, 3, 12, 1.0, 2.0, None, f"{REDEMPTION_PREFIX}x"),
                ("u", "a", "view", 3, 12, 1.0, 2.0, None, None),
            ]
        )
    )
    assert hist.customers == {} and hist.item_days == {} and hist.item_price == {}
    assert hist.redemptions == {} and hist.redeemed_value == {}


def test_redemptions_count_orders_and_keep_the_order_of_first_redemption() -> None:
    x, y = f"{REDEMPTION_PREFIX}x", f"{REDEMPTION_PREFIX}y"
    hist = assert_same(
        _frame(
            [
                ("u", "a", PURCHASE, 10, 12, 1.0, 1.0, "o1", None),
                ("u", "a", PURCHASE, 8, 12, 2.0, 1.0, "o2", x),
                ("u", "b", PURCHASE, 8, 13, 1.0, 3.0, "o2", x),  # same order: counted once
                ("u", "a", PURCHASE, 7, 12, 1.0, 1.0, "o3", y),
                ("u", "c", PURCHASE, 6, 12, 1.0, 5.0, "o1", x),  # the oldest order, redeemed late
            ]
        )
    )
    assert list(hist.redemptions.items()) == [(("u", "x"), 2), (("u", "y"), 1)]
    assert list(hist.redeemed_value.items()) == [("x", 10.0), ("y", 1.0)]
