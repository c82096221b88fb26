from __future__ import annotations

from datetime import timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.schema import Customer
from recsys.offers.segments import SEGMENT_LABELS, compute_segments, quintile_scores
from recsys.offers.store import read_segments, store_segments
from recsys.store.base import EventStore
from tests.offers.helpers import TODAY, frame, purchase

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
