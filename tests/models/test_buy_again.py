"""Buy again: purchase occasions, usual intervals (own, then the item's), and what is due."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, EventRow
from recsys.models.buy_again import BuyAgainModel
from tests.models.conftest import AS_OF, event, make_training_data


def shop() -> TrainingData:
    rows: list[EventRow] = []

    def buy(user: str, item: str, days: float, order: str | None = None) -> None:
        rows.append(event(len(rows), user, item, "purchase", days, order=order or f"o{len(rows)}"))

    for d in (21.0, 14.0, 7.0):  # u: milk weekly, three times -> own interval 7 days
        buy("u", "milk", d, order=f"u-{d}")
    buy("u", "milk", 7.0, order="u-7.0")  # a second line of the same order: one occasion
    for d in (28.0, 26.0):  # u: soap twice -> too few for an own interval
        buy("u", "soap", d)
    for d in (40.0, 30.0, 20.0):  # v: soap every 10 days
        buy("v", "soap", d)
    for d in (50.0, 20.0):  # w: soap 30 days apart
        buy("w", "soap", d)
    buy("u", "tv", 5.0)  # nobody buys a tv twice -> no interval anywhere
    buy("v", "bread", 1.0)
    rows.append(event(len(rows), "u", "bread", "view", 1.0))  # a view is not a purchase
    return make_training_data(rows, as_of=AS_OF)


@pytest.fixture
def data() -> TrainingData:
    return shop()


def stats_by_item(model: BuyAgainModel, data: TrainingData, user: str, now: int | None = None):  # type: ignore[no-untyped-def]
    s = model.purchase_stats(np.array([data.users.index(user)]), now)
    return {data.items.id(int(i)): k for k, i in enumerate(s.item)}, s


def test_intervals_own_then_per_item_then_unknown(data: TrainingData) -> None:
    model = BuyAgainModel(min_purchases=3).fit(data)
    where, s = stats_by_item(model, data, "u")
    assert set(where) == {"milk", "soap", "tv"}
    milk, soap, tv = where["milk"], where["soap"], where["tv"]
    assert s.count[milk] == 3  # distinct orders, not lines
    assert s.interval_days[milk] == pytest.approx(7.0)
    # soap: u has 2 purchases (< 3), so the item's median over customers: median(2, 10, 30).
    assert s.interval_days[soap] == pytest.approx(10.0)
    assert np.isnan(s.interval_days[tv]) and np.isnan(s.due_ratio[tv])
    assert s.days_since_last[milk] == pytest.approx(7.0)
    assert s.due_ratio[soap] == pytest.approx(2.6)
    assert (s.row == 0).all()


def test_due_mask_and_now(data: TrainingData) -> None:
    model = BuyAgainModel().fit(data)
    u = data.users.index("u")
    due = model.due(np.array([u, -1]))
    assert isinstance(due, sp.csr_matrix) and due.dtype == bool
    assert set(data.items.ids_of(due[0].indices)) == {"milk", "soap"}
    assert due[1].nnz == 0
    just_after = AS_OF - 6 * MICROS_PER_DAY  # one day after the last milk
    assert "milk" not in data.items.ids_of(model.due(np.array([u]), just_after)[0].indices)


def test_scores_rank_due_items_first_and_leave_the_rest_unscored(data: TrainingData) -> None:
    model = BuyAgainModel().fit(data)
    u = data.users.index("u")
    scores = model.score(np.array([u]), sp.csr_matrix((1, data.n_items)))[0]
    idx = data.items.index
    assert np.isnan(scores[idx("bread")])  # viewed, never bought
    assert scores[idx("milk")] > scores[idx("soap")] > scores[idx("tv")] > 0
    # Just after buying milk, milk drops below the unknown-interval tv.
    soon = model.score(
        np.array([u]), sp.csr_matrix((1, data.n_items)), now=AS_OF - 6 * MICROS_PER_DAY
    )
    assert soon[0, idx("milk")] < soon[0, idx("tv")]


def test_now_defaults_to_as_of(data: TrainingData) -> None:
    model = BuyAgainModel().fit(data)
    users = np.arange(data.n_users)
    empty = sp.csr_matrix((data.n_users, data.n_items))
    np.testing.assert_array_equal(model.score(users, empty), model.score(users, empty, now=AS_OF))
