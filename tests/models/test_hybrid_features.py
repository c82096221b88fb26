"""The hybrid's repeat features: the time-decayed personal item frequency (TIFU-KNN's repeat
vector) and the rank it gives each of a customer's items, stated as laws and known answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models.features import (
    _rank_within_rows,
    _stack_float32,
    _string_codes,
    decayed_order_share,
)


def _share(
    triples: list[tuple[int, int, int, float]], decay: float, n_users: int
) -> dict[tuple[int, int], float]:
    """decayed_order_share of (user, item, order, day) triples, by (user, item)."""
    user = np.array([t[0] for t in triples], dtype=np.intp)
    item = np.array([t[1] for t in triples], dtype=np.intp)
    order = np.array([t[2] for t in triples], dtype=np.intp)
    day = np.array([t[3] for t in triples], dtype=np.float64)
    pairs = sorted({(int(u), int(i)) for u, i in zip(user, item, strict=True)})
    pos = np.array([pairs.index((int(u), int(i))) for u, i in zip(user, item, strict=True)])
    values = decayed_order_share(user, order, day, pos, len(pairs), n_users, decay)
    return dict(zip(pairs, values.tolist(), strict=True))


def test_known_answer_forgets_what_the_customer_stopped_buying() -> None:
    # user 0: orders 10 (day 1: items 0, 1), 11 (day 2: item 0), 12 (day 3: item 2)
    triples = [(0, 0, 10, 1.0), (0, 1, 10, 1.0), (0, 0, 11, 2.0), (0, 2, 12, 3.0)]
    got = _share(triples, decay=0.5, n_users=1)
    total = 1.0 + 0.5 + 0.25  # the last order weighs 1, the one before 0.5, then 0.25
    assert np.isclose(got[(0, 0)], (0.5 + 0.25) / total)
    assert np.isclose(got[(0, 1)], 0.25 / total)
    assert np.isclose(got[(0, 2)], 1.0 / total)
    # bought twice but not lately: below the item of the last order alone
    assert got[(0, 2)] > got[(0, 0)] > got[(0, 1)]


def test_orders_are_ranked_by_day_not_by_code() -> None:
    # order 5 is the newer one although its code is lower
    got = _share([(0, 0, 9, 1.0), (0, 1, 5, 8.0)], decay=0.5, n_users=1)
    assert got[(0, 1)] > got[(0, 0)]


triples_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # user
        st.integers(0, 5),  # item
        st.integers(0, 7),  # order within the user
        st.integers(0, 30),  # day
    ),
    min_size=1,
    max_size=40,
).map(
    # one order belongs to one user on one day; a (user, item, order) triple is distinct
    lambda rows: list({(u, i, u * 100 + o): float(d + 40 * o) for u, i, o, d in rows}.items())
)


@settings(max_examples=60, deadline=None)
@given(triples_strategy)
def test_without_decay_it_is_the_share_of_orders(rows: list) -> None:
    triples = [(u, i, o, d) for (u, i, o), d in rows]
    got = _share(triples, decay=1.0, n_users=4)
    for (u, i), value in got.items():
        orders_with = {o for uu, ii, o, _ in triples if (uu, ii) == (u, i)}
        orders_all = {o for uu, _, o, _ in triples if uu == u}
        assert np.isclose(value, len(orders_with) / len(orders_all))


@settings(max_examples=60, deadline=None)
@given(triples_strategy, st.floats(0.05, 1.0))
def test_values_are_shares_at_least_the_newest_order_s_weight(rows: list, decay: float) -> None:
    triples = [(u, i, o, d) for (u, i, o), d in rows]
    got = _share(triples, decay=decay, n_users=4)
    assert all(0.0 < v <= 1.0 + 1e-12 for v in got.values())
    for u in {t[0] for t in triples}:
        orders = {o: d for uu, _, o, d in triples if uu == u}
        newest = max(orders, key=orders.__getitem__)  # days are distinct per user here
        total = sum(decay**k for k in range(len(orders)))
        for uu, i, o, _ in triples:
            if uu == u and o == newest:
                assert got[(u, i)] >= 1.0 / total - 1e-12


def test_rank_within_rows_ranks_masked_pairs_per_row() -> None:
    rows = np.array([0, 0, 0, 1, 1, 2])
    values = np.array([0.2, 0.9, 0.5, 0.1, 0.1, 0.7])
    mask = np.array([True, True, False, True, True, False])
    got = _rank_within_rows(rows, values, mask)
    np.testing.assert_array_equal(got, [1.0, 0.0, np.nan, 0.0, 1.0, np.nan])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 40),
    kinds=st.lists(st.sampled_from(["f64", "f32", "i32", "i64", "big"]), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_float32_stack_is_column_stack_then_astype(n: int, kinds: list, seed: int) -> None:
    """The feature matrix is written column by column into float32: the same values as the
    float64 ``column_stack`` cast to float32 it replaced (NaN, infinities, values float32
    rounds, integers beyond float32's exact range), in C order."""
    rng = np.random.default_rng(seed)
    columns = []
    for kind in kinds:
        if kind in ("f64", "f32"):
            col = rng.normal(scale=10.0 ** rng.integers(-8, 40), size=n)
            col[rng.random(n) < 0.2] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0])
            with np.errstate(over="ignore"):
                columns.append(col.astype(np.float32) if kind == "f32" else col)
        elif kind == "big":  # int64 past 2**53: column_stack rounds them to float64 first
            columns.append(rng.integers(-(2**62), 2**62, size=n, dtype=np.int64))
        else:
            columns.append(
                rng.integers(-(2**31), 2**31 - 1, size=n).astype(kind.replace("i", "int"))
            )
    with np.errstate(over="ignore"):
        expected = np.column_stack(columns).astype(np.float32)
        got = _stack_float32(columns, n)
    assert got.flags.c_contiguous and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=6),
            st.text(alphabet="ab\x00-:", max_size=5),
            st.integers(-50, 50),
        ),
        max_size=40,
    )
)
def test_string_codes_are_numpy_s_unique_codes(values: list) -> None:
    """Order ids get the codes ``np.unique`` of their strings gives (the order of orders that
    decides ties), whatever the characters: NUL anywhere, astral code points, numbers."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    expected = np.unique(arr.astype(str), return_inverse=True)[1].ravel()
    got = _string_codes(arr)
    assert got.dtype == np.intp
    np.testing.assert_array_equal(got, expected)
