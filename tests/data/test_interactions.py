"""From events to training data: weights, returns, decay, filters, baskets, sessions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.config import validate
from recsys.data.interactions import (
    InteractionConfig,
    _csr,
    _factorize,
    _factorize_objects,
    build_training_data,
    history_matrix,
    history_row,
)
from recsys.data.schema import MICROS_PER_DAY, CatalogItem, EventFrame
from recsys.data.vocab import Vocabulary
from recsys.errors import ConfigError

DAY = MICROS_PER_DAY
T0 = 1_700_000_000 * 1_000_000


def ev(
    user: str,
    item: str,
    kind: str,
    day: float = 0.0,
    *,
    qty: float = 1.0,
    order: str | None = None,
    session: str | None = None,
    price: float | None = None,
) -> tuple[object, ...]:
    ev.n += 1  # type: ignore[attr-defined]
    return (f"e{ev.n}", user, session, item, kind, T0 + round(day * DAY), qty, price, order, None)  # type: ignore[attr-defined]


ev.n = 0  # type: ignore[attr-defined]


def frame(*rows: tuple[object, ...]) -> EventFrame:
    return EventFrame.from_rows(list(rows))


def weight(td: object, user: str, item: str) -> float:
    m = td.interactions  # type: ignore[attr-defined]
    return float(m[td.users.index(user), td.items.index(item)])  # type: ignore[attr-defined]


def cfg(**kw: object) -> InteractionConfig:
    return InteractionConfig(**kw)  # type: ignore[arg-type]


def check_csr(m: sp.csr_matrix) -> None:
    assert m.dtype == np.float32
    assert m.has_sorted_indices
    assert not (m.data == 0).any()


def test_weights_per_event_type_and_unknown_types_weigh_zero() -> None:
    events = frame(
        ev("u", "a", "view"),
        ev("u", "b", "cart"),
        ev("u", "c", "purchase"),
        ev("u", "d", "wishlist"),
        ev("u", "a", "view", 0.5),
    )
    td = build_training_data(events, cfg(quantity="ignore"))
    assert weight(td, "u", "a") == 2.0
    assert weight(td, "u", "b") == 3.0
    assert weight(td, "u", "c") == 10.0
    assert weight(td, "u", "d") == 0.0
    assert "d" in td.items  # an item with events stays in the vocabulary
    td2 = build_training_data(events, cfg(weights={"wishlist": 2.0}))
    assert weight(td2, "u", "d") == 2.0
    assert weight(td2, "u", "a") == 0.0
    check_csr(td.interactions)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("ignore", 10.0), ("log", 10.0 * (1 + math.log(4))), ("linear", 40.0)],
)
def test_quantity_modes(mode: str, expected: float) -> None:
    td = build_training_data(frame(ev("u", "a", "purchase", qty=4)), cfg(quantity=mode))
    assert weight(td, "u", "a") == pytest.approx(expected, rel=1e-6)


def test_quantity_only_scales_purchases_and_log_stays_positive_below_one() -> None:
    td = build_training_data(
        frame(ev("u", "a", "cart", qty=5), ev("u", "b", "purchase", qty=0.5)), cfg()
    )
    assert weight(td, "u", "a") == 3.0
    assert weight(td, "u", "b") == pytest.approx(5.0)


def test_full_return_cancels_the_purchase_weight_and_count() -> None:
    events = frame(
        ev("u", "a", "view"),
        ev("u", "a", "purchase", 1, qty=2, order="o1"),
        ev("u", "a", "return", 3, qty=2, order="c1"),
        ev("u", "b", "purchase", 1, qty=1, order="o1"),
    )
    td = build_training_data(events, cfg())
    assert weight(td, "u", "a") == 1.0  # only the view is left
    pc = td.purchase_counts
    assert pc[0, td.items.index("a")] == 0
    assert pc[0, td.items.index("b")] == 1
    check_csr(pc)


def test_partial_return_leaves_the_remaining_quantity() -> None:
    events = frame(
        ev("u", "a", "purchase", 0, qty=4, order="o1"),
        ev("u", "a", "return", 2, qty=1, order="c1"),
    )
    td = build_training_data(events, cfg(quantity="linear"))
    assert weight(td, "u", "a") == pytest.approx(30.0)
    assert td.purchase_counts[0, 0] == 1


def test_returns_cancel_newest_purchase_first_and_orders_are_counted_net() -> None:
    events = frame(
        ev("u", "a", "purchase", 0, qty=1, order="o1"),
        ev("u", "a", "purchase", 5, qty=1, order="o2"),
        ev("u", "a", "purchase", 9, qty=1, order="o3"),
        ev("u", "a", "return", 9.5, qty=1, order="c3"),  # another invoice, as in UCI data
    )
    td = build_training_data(events, cfg(half_life_days=10.0, quantity="ignore"))
    as_of = td.as_of
    expected = sum(10 * 0.5 ** ((as_of - T0 - d * DAY) / (10 * DAY)) for d in (0, 5))
    assert weight(td, "u", "a") == pytest.approx(expected, rel=1e-6)
    assert td.purchase_counts[0, 0] == 2
    off = build_training_data(events, cfg(returns_cancel=False, quantity="ignore"))
    assert weight(off, "u", "a") == 30.0
    assert off.purchase_counts[0, 0] == 3


def test_return_alone_carries_no_weight() -> None:
    td = build_training_data(
        frame(ev("u", "a", "return", qty=1), ev("v", "a", "view")),
        cfg(weights={"view": 1.0, "return": 5.0}),
    )
    assert "u" not in td.users
    assert td.users.ids == ["v"]


def test_an_event_one_half_life_old_weighs_exactly_half() -> None:
    events = frame(ev("u", "a", "view", 0), ev("u", "b", "view", 7))
    td = build_training_data(events, cfg(half_life_days=7.0))
    assert weight(td, "u", "a") == 0.5
    assert weight(td, "u", "b") == 1.0


def test_window_keeps_only_recent_events() -> None:
    events = frame(ev("u", "a", "view", 0), ev("u", "b", "view", 9), ev("u", "c", "view", 10))
    td = build_training_data(events, cfg(window_days=1.0))
    assert weight(td, "u", "b") == 1.0
    assert weight(td, "u", "c") == 1.0
    assert "a" not in td.items
    assert len(td.events) == 2


def test_as_of_drops_events_at_and_after_it() -> None:
    events = frame(ev("u", "a", "view", 0), ev("u", "b", "view", 1), ev("u", "c", "view", 2))
    td = build_training_data(events, cfg(), as_of=T0 + DAY)
    assert td.as_of == T0 + DAY
    assert td.items.ids == ["a"]
    assert len(td.events) == 1
    default = build_training_data(events, cfg())
    assert default.as_of == T0 + 2 * DAY  # the newest event, kept
    assert default.items.ids == ["a", "b", "c"]


def test_min_filters_are_iterated_to_a_fixed_point() -> None:
    # x has 2 users; y has 1. Dropping y takes v below 2 events, which takes x below 2 users.
    events = frame(
        ev("u", "x", "view"),
        ev("u", "x", "view", 0.1),
        ev("v", "x", "view"),
        ev("v", "y", "view"),
    )
    td = build_training_data(events, cfg(min_user_events=2, min_item_users=2))
    assert td.users.ids == []
    assert td.items.ids == []
    once = build_training_data(events, cfg(min_user_events=2))
    assert once.users.ids == ["u", "v"]
    assert (once.event_user[np.asarray(once.events.user_id) == "v"] == 1).all()


def test_filtered_users_get_minus_one_and_catalog_items_stay() -> None:
    events = frame(ev("u", "a", "view"), ev("u", "b", "view"), ev("v", "a", "view"))
    catalog = [CatalogItem("b", category="X > Y", price=2.0), CatalogItem("z", price=9.0)]
    td = build_training_data(events, cfg(min_user_events=2, min_item_users=2), catalog=catalog)
    assert td.users.ids == []  # u drops once b (1 user) drops; then a has 0 users...
    assert td.items.ids == ["b", "z"]  # ...a is dropped, catalogue items are never dropped
    assert (td.event_user == -1).all()
    assert td.interactions.shape == (0, 2)


def test_guests_feed_orders_and_sessions_but_are_not_users() -> None:
    events = frame(
        ev("", "a", "view", session="s1"),
        ev("", "b", "cart", session="s1"),
        ev("", "a", "purchase", 0.1, order="g1", session="s1"),
        ev("", "b", "purchase", 0.1, order="g1", session="s1"),
        ev("u", "a", "view", session="s2"),
        ev("u", "c", "view", session="s2"),
        ev("u", "c", "purchase", 1, order="o1", session="s2"),
    )
    td = build_training_data(events, cfg())
    assert td.users.ids == ["u"]
    assert td.items.ids == ["a", "b", "c"]
    guest = np.asarray(td.events.user_id) == ""
    assert (td.event_user[guest] == -1).all()
    assert (td.event_item >= 0).all()
    assert td.orders.shape == (2, 3)
    assert sorted(map(tuple, td.orders.toarray().tolist())) == [(0, 0, 1), (1, 1, 0)]
    assert td.sessions.toarray().tolist() == [[1, 1, 0], [1, 0, 1]]
    for m in (td.orders, td.sessions):
        check_csr(m)


def test_a_sessions_newest_item_is_the_one_first_viewed_last() -> None:
    events = frame(
        ev("", "a", "view", 0.0, session="s1"),
        ev("", "c", "view", 0.1, session="s1"),
        ev("", "b", "cart", 0.2, session="s1"),
        ev("", "a", "view", 0.3, session="s1"),  # a again: still first viewed at 0.0
        ev("", "c", "view", 1.0, session="s2"),
        ev("", "a", "view", 1.0, session="s2"),  # the same instant: the higher index
        ev("", "b", "purchase", 1.1, order="o", session="s2"),  # not browsing
    )
    td = build_training_data(events, cfg())
    newest = [td.items.ids[i] for i in td.session_newest]
    assert newest == ["b", "c"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("pqr"), st.sampled_from("abcde"), st.integers(0, 3)),
        min_size=1,
        max_size=20,
    )
)
def test_a_sessions_newest_item_is_its_latest_first_view(
    views: list[tuple[str, str, int]],
) -> None:
    """Per session: the item whose first view is the latest, ties by the higher index."""
    events = frame(*(ev("", item, "view", day, session=s) for s, item, day in views))
    td = build_training_data(events, cfg())
    sessions = sorted({s for s, _, _ in views})
    assert len(td.session_newest) == td.sessions.shape[0] == len(sessions)
    for row, session in enumerate(sessions):
        first: dict[str, int] = {}
        for s, item, day in views:
            if s == session:
                first[item] = min(first.get(item, day), day)
        want = max(first, key=lambda i: (first[i], td.items.index(i)))
        assert td.items.ids[td.session_newest[row]] == want
        assert td.sessions[row, td.session_newest[row]] == 1


def test_no_views_means_no_session_rows_and_orderless_purchases_group_by_instant() -> None:
    events = frame(
        ev("u", "a", "purchase", 0),
        ev("u", "b", "purchase", 0),
        ev("u", "a", "purchase", 1),
    )
    td = build_training_data(events, cfg())
    assert td.sessions.shape == (0, 2) and td.session_newest.shape == (0,)
    assert td.orders.shape == (2, 2)
    assert td.purchase_counts[0, td.items.index("a")] == 2


def test_purchase_counts_count_distinct_orders() -> None:
    events = frame(
        ev("u", "a", "purchase", 0, order="o1"),
        ev("u", "a", "purchase", 0, order="o1"),  # the same line twice in one order
        ev("u", "a", "purchase", 3, order="o2"),
    )
    td = build_training_data(events, cfg())
    assert td.purchase_counts.toarray().tolist() == [[2.0]]


def test_item_category_and_price_with_median_fallback() -> None:
    events = frame(
        ev("u", "a", "view", price=1.0),
        ev("u", "a", "view", price=3.0),
        ev("u", "a", "view", price=10.0),
        ev("u", "a", "view", price=2.0),
        ev("u", "b", "view"),
        ev("u", "c", "view", price=5.0),
    )
    catalog = [CatalogItem("c", category="A > B", price=4.0)]
    td = build_training_data(events, cfg(), catalog=catalog)
    assert td.item_category == ["", "", "A > B"]
    assert td.item_price[0] == 2.5
    assert np.isnan(td.item_price[1])
    assert td.item_price[2] == 4.0


def test_vocabularies_are_sorted_and_independent_of_event_order(rng: np.random.Generator) -> None:
    rows = [
        ev(f"u{k % 7}", f"i{k % 5}", ["view", "cart", "purchase"][k % 3], k / 3, order=f"o{k}")
        for k in range(40)
    ]
    a = build_training_data(frame(*rows), cfg(half_life_days=3.0))
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    b = build_training_data(frame(*shuffled), cfg(half_life_days=3.0))
    assert a.users.ids == sorted(a.users.ids)
    assert a.items.ids == sorted(a.items.ids)
    assert a.users == b.users and a.items == b.items
    assert (a.interactions != b.interactions).nnz == 0
    assert np.array_equal(a.events.ts, np.sort(a.events.ts))


def test_negative_weight_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="weights"):
        validate(InteractionConfig, {"weights": {"view": -1}}, "train.toml")


def test_history_matrix_keeps_row_order_and_ignores_unknowns() -> None:
    known = [ev("u", "a", "view"), ev("v", "b", "cart")]
    td = build_training_data(frame(*known), cfg())
    events = frame(*known, ev("u", "zz", "view"))  # zz is not in the model's vocabulary
    m = history_matrix(events, ["v", "new", "u", "v"], td.items, cfg(), as_of=td.as_of + 1)
    assert m.shape == (4, 2)
    assert m.toarray().tolist() == [[0, 3], [0, 0], [1, 0], [0, 3]]
    check_csr(m)


_USERS = st.sampled_from(["", "u1", "u2", "u3"])
_ITEMS = st.sampled_from(["a", "b", "c", "d"])
_KINDS = st.sampled_from(["view", "cart", "purchase", "purchase", "return", "wishlist"])
_EVENT = st.tuples(
    _USERS,
    _ITEMS,
    _KINDS,
    st.integers(0, 20 * 24),  # hours
    st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.25]),
    st.sampled_from([None, "o1", "o2", "o3"]),
)
_CONFIG = st.builds(
    InteractionConfig,
    quantity=st.sampled_from(["ignore", "log", "linear"]),
    returns_cancel=st.booleans(),
    half_life_days=st.sampled_from([None, 1.0, 3.5]),
    window_days=st.sampled_from([None, 5.0, 30.0]),
    min_user_events=st.integers(1, 3),
)


def _rows(raw: list[tuple[str, str, str, int, float, str | None]]) -> list[tuple[object, ...]]:
    """Event rows from drawn (user, item, type, hour, quantity, order) tuples."""
    return [
        (f"e{k}", u, None, i, t, T0 + h * 3_600_000_000, q, None, o, None)
        for k, (u, i, t, h, q, o) in enumerate(raw)
    ]


@settings(max_examples=80, deadline=None)
@given(st.lists(_EVENT, min_size=1, max_size=30), _CONFIG, st.integers(0, 21 * 24))
def test_history_matrix_equals_the_training_rows(
    raw: list[tuple[str, str, str, int, float, str | None]],
    config: InteractionConfig,
    as_of_hours: int,
) -> None:
    rows = _rows(raw)
    events = frame(*rows)
    as_of = T0 + as_of_hours * 3_600_000_000
    td = build_training_data(events, config, as_of=as_of)
    users = td.users.ids
    live = history_matrix(
        events.select(np.arange(len(events))[::-1]), users, td.items, config, as_of=as_of
    )
    assert live.shape == td.interactions.shape
    assert (live != td.interactions).nnz == 0
    assert np.array_equal(live.toarray(), td.interactions.toarray())


@settings(max_examples=80, deadline=None)
@given(st.lists(_EVENT, min_size=0, max_size=30), _CONFIG, st.integers(0, 21 * 24))
def test_history_row_is_the_one_customer_matrix_row(
    raw: list[tuple[str, str, str, int, float, str | None]],
    config: InteractionConfig,
    as_of_hours: int,
) -> None:
    """history_row takes every event as the one customer's: its arrays are the nonzero
    entries of history_matrix's row for the same events under one user id, bit for bit."""
    rows = _rows(raw)
    events = frame(*rows) if rows else EventFrame.empty()
    mine = frame(*[(r[0], "me", *r[2:]) for r in rows]) if rows else EventFrame.empty()
    items = Vocabulary(["a", "b", "c"])  # "d" is not in the model: ignored
    as_of = T0 + as_of_hours * 3_600_000_000
    cols, weights = history_row(events, items, config, as_of=as_of)
    want = history_matrix(mine, ["me"], items, config, as_of=as_of)
    want.eliminate_zeros()
    assert weights.dtype == np.float32
    assert np.array_equal(cols, want.indices)
    assert np.array_equal(weights.view(np.int32), want.data.astype(np.float32).view(np.int32))
    assert bool((weights != 0).all())


