"""``EventFrame.from_rows`` and ``rows``: every value survives the trip, whatever mix of
missing values and types the store hands back (SQLite's tuples or ``EventRow``s)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from recsys.data.schema import EVENT_COLUMNS, EventFrame, EventRow

_text = st.text(min_size=1, max_size=8)
_row = st.builds(
    EventRow,
    _text,
    st.none() | _text,
    st.none() | _text,
    _text,
    st.sampled_from(["view", "purchase", "add_to_cart", "return"]),
    st.integers(-(2**62), 2**62),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.none() | st.floats(0, 1e6, allow_nan=False),
    st.none() | _text,
    st.none() | _text,
)


@given(rows=st.lists(_row, max_size=30), as_tuples=st.booleans())
def test_rows_round_trip_through_a_frame(rows: list[EventRow], as_tuples: bool) -> None:
    given_rows = [tuple(r) for r in rows] if as_tuples else rows
    frame = EventFrame.from_rows(given_rows)
    assert len(frame) == len(rows)
    assert frame.ts.dtype == np.int64 and frame.price.dtype == np.float64
    for name in EVENT_COLUMNS:
        column = getattr(frame, name)
        assert column.flags.c_contiguous and column.ndim == 1
    # a missing price is NaN in the frame and None again in the rows
    assert np.array_equal(
        np.isnan(frame.price), np.array([r.price is None for r in rows], dtype=bool)
    )
    assert frame.rows() == rows
