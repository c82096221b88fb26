from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import MICROS_PER_DAY, PURCHASE, RETURN, Customer, EventFrame, EventRow
from recsys.offers.segments import (
    SEGMENT_LABELS,
    _clusters,
    _factorize_runs,
    compute_segments,
    customer_rfm,
    quintile_scores,
)
from recsys.offers.store import read_segments, store_segments
from recsys.offers.triggers import PurchaseHistory, _factorize
from recsys.store.base import EventStore
from tests.offers.helpers import TODAY, frame, purchase, ts

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200)


@settings(deadline=None, max_examples=60)
@given(values)
def test_quintiles_in_range_and_monotone(xs: list[float]) -> None:
    scores = quintile_scores(xs)
    assert scores.min() >= 1 and scores.max() <= 5
    order = np.argsort(xs, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0)
    for a, b in zip(xs, scores.tolist(), strict=True):  # equal values, equal scores
        assert all(s == b for x, s in zip(xs, scores.tolist(), strict=True) if x == a)


def test_quintiles_of_distinct_values_are_fifths() -> None:
    assert np.bincount(quintile_scores(np.arange(100.0)), minlength=6)[1:].tolist() == [20] * 5


def _shop() -> list:
    rows = []
    for u in range(30):
        for k in range(1 + u % 6):
            rows.append(
                purchase(f"u{u:02d}", "a", TODAY - timedelta(days=1 + u * 5 + k * 7), price=5.0 + u)
            )
    return rows


def test_compute_segments_labels_and_opt_out() -> None:
    customers = [Customer("u00", personalisation_opt_out=True)]
    table = compute_segments(frame(_shop()), TODAY, customers, k=3, seed=1)
    assert len(table) == 29 and "u00" not in table.user_id
    assert set(table.segment) <= set(SEGMENT_LABELS)
    assert set(table.cluster.tolist()) == {0, 1, 2}
    recent = table.user_id.index("u01")  # 2 orders, recent
    old = table.user_id.index("u29")
    assert table.rfm[recent][0] > table.rfm[old][0]
    again = compute_segments(frame(_shop()), TODAY, customers, k=3, seed=1)
    assert again.cluster.tolist() == table.cluster.tolist()
    assert sum(r["customers"] for r in table.summary()) == 29


def test_segments_round_trip_through_the_store(store: EventStore) -> None:
    store.migrate()
    table = compute_segments(frame(_shop()), TODAY, k=2)
    assert store_segments(store, table) == 30
    back = read_segments(store)
    assert back is not None
    assert back.user_id == table.user_id and back.segment == table.segment
    assert np.allclose(back.monetary, table.monetary)
    assert store_segments(store, compute_segments(frame(_shop()[:3]), TODAY)) == 2
    assert len(read_segments(store) or []) == 2  # replaced, not appended


# -- customer_rfm against the purchase history it replaces ------------------------------------


