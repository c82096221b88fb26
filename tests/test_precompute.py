"""A version's stored lists (:mod:`recsys.precompute`), from a real fitted model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.data.interactions import TrainingData
from recsys.errors import ConfigError
from recsys.models.als import ALSModel
from recsys.precompute import precompute
from tests.models.conftest import make_training_data, tiny_rows


def _fitted() -> tuple[ALSModel, TrainingData]:
    data = make_training_data(tiny_rows())
    return ALSModel(factors=4, iterations=5, num_threads=1).fit(data), data


def test_listed_customers_get_the_models_own_top_items_and_the_others_nothing() -> None:
    model, data = _fitted()
    history = sp.csr_matrix(data.interactions)
    users = np.array([4, 0, 7], dtype=np.intp)  # any order: stored by index
    stored = precompute(model, "als", history, data.items, depth=3, users=users, batch=2)
    for u in range(history.shape[0]):
        if u in users:
            top, scores = model.recommend(np.array([u]), history[u], 3)
            np.testing.assert_array_equal(stored.items[u], top[0])
            np.testing.assert_allclose(stored.scores[u], scores[0], rtol=1e-6)
        else:
            assert (stored.items[u] == -1).all() and np.isnan(stored.scores[u]).all()
    # ALS explains nothing: no reason codes are stored
    assert stored.reason_codes is None and stored.model == "als"


def test_the_depth_is_at_most_the_catalogue() -> None:
    model, data = _fitted()
    history = sp.csr_matrix(data.interactions)
    stored = precompute(model, "als", history, data.items, depth=100)
    assert stored.items.shape == (history.shape[0], history.shape[1])


@pytest.mark.parametrize("bad", [-1, 10])
def test_a_customer_outside_the_history_is_refused_by_index(bad: int) -> None:
    model, data = _fitted()
    history = sp.csr_matrix(data.interactions)
    with pytest.raises(ConfigError, match=f"user index {bad} is outside the 10 users"):
        precompute(model, "als", history, data.items, users=np.array([0, bad]))