def test_history_row_counts_only_the_window_before_as_of() -> None:
    """An event older than window_days, or at as_of or later, adds nothing to the live row
    (an item the vocabulary holds, so only the dates can drop it)."""
    as_of = T0 + 10 * DAY
    events = frame(
        ev("u", "a", "view", 2.0),  # outside the 5-day window
        ev("u", "b", "view", 8.0),
        ev("u", "c", "view", 10.0),  # not before as_of
    )
    cols, weights = history_row(
        events, Vocabulary(["a", "b", "c"]), cfg(window_days=5.0), as_of=as_of
    )
    assert cols.tolist() == [1]
    assert weights.tolist() == [1.0]
    cols, _ = history_row(events, Vocabulary(["a", "b", "c"]), cfg(), as_of=as_of)
    assert cols.tolist() == [0, 1]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 300),
    n_groups=st.integers(1, 20),
    n_keys=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_distinct_counts_are_the_unique_records_per_group(
    n: int, n_groups: int, n_keys: int, seed: int
) -> None:
    """A pair's order count is its number of distinct order keys (order codes, and the shifted
    negative timestamps of order-less purchases): what counting the unique (pair, key)
    records gives."""
    from recsys.data.interactions import _distinct_counts

    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_groups, size=n).astype(np.intp)
    key = rng.integers(0, n_keys, size=n).astype(np.int64)
    key[rng.random(n) < 0.3] = -2 - rng.integers(0, 10**15, size=1)  # timestamps
    if n:
        expected = np.bincount(np.unique(np.stack([group, key]), axis=1)[0], minlength=n_groups)
    else:
        expected = np.zeros(n_groups, dtype=np.int64)
    got = _distinct_counts(group, key, n_groups)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=6),
            st.sampled_from(["", "a", "B", "é", "\u00ff", "\u0100", "\U0001f600", "\uffff"]),
        ),
        max_size=60,
    )
)
def test_factorize_numbers_distinct_strings_in_python_order(values: list[str | None]) -> None:
    """The law of the ids' codes: the distinct strings in Python's order (code points, which
    Arrow's sort of UTF-8 bytes must match, astral characters included), each value's
    position among them, -1 for None; and the dict path gives the same."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    distinct, codes = _factorize(column)
    expected = sorted({v for v in values if v is not None})
    assert distinct == expected
    assert codes.tolist() == [-1 if v is None else expected.index(v) for v in values]
    again, again_codes = _factorize_objects(column)
    assert again == distinct and again_codes.tolist() == codes.tolist()


def test_factorize_takes_values_arrow_cannot_encode() -> None:
    """Lone surrogates and non-strings are numbered by the dict path, in Python's order."""
    column = np.array(["b", "\ud800", None, "a", "\ud800"], dtype=object)
    distinct, codes = _factorize(column)
    assert distinct == ["a", "b", "\ud800"] and codes.tolist() == [1, 2, -1, 0, 2]
    distinct, codes = _factorize(np.array([3, None, 1, 3], dtype=object))
    assert distinct == [1, 3] and codes.tolist() == [1, -1, 0, 1]


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=40))
def test_arrow_and_dicts_number_ids_alike(values: list[str | None]) -> None:
    """Small inputs are numbered with dicts, large ones with Arrow: both give the distinct
    values in string order and the same codes (None: -1), lone surrogates included."""
    from recsys.data import interactions

    column = np.empty(len(values), dtype=object)
    column[:] = values
    by_dicts = interactions._factorize_objects(column)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(interactions, "FACTORIZE_ARROW_MIN", 0)
        by_arrow = interactions._factorize(column)
    assert by_arrow[0] == by_dicts[0] == sorted({v for v in values if v is not None})
    np.testing.assert_array_equal(by_arrow[1], by_dicts[1])
    assert interactions._factorize(column)[0] == by_dicts[0]  # below the threshold: dicts


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 6),
    st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 5),
            st.sampled_from([0.0, 1e-50, 0.5, 1.0, 2.5, -1.0]),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_csr_equals_scipys_coo_construction(
    n: int, m: int, cells: list[tuple[int, int, float]], one_per_cell: bool
) -> None:
    # one entry per cell in row-major order (what _weigh gives) takes the direct path; any
    # other order, or repeated cells, scipy's: both must give the same matrix, to the bit
    cells = [(r % n, c % m, v) for r, c, v in cells]
    if one_per_cell:
        cells = sorted({(r, c): (r, c, v) for r, c, v in cells}.values())
    rows = np.array([c[0] for c in cells], dtype=np.intp)
    cols = np.array([c[1] for c in cells], dtype=np.intp)
    values = np.array([c[2] for c in cells], dtype=np.float64)
    want = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=(n, m), dtype=np.float32)
    want.sum_duplicates()
    want.sort_indices()
    want.eliminate_zeros()
    got = _csr(rows, cols, values, (n, m))
    assert got.dtype == np.float32 and got.has_sorted_indices
    assert np.array_equal(got.indptr, want.indptr) and got.indptr.dtype == want.indptr.dtype
    assert np.array_equal(got.indices, want.indices) and got.indices.dtype == want.indices.dtype
    assert np.array_equal(got.data, want.data)
