"""Splits: hand-built cases and the laws every split obeys."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import MICROS_PER_DAY, EventFrame, EventRow, to_micros
from recsys.errors import DataError
from recsys.evaluation.splits import (
    default_cut,
    last_basket_split,
    random_split,
    time_split,
)

DAY = MICROS_PER_DAY


def ev(i: int, user: str, item: str, day: float, kind: str = "purchase", order: str | None = None):
    return EventRow(f"e{i}", user, None, item, kind, int(day * DAY), 1.0, None, order, None)


def frame(rows: list[EventRow]) -> EventFrame:
    return EventFrame.from_rows(rows)


@st.composite
def event_logs(draw: st.DrawFn) -> EventFrame:
    n = draw(st.integers(1, 40))
    rows = []
    for i in range(n):
        user = draw(st.sampled_from(["", "a", "b", "c", "d"]))
        kind = draw(st.sampled_from(["purchase", "purchase", "view", "cart"]))
        day = draw(st.integers(0, 20))
        order = f"o{user}{day}" if kind == "purchase" and user else None
        rows.append(ev(i, user, draw(st.sampled_from("xyzw")), day, kind, order))
    rows.sort(key=lambda r: r.ts)
    return frame(rows)


def ids(events: EventFrame) -> set[str]:
    return set(events.event_id.tolist())


# -- time split ----------------------------------------------------------------------------------


def test_time_split_hand_built() -> None:
    events = frame(
        [
            ev(0, "a", "x", 1),
            ev(1, "a", "y", 5, "view"),
            ev(2, "a", "y", 10),  # exactly at the cut: test
            ev(3, "b", "z", 12),
            ev(4, "a", "x", 11, "view"),  # a view after the cut: neither
            ev(5, "", "x", 12),  # a guest: never a test event
            ev(6, "a", "z", 40),  # beyond the horizon
        ]
    )
    split = time_split(events, 10 * DAY, horizon=20 * DAY)
    assert ids(split.train) == {"e0", "e1"}
    assert ids(split.test) == {"e2", "e3"}
    assert split.cut == 10 * DAY
    with_history = time_split(events, 10 * DAY, require_history=True)
    assert ids(with_history.test) == {"e2", "e6"}
    with pytest.raises(DataError, match="horizon"):
        time_split(events, 10 * DAY, horizon=0)


def test_default_cut_is_midnight_thirty_days_before_the_newest_event() -> None:
    newest = to_micros(datetime(2011, 12, 9, 12, 50, tzinfo=UTC))
    events = frame([ev(0, "a", "x", 0), ev(1, "a", "x", newest / DAY)])
    assert default_cut(events) == to_micros(datetime(2011, 11, 9, tzinfo=UTC))
    with pytest.raises(DataError, match="no events"):
        default_cut(EventFrame.empty())


@settings(max_examples=100, deadline=None)
@given(event_logs(), st.integers(0, 21), st.booleans())
def test_time_split_laws(events: EventFrame, cut_day: int, require_history: bool) -> None:
    cut = cut_day * DAY
    split = time_split(events, cut, require_history=require_history)
    assert not ids(split.train) & ids(split.test)
    assert np.all(split.train.ts < cut)
    assert np.all(split.test.ts >= cut)
    assert set(split.test.event_type.tolist()) <= {"purchase"}
    if require_history:
        assert set(split.test.user_id.tolist()) <= set(split.train.user_id.tolist())


# -- last basket ---------------------------------------------------------------------------------


def test_last_basket_holds_out_each_customers_last_order() -> None:
    events = frame(
        [
            ev(0, "a", "x", 1, order="o1"),
            ev(1, "a", "y", 2, order="o2"),
            ev(2, "a", "z", 2, order="o2"),
            ev(3, "a", "w", 2.5, "view"),  # after the last order started: dropped
            ev(4, "b", "x", 3, order="o3"),  # b's only order: kept for history
            ev(5, "c", "x", 1, "view"),
            ev(6, "c", "y", 4, order="o4"),
        ]
    )
    split = last_basket_split(events)
    assert ids(split.test) == {"e1", "e2", "e6"}
    assert ids(split.train) == {"e0", "e4", "e5"}
    no_requirement = last_basket_split(events, require_history=False)
    assert ids(no_requirement.test) == {"e1", "e2", "e4", "e6"}


@settings(max_examples=100, deadline=None)
@given(event_logs(), st.booleans())
def test_last_basket_laws(events: EventFrame, require_history: bool) -> None:
    split = last_basket_split(events, require_history=require_history)
    assert not ids(split.train) & ids(split.test)
    # one order per customer, and nothing of theirs in training from that order on
    for user in set(split.test.user_id.tolist()):
        mine = split.test.user_id == user
        assert len(set(split.test.order_id[mine].tolist())) == 1
        first = split.test.ts[mine].min()
        assert np.all(split.train.ts[split.train.user_id == user] < first)
        if require_history:
            assert user in set(split.train.user_id.tolist())
    assert last_basket_split(events, require_history=require_history).test.event_id.tolist() == (
        split.test.event_id.tolist()
    )


# -- random --------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(event_logs(), st.integers(0, 2**32 - 1), st.floats(0.05, 0.95), st.booleans())
def test_random_split_laws(
    events: EventFrame, seed: int, fraction: float, require_history: bool
) -> None:
    split = random_split(events, fraction=fraction, seed=seed, require_history=require_history)
    assert not ids(split.train) & ids(split.test)
    assert ids(split.train) | ids(split.test) == ids(events)
    assert set(split.test.event_type.tolist()) <= {"purchase"}
    assert "" not in set(split.test.user_id.tolist())
    if require_history:
        assert set(split.test.user_id.tolist()) <= set(split.train.user_id.tolist())
    again = random_split(events, fraction=fraction, seed=seed, require_history=require_history)
    assert again.test.event_id.tolist() == split.test.event_id.tolist()


def test_random_split_fraction_and_seed() -> None:
    rows = [ev(i, f"u{i % 50}", f"i{i % 7}", i / 100) for i in range(4000)]
    events = frame(rows)
    a = random_split(events, fraction=0.25, seed=1, require_history=False)
    b = random_split(events, fraction=0.25, seed=2, require_history=False)
    assert abs(len(a.test) / len(events) - 0.25) < 0.03
    assert a.test.event_id.tolist() != b.test.event_id.tolist()
    with pytest.raises(DataError, match="fraction"):
        random_split(events, fraction=1.0)
