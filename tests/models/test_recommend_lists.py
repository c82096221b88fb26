"""Models that rank without dense rows give the lists of ``top_k`` on their dense rows.

Popular and trending rank one shared order, buy-again each customer's own items, ALS and BPR
one block of users at a time: each must return, item for item and bit for bit, what
:func:`~recsys.models.base.top_k` returns on :meth:`score`'s ``users × items`` rows, with and
without exclusions, for known, unknown and changed customers.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, EventRow
from recsys.errors import ModelError
from recsys.models import (
    MODELS,
    ALSModel,
    BPRModel,
    BuyAgainModel,
    PopularModel,
    TrendingModel,
    factors,
)
from recsys.models.base import Recommender, top_k
from tests.models.conftest import AS_OF, event, make_training_data
from tests.models.test_contract import fresh

N_USERS, N_ITEMS = 40, 60

FAST = {
    "popular": lambda: PopularModel(),
    "trending": lambda: TrendingModel(window_days=10.0, smoothing=1.0),
    "buy_again": lambda: BuyAgainModel(min_purchases=2),
    "als": lambda: ALSModel(factors=6, iterations=5, random_state=1),
    "bpr": lambda: BPRModel(factors=6, iterations=20, random_state=1),
}


def random_shop(seed: int) -> TrainingData:
    """Customers buying skewed random baskets on random days: many repeat purchases, many
    equal popularity counts and buy-again scores (ties)."""
    rng = np.random.default_rng(seed)
    rows: list[EventRow] = []
    weights = 1.0 / np.arange(1, N_ITEMS + 1)
    for u in range(N_USERS):
        for visit in range(int(rng.integers(1, 6))):
            days = float(rng.integers(0, 90))
            order = f"o{u}-{visit}"
            basket = rng.choice(N_ITEMS, size=int(rng.integers(1, 5)), p=weights / weights.sum())
            for i in sorted(set(basket.tolist())):
                rows.append(event(len(rows), f"u{u}", f"i{i}", "purchase", days, order=order))
                if rng.random() < 0.5:
                    rows.append(event(len(rows), f"u{u}", f"i{i}", "view", days + 0.5))
    return make_training_data(rows, as_of=AS_OF)


@pytest.fixture(scope="module", params=[3, 11])
def shop(request: pytest.FixtureRequest) -> TrainingData:
    return random_shop(int(request.param))


def requests(data: TrainingData, rng: np.random.Generator) -> tuple[np.ndarray, sp.csr_matrix]:
    """Every known customer with their training row, then some with an empty or changed row,
    and unknown ones with and without events."""
    n_users, n_items = data.interactions.shape
    users = np.r_[np.arange(n_users), [0, 1, 2, -1, -1, -1]].astype(np.intp)
    extra = np.zeros((6, n_items), np.float32)
    extra[1] = data.interactions[1].toarray()[0]
    extra[1, rng.integers(0, n_items, 3)] += 10.0  # known customer 1, new purchases
    extra[4, rng.integers(0, n_items, 2)] = 3.0  # an unknown customer's carts
    extra[5, rng.integers(0, n_items, 4)] = 1.0
    extra[2] = 0.0  # known customer 2 with nothing: their learned state
    history = sp.vstack([data.interactions, sp.csr_matrix(extra)], format="csr")
    return users, sp.csr_matrix(history, dtype=np.float32)


def assert_lists_equal(model: Recommender, data: TrainingData, rng: np.random.Generator) -> None:
    users, history = requests(data, rng)
    exclude = sp.csr_matrix(history, copy=True)
    exclude.data[:] = 1.0
    noise = sp.random(*history.shape, density=0.1, format="csr", random_state=7)
    excludes = (None, exclude, noise)
    now = AS_OF + 5 * MICROS_PER_DAY
    scores = model.score(users, history, now=now)
    for k in (1, 5, 20, data.n_items + 3):
        got = model.recommend_lists(users, history, k, excludes=excludes, now=now)
        assert len(got) == len(excludes)
        for (items, values), ex in zip(got, excludes, strict=True):
            want_items, want_values = top_k(scores, k, exclude=ex)
            np.testing.assert_array_equal(items, want_items)
            np.testing.assert_array_equal(values, want_values)
        one = model.recommend(users, history, k, exclude=exclude, now=now)
        np.testing.assert_array_equal(one[0], got[1][0])


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_lists_equal_the_dense_top_k(
    name: str, shop: TrainingData, rng: np.random.Generator
) -> None:
    model = FAST[name]().fit(shop)
    assert type(model).recommend_lists is not Recommender.recommend_lists  # a fast path
    assert_lists_equal(model, shop, rng)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_lists_equal_the_dense_top_k_in_small_blocks(
    name: str, shop: TrainingData, rng: np.random.Generator
) -> None:
    model = FAST[name]().fit(shop)
    # three users per block: the last block of a batch is then often a single user
    with (
        patch.object(factors, "SCORE_BLOCK_ELEMENTS", 3 * shop.n_items),
        patch.object(factors, "SCORE_BLOCK_MIN_ROWS", 1),
    ):
        assert_lists_equal(model, shop, rng)


def test_the_shop_has_ties_for_the_fast_paths_to_break(shop: TrainingData) -> None:
    """Guard for the tests above: the data do hold equal scores within a customer's row."""
    model = BuyAgainModel(min_purchases=2).fit(shop)
    scores = model.score(np.arange(shop.n_users), shop.interactions)
    tied = [len(np.unique(r[~np.isnan(r)])) < np.count_nonzero(~np.isnan(r)) for r in scores]
    assert sum(tied) >= 5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_recommends_the_dense_top_k(name: str, tiny_data: TrainingData) -> None:
    """The contract, for every registered model on the tiny shop."""
    try:
        model = fresh(name).fit(tiny_data)
    except ModelError as exc:
        pytest.skip(f"{name} cannot fit the tiny data: {exc}")
    assert_lists_equal(model, tiny_data, np.random.default_rng(5))
