"""The vectorised :meth:`BuyAgainModel.fit` against the per-line loop it replaced.

:func:`reference_fit` is the previous implementation (a dict of occasions, one ``np.median``
per user-item pair and per item); on random shops with multi-line orders, purchases
without an order id, equal timestamps and single purchases, both must store the same arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, PURCHASE, EventRow
from recsys.models.buy_again import BuyAgainModel, _group_median
from tests.models.conftest import AS_OF, event, make_training_data


def reference_fit(data: TrainingData, min_purchases: int) -> dict[str, np.ndarray]:
    """The fit loop as it was before vectorising (the oracle)."""
    ev = data.events
    users = np.asarray(data.event_user)
    items = np.asarray(data.event_item)
    mask = (ev.event_type == PURCHASE) & (users >= 0) & (items >= 0)
    u, i, ts = users[mask], items[mask], ev.ts[mask]
    order = ev.order_id[mask]
    keys: dict[tuple[int, int, object], int] = {}
    for uu, ii, tt, oo in zip(u.tolist(), i.tolist(), ts.tolist(), order, strict=True):
        key = (uu, ii, oo if oo is not None else ("ts", tt))
        if key not in keys or tt < keys[key]:
            keys[key] = tt
    occ = np.array([(k[0], k[1], t) for k, t in keys.items()], dtype=np.int64).reshape(-1, 3)
    occ = occ[np.lexsort((occ[:, 2], occ[:, 1], occ[:, 0]))]
    pair_user, pair_item, pair_count, pair_last, pair_interval = [], [], [], [], []
    per_item: dict[int, list[float]] = {}
    if len(occ):
        boundaries = np.flatnonzero(np.any(np.diff(occ[:, :2], axis=0) != 0, axis=1)) + 1
        for group in np.split(occ, boundaries):
            uu, ii = int(group[0, 0]), int(group[0, 1])
            times = group[:, 2]
            gaps = np.diff(times) / MICROS_PER_DAY
            gaps = gaps[gaps > 0]
            own = float(np.median(gaps)) if len(gaps) else np.nan
            if len(gaps):
                per_item.setdefault(ii, []).append(own)
            pair_user.append(uu)
            pair_item.append(ii)
            pair_count.append(len(times))
            pair_last.append(int(times[-1]))
            pair_interval.append(own if len(times) >= min_purchases else np.nan)
    item_interval = np.full(data.n_items, np.nan)
    for ii, values in per_item.items():
        item_interval[ii] = float(np.median(values))
    pu = np.asarray(pair_user, dtype=np.int64)
    return {
        "indptr_": np.searchsorted(pu, np.arange(data.n_users + 1)).astype(np.int64),
        "pair_item_": np.asarray(pair_item, dtype=np.int64),
        "pair_count_": np.asarray(pair_count, dtype=np.int64),
        "pair_last_": np.asarray(pair_last, dtype=np.int64),
        "pair_interval_": np.asarray(pair_interval, dtype=np.float64),
        "item_interval_": item_interval,
    }


def random_shop(seed: int, n_events: int = 600) -> TrainingData:
    rng = np.random.default_rng(seed)
    rows: list[EventRow] = []
    for n in range(n_events):
        user, item = f"u{rng.integers(25)}", f"i{rng.integers(12)}"
        # whole and half days: equal timestamps across orders happen
        days = float(rng.integers(0, 120)) / 2.0
        kind = rng.random()
        if kind < 0.15:
            rows.append(event(n, user, item, "view", days))
            continue
        # few order ids per user, so several lines (at different times) share one order
        order = None if kind < 0.35 else f"{user}-o{rng.integers(8)}"
        rows.append(event(n, user, item, "purchase", days, order=order))
    return make_training_data(rows, as_of=AS_OF)


def assert_fit_matches(data: TrainingData, min_purchases: int) -> BuyAgainModel:
    model = BuyAgainModel(min_purchases=min_purchases).fit(data)
    want = reference_fit(data, min_purchases)
    for name, expected in want.items():
        got = getattr(model, name)
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    return model


@pytest.mark.parametrize("min_purchases", [1, 2, 3])
def test_fit_equals_the_reference_loop(min_purchases: int) -> None:
    model = assert_fit_matches(random_shop(seed=min_purchases), min_purchases)
    # the comparison covers own intervals, item intervals and unknown ones
    assert np.isfinite(model.pair_interval_).any()
    assert np.isnan(model.pair_interval_).any()
    assert np.isfinite(model.item_interval_).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n_events=st.integers(1, 120))
def test_fit_equals_the_reference_loop_on_small_shops(seed: int, n_events: int) -> None:
    assert_fit_matches(random_shop(seed, n_events), 3)


def test_no_purchases_at_all() -> None:
    data = make_training_data([event(0, "u", "a", "view", 1.0)], as_of=AS_OF)
    assert_fit_matches(data, 3)


@given(
    groups=st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=7),
        min_size=1,
        max_size=6,
    )
)
def test_group_median_is_numpy_median_per_group(groups: list[list[float]]) -> None:
    group = np.concatenate([np.full(len(v), g, np.int64) for g, v in enumerate(groups)])
    values = np.concatenate([np.asarray(v, np.float64) for v in groups])
    perm = np.random.default_rng(0).permutation(len(group))
    got = _group_median(group[perm], values[perm], len(groups))
    for g, v in enumerate(groups):
        if v:
            assert got[g] == np.median(v)
        else:
            assert np.isnan(got[g])
