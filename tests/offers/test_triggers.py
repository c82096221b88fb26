from __future__ import annotations

from datetime import date, timedelta

import pytest

from recsys.offers.triggers import (
    Complements,
    PurchaseHistory,
    birthday_in_year,
    birthday_occurrence,
    cross_sell_window,
    due_items_from_history,
    gap_norms,
    winback,
)
from tests.offers.helpers import TODAY, frame, purchase

D = timedelta


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2024, 5, 15), None),  # 31 days before
        (date(2024, 5, 16), date(2024, 6, 15)),  # 30 days before
        (date(2024, 6, 15), date(2024, 6, 15)),  # the day itself
        (date(2024, 6, 16), None),  # the day after
    ],
)
def test_birthday_window_edges(today: date, expected: date | None) -> None:
    assert birthday_occurrence(date(1990, 6, 15), today, 30) == expected


def test_leap_day_birthday() -> None:
    leap = date(2000, 2, 29)
    assert birthday_in_year(leap, 2024) == date(2024, 2, 29)
    assert birthday_in_year(leap, 2023) == date(2023, 2, 28)
    assert birthday_occurrence(leap, date(2023, 2, 28), 30) == date(2023, 2, 28)
    assert birthday_occurrence(leap, date(2023, 3, 1), 30) is None
    assert birthday_occurrence(leap, date(2024, 2, 29), 30) == date(2024, 2, 29)
    assert birthday_occurrence(leap, date(2024, 2, 28), 0) is None
    assert birthday_occurrence(leap, date(2023, 1, 29), 30) == date(2023, 2, 28)
    assert birthday_occurrence(leap, date(2023, 1, 28), 30) is None


def test_birthday_window_crosses_new_year() -> None:
    assert birthday_occurrence(date(1980, 1, 5), date(2023, 12, 20), 30) == date(2024, 1, 5)


def _every(user: str, item: str, start: date, gap: int, times: int) -> list:
    return [purchase(user, item, start + D(days=gap * k)) for k in range(times)]


def test_replenishment_due_and_not_due() -> None:
    # bought every 10 days, last 8 days ago: ratio 0.8 -> due; 7 days ago: 0.7 -> not due
    due_rows = _every("u", "coffee", TODAY - D(days=28), 10, 3)
    hist = PurchaseHistory.from_events(frame(due_rows), TODAY)
    due = due_items_from_history(hist, "u", TODAY)
    assert [d.item_id for d in due] == ["coffee"]
    assert due[0].interval_days == 10 and due[0].due_ratio == pytest.approx(0.8)
    assert due_items_from_history(hist, "u", TODAY - D(days=1)) == []
    # 20 days or more since the last purchase (ratio 2) is a lapse, not a replenishment
    assert due_items_from_history(hist, "u", TODAY + D(days=12)) == []
    assert [d.item_id for d in due_items_from_history(hist, "u", TODAY + D(days=11))] == ["coffee"]


def test_replenishment_uses_item_norm_below_min_purchases() -> None:
    rows = _every("a", "tea", TODAY - D(days=100), 10, 5)  # a's own interval: 10 days
    rows += [purchase("b", "tea", TODAY - D(days=9))]  # b bought once: item norm applies
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    (b,) = due_items_from_history(hist, "b", TODAY)
    assert b.interval_days == 10 and b.days_since_last == 9
    assert due_items_from_history(hist, "b", TODAY - D(days=2)) == []


def test_winback_with_one_purchase_uses_global_norm() -> None:
    rows = _every("regular", "x", TODAY - D(days=40), 10, 4)  # gap 10, last 10 days ago
    rows += [purchase("once", "y", TODAY - D(days=21))]
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    norms, global_norm = gap_norms(hist, {})
    assert global_norm == 10
    lapse = winback(hist, "once", TODAY, segment=None, segment_norms=norms, global_norm=global_norm)
    assert lapse is not None and lapse.basis == "global" and lapse.days_since_last == 21
    assert (
        winback(hist, "once", TODAY - D(days=1), segment=None, segment_norms=norms, global_norm=10)
        is None
    )  # 20 days is not more than 2 × 10
    assert winback(hist, "regular", TODAY, segment=None, segment_norms={}, global_norm=10) is None


def test_winback_prefers_own_then_segment_norm() -> None:
    rows = _every("u", "x", TODAY - D(days=70), 5, 3)  # own gap 5, last order 60 days ago
    rows += _every("v", "x", TODAY - D(days=20), 10, 2)  # two orders: not enough of its own
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    own = winback(hist, "u", TODAY, segment="s", segment_norms={"s": 100}, global_norm=100)
    assert own is not None and own.basis == "own" and own.usual_gap == 5
    seg = winback(hist, "v", TODAY, segment="s", segment_norms={"s": 4}, global_norm=100)
    assert seg is not None and seg.basis == "segment"
    assert winback(hist, "v", TODAY, segment="t", segment_norms={"s": 4}, global_norm=100) is None


@pytest.mark.parametrize(("days_after", "fires"), [(2, False), (3, True), (14, True), (15, False)])
def test_cross_sell_window_edges(days_after: int, fires: bool) -> None:
    rows = [
        purchase("u", "pan", TODAY - D(days=days_after)),
        purchase("u", "lid", TODAY - D(days=days_after)),
    ]
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    window = cross_sell_window(hist, "u", TODAY)
    assert (window == ("lid", "pan")) if fires else window is None


def test_complements_exclude_the_basket() -> None:
    rows = []
    for n in range(3):
        day = TODAY - D(days=30 + n)
        rows += [purchase(f"c{n}", "pan", day), purchase(f"c{n}", "lid", day)]
        rows += [purchase(f"c{n}", "oil", day)]
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    comp = Complements.from_history(hist)
    got = comp.for_basket(["pan", "lid"])
    assert [c for c, _, _ in got] == ["oil"]
    assert got[0][1] in {"pan", "lid"}


def test_history_ignores_events_from_today_on() -> None:
    rows = [purchase("u", "a", TODAY - D(days=1)), purchase("u", "b", TODAY)]
    hist = PurchaseHistory.from_events(frame(rows), TODAY)
    assert hist.customers["u"].order_items == [("a",)]


def test_complements_asked_of_a_model_item_by_item_are_its_neighbours() -> None:
    """Law: looking an item up gives the model's ``k`` best neighbours of it, by id, as one
    call for every item at once gives them; items without any, or unknown, are absent."""
    import numpy as np

    from recsys.models.cooccurrence import CooccurrenceModel
    from tests.models.conftest import make_training_data, tiny_rows

    data = make_training_data(tiny_rows())
    model = CooccurrenceModel().fit(data)
    ids = data.items.ids
    comp = Complements.from_model(model, data.items, k=3)
    assert comp.from_a_model
    idx, scores = model.similar_items(np.arange(len(ids), dtype=np.intp), 3)
    expected = {
        ids[r]: [(ids[j], float(s)) for j, s in zip(row, srow, strict=True) if j >= 0]
        for r, (row, srow) in enumerate(zip(idx.tolist(), scores.tolist(), strict=True))
    }
    expected = {k: v for k, v in expected.items() if v}
    assert expected, "the tiny shop has bought-together pairs"
    assert dict(comp.neighbours) == expected
    assert comp.neighbours.get("no-such-item") is None
    basket = sorted(expected)[:2]
    assert comp.for_basket(basket) == Complements(expected).for_basket(basket)