def reference_rfm(
    events: EventFrame, as_of_us: int, opted_out: set[str]
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """RFM as compute_segments read it from :class:`PurchaseHistory` (the oracle)."""
    until = date(1970, 1, 1) + timedelta(days=math.ceil(as_of_us / MICROS_PER_DAY))
    history = PurchaseHistory.from_events(events.select(events.ts < as_of_us), until)
    users = sorted(u for u in history.customers if u not in opted_out)
    as_of_days = as_of_us / MICROS_PER_DAY
    recency = [max(as_of_days - history.customers[u].order_days[-1], 0.0) for u in users]
    frequency = [history.customers[u].n_orders for u in users]
    monetary = [history.customers[u].monetary for u in users]
    return (
        users,
        np.array(recency, dtype=np.float64),
        np.array(frequency, dtype=np.float64),
        np.array(monetary, dtype=np.float64),
    )


def assert_same_rfm(events: EventFrame, as_of_us: int, opted_out: set[str]) -> list[str]:
    fast = customer_rfm(events, as_of_us, opted_out)
    slow = reference_rfm(events, as_of_us, opted_out)
    assert fast[0] == slow[0]
    for got, want in zip(fast[1:], slow[1:], strict=True):
        assert got.dtype == np.float64 and got.tobytes() == want.tobytes()  # to the bit
    return fast[0]


# Few users, order ids and hours: orders share ids across customers, lines tie in time, a late
# line of an old order follows a newer one, returns come with and without orders, and spend
# sums (0.1 + 0.2, 1e16 + 1) depend on the order they are added in.
_line = st.tuples(
    st.sampled_from(["", None, "u0", "u1", "u2", "u3"]),
    st.sampled_from([PURCHASE, PURCHASE, PURCHASE, RETURN, "view"]),
    st.integers(-2, 30),  # days before TODAY
    st.sampled_from([0, 6, 12, 23]),
    st.sampled_from([1.0, 2.0, 3.0, 0.5, -1.0]),
    st.sampled_from([None, 0.0, -1.0, 0.1, 0.2, 0.3, 1.5, 1e16]),
    st.sampled_from([None, None, "o1", "o2", "o3"]),
)


#: (user, event type, days before TODAY, hour, quantity, price, order id)
Line = tuple[str | None, str, int, int, float, float | None, str | None]


def _lines(lines: list[Line]) -> EventFrame:
    rows = [
        # a None user (a guest, as an empty one) is what a frame may hold, not what a row types
        EventRow(
            f"e{j}",
            user,  # type: ignore[arg-type]
            None,
            "a",
            etype,
            ts(TODAY - timedelta(days=back), hour),
            qty,
            price,
            order,
            None,
        )
        for j, (user, etype, back, hour, qty, price, order) in enumerate(lines)
    ]
    return frame(rows)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_line, max_size=40),
    hours=st.sampled_from([0, 1, 12, 23]),  # as_of: TODAY's midnight or later that day
    opted_out=st.sets(st.sampled_from(["u0", "u1", "u9"])),
)
def test_customer_rfm_equals_the_purchase_history(
    lines: list[Line], hours: int, opted_out: set[str]
) -> None:
    as_of_us = ts(TODAY, 0) + hours * 3_600_000_000 - (hours > 0)
    assert_same_rfm(_lines(lines), as_of_us, opted_out)


def test_customer_rfm_on_a_busy_shop() -> None:
    rng = np.random.default_rng(3)
    rows = [
        EventRow(
            f"e{j}",
            "" if rng.random() < 0.05 else f"u{rng.integers(40)}",
            None,
            f"i{rng.integers(8)}",
            "return" if rng.random() < 0.1 else "view" if rng.random() < 0.1 else "purchase",
            ts(TODAY - timedelta(days=int(rng.integers(-3, 90))), int(rng.integers(24))),
            float(rng.integers(1, 4)),
            None if rng.random() < 0.1 else float(rng.choice([0.1, 0.2, 1.5, 2.25])),
            None if rng.random() < 0.3 else f"o{rng.integers(30)}",
            None,
        )
        for j in range(2000)
    ]
    events = frame(rows)
    users = assert_same_rfm(events, ts(TODAY, 0) + 5, {"u3"})
    assert len(users) > 30 and "u3" not in users
    # and the whole table, clusters included, as compute_segments built it from the history
    table = compute_segments(events, TODAY, [Customer("u3", personalisation_opt_out=True)])
    users, recency, frequency, monetary = reference_rfm(events, ts(TODAY, 0), {"u3"})
    assert table.user_id == users
    assert table.monetary.tobytes() == monetary.tobytes()
    assert table.cluster.tolist() == _clusters(recency, frequency, monetary, k=4, seed=0).tolist()


def test_customer_rfm_of_no_purchase() -> None:
    events = _lines([("u0", RETURN, 3, 12, 1.0, 2.0, "o1"), ("", PURCHASE, 3, 12, 1.0, 2.0, None)])
    users, recency, frequency, monetary = customer_rfm(events, ts(TODAY, 0))
    assert users == [] and len(recency) == len(frequency) == len(monetary) == 0
    assert len(compute_segments(events, TODAY)) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["", None, "a", "b", "ab", "c"]), st.integers(1, 4)),
        max_size=15,
    )
)
def test_factorize_runs_equals_the_dict_factorize(runs: list[tuple[str | None, int]]) -> None:
    # runs of repeats (most values neighbour an equal one) and none (every value a run)
    values = [v for v, n in runs for _ in range(n)]
    for picked in (values, [v for v, _ in runs]):
        column = np.empty(len(picked), dtype=object)
        column[:] = picked
        codes, names = _factorize_runs(column)
        want_codes, want_names = _factorize(picked)
        assert names == want_names and codes.tolist() == want_codes.tolist()
        assert codes.dtype == np.int64
