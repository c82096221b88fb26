"""``PurchaseHistory.from_events`` against the element-by-element loop it replaced.

:func:`reference_from_events` is the previous loop (numpy scalars read one at a time, tuple
membership per order line); on random event sets with returns, guests, orders without an id,
repeated lines, unknown prices and offer redemptions both must build the same history.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, EventFrame, EventRow
from recsys.offers.catalog import REDEMPTION_PREFIX
from recsys.offers.triggers import CustomerHistory, PurchaseHistory, day_number, day_start_micros
from tests.offers.helpers import TODAY, frame, ts


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
        stamp = ts(day, int(rng.integers(0, 24)))
        qty = float(rng.integers(1, 4))
        rows.append(EventRow(f"e{j}", user, None, item, etype, stamp, qty, price, order, rec))
    return frame(rows)


def assert_same(events: EventFrame) -> PurchaseHistory:
    fast = PurchaseHistory.from_events(events, TODAY)
    slow = reference_from_events(events, TODAY)
    assert fast == slow
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
